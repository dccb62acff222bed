"""Image / prediction / ground-truth colour overlays of the first validation batch of each domain, every epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.utils import make_grid, save_image

from scarce.data.datasets.labels import IGNORE_INDEX, colorize

__all__ = ["SegmentationOverlays", "overlay_grid"]


def overlay_grid(image: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """One row per sample: the image, the prediction blended on it, the ground truth blended on it.

    Args:
        image: float ``(B, 3, H, W)`` in [0, 1].
        pred: ``(B, H, W)`` train ids.
        mask: ``(B, H, W)`` train ids, 255 = ignore (left unblended).
        alpha: weight of the label colours.

    Returns:
        float ``(3, rows, cols)`` grid in [0, 1].
    """
    image = image.detach().float().cpu().clamp(0, 1)
    pred, mask = pred.detach().cpu(), mask.detach().cpu()

    def blend(labels: torch.Tensor) -> torch.Tensor:
        colour = colorize(labels).float() / 255
        keep = (labels != IGNORE_INDEX).unsqueeze(1)
        return torch.where(keep, (1 - alpha) * image + alpha * colour, image)

    tiles = torch.stack([image, blend(pred), blend(mask)], dim=1).flatten(0, 1)  # (3B, 3, H, W)
    return make_grid(tiles, nrow=3, padding=2, pad_value=1.0)


class SegmentationOverlays(Callback):
    """Save, every validation epoch, an overlay grid per validation dataloader (source, target).

    Grids go to ``{log_dir}/overlays/epoch{E:03d}_{domain}.png`` and, when a TensorBoard logger is attached, to its
    images as ``overlays/{domain}``.

    Args:
        num_images: samples per grid, taken from the first batch of each dataloader.
    """

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = num_images
        self._batches: dict[int, dict[str, torch.Tensor]] = {}

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches = {}

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            self._batches[dataloader_idx] = {k: batch[k][: self.num_images].detach() for k in ("image", "mask")}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # trainer.log_dir broadcasts from rank 0 under DDP: every rank must ask, or rank 0 waits forever.
        log_dir = trainer.log_dir
        if not self._batches or not trainer.is_global_zero:
            return
        domains = getattr(trainer.datamodule, "domains", None) if trainer.datamodule is not None else None
        out_dir = Path(log_dir or trainer.default_root_dir) / "overlays"
        out_dir.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            for idx, batch in sorted(self._batches.items()):
                pred = pl_module(batch["image"]).argmax(1)
                grid = overlay_grid(batch["image"], pred, batch["mask"])
                name = domains[idx] if domains and idx < len(domains) else f"dataloader{idx}"
                save_image(grid, out_dir / f"epoch{trainer.current_epoch:03d}_{name}.png")
                for logger in trainer.loggers:
                    experiment = getattr(logger, "experiment", None)
                    if hasattr(experiment, "add_image"):
                        experiment.add_image(f"overlays/{name}", grid, global_step=trainer.global_step)
        self._batches = {}
