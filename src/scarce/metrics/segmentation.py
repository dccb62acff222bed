"""Segmentation metrics accumulated over a whole split: per-class IoU, mIoU and pixel accuracy (torchmetrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassJaccardIndex

__all__ = ["SegmentationMetrics", "format_iou_table"]


class SegmentationMetrics(MulticlassJaccardIndex):
    """``MulticlassJaccardIndex(ignore_index=255)`` whose confusion matrix also gives pixel accuracy.

    The confusion matrix is summed over every batch (and every DDP rank) of the split, so the IoU is the
    dataset-level one of the Cityscapes benchmark, not a mean of per-batch IoUs. A class that is neither in the
    ground truth nor predicted has no IoU (NaN) and is left out of the mean, as in cityscapesScripts.

    Args:
        num_classes: number of classes.
        ignore_index: target value that is not scored.

    Shape:
        - ``update(preds, target)``: ``preds`` ``(B, H, W)`` class ids or ``(B, C, H, W)`` logits, ``target``
          ``(B, H, W)``.
        - ``compute()``: ``{"iou": (C,), "miou": (), "acc": ()}``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, average="none", **kwargs)

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        confmat = self.confmat.double()
        tp = confmat.diag()
        union = confmat.sum(0) + confmat.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        total = confmat.sum()
        acc = tp.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=confmat.dtype)
        miou = iou.nanmean() if (union > 0).any() else torch.tensor(float("nan"), dtype=confmat.dtype)
        return {"iou": iou.float(), "miou": miou.float(), "acc": acc.float()}


def format_iou_table(iou: torch.Tensor, class_names: Sequence[str], title: str = "") -> str:
    """A fixed-width per-class IoU table; ``-`` for classes without any pixel in prediction or ground truth."""
    width = max(len(n) for n in class_names) if class_names else 5
    lines = [title] if title else []
    lines.append(f"{'class':<{width}}  IoU")
    for name, value in zip(class_names, iou.tolist()):
        lines.append(f"{name:<{width}}  {'-' if math.isnan(value) else f'{value:.3f}'}")
    valid = iou[~iou.isnan()]
    lines.append(f"{'mean':<{width}}  {valid.mean().item() if len(valid) else float('nan'):.3f}")
    return "\n".join(lines)
