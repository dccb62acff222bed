"""Semantic segmentation with FCN-8s: cross-entropy with an ignore index, mIoU / pixel accuracy per domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric

from scarce._errors import ScarceError
from scarce.data.datasets.labels import CITYSCAPES_CLASSES, IGNORE_INDEX
from scarce.lightning_modules._logging_steps import is_logging_step
from scarce.metrics.segmentation import SegmentationMetrics, format_iou_table
from scarce.nets.fcn8s import FCN8s
from scarce.optim import as_factory, configure_optimizer, keep_specs, spec

__all__ = ["Segmentation"]


class Segmentation(LightningModule):
    """FCN-8s trained with pixel-wise cross-entropy; evaluated with dataset-level IoU on one or two domains.

    Validation dataloader 0 is the source domain and 1 the target domain (see
    :class:`scarce.datamodules.segmentation.SegmentationDataModule`). With one dataloader the metrics are
    ``val/miou``, ``val/acc``; with two, ``val/source_miou``, ``val/target_miou``, ... and ``val/miou_gap``
    (source minus target). A per-class IoU table is printed at the end of each validation and test epoch.

    Args:
        num_classes: output classes (19 Cityscapes train ids).
        backbone_weights: torchvision's ImageNet VGG16 weights to start from: ``IMAGENET1K_V1`` (``VGG16_Weights``, or
            ``VGG16_BN_Weights`` with ``batch_norm``), read from the torch hub cache and never downloaded, or a
            local state dict path; None: random initialisation. See :func:`scarce.nets.fcn8s.backbone_weights_path`.
        width_divisor: divide FCN-8s' channel counts by this (1 = the real network; larger only for quick runs).
        dropout: dropout after fc6 and fc7.
        batch_norm: the backbone in torchvision's ``vgg16_bn`` layout (batch norm after every convolution; trains
            from scratch much faster); False is the paper's VGG16. ``backbone_weights`` must match the layout.
        optimizer: the optimizer (``class_path`` + ``init_args``; default Adam, lr 1e-4; see :mod:`scarce.optim`).
        lr_scheduler: the learning-rate schedule; ``null`` (the default) keeps the optimizer's rate;
            :class:`~scarce.schedules.PolyDecay` is the FCN / DeepLab ``lr * (1 - step / total) ** 0.9``.
        class_weights: cross-entropy weight per class, a list of ``num_classes`` floats, or None (unweighted until
            :meth:`set_class_weights`). Weights computed from the source training masks when fitting starts
            (``median_frequency``, ``log_frequency``) come from the
            :class:`~scarce.callbacks.class_weights.ClassWeights` callback. Either way they are a buffer of the
            module, saved in checkpoints.
        ignore_index: target value without loss or score.
        class_names: names for the IoU table (default: the Cityscapes classes when ``num_classes`` is 19).
        channels_last: keep the network's weights and inputs in the NHWC memory layout. The same arithmetic
            (results differ only by float summation order); oneDNN's CPU convolutions and cuDNN's tensor-core ones
            run faster on it (``benchmarks/segmentation_channels_last.py``).
        compile: ``torch.compile`` the network's forward (``nn.Module.compile``: parameter names, and so
            checkpoints, stay as they are). The first steps then compile; worth it on GPUs for long fits.
    """

    def __init__(
        self,
        num_classes: PositiveInt = 19,
        backbone_weights: str | None = None,
        width_divisor: PositiveInt = 1,
        dropout: ClosedUnitInterval = 0.5,
        batch_norm: bool = False,
        optimizer: OptimizerCallable = spec("torch.optim.Adam", lr=1e-4),
        lr_scheduler: LRSchedulerCallable | None = None,
        class_weights: list[NonNegativeFloat] | None = None,
        ignore_index: int = IGNORE_INDEX,
        class_names: list[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        keep_specs(self.hparams, "optimizer", "lr_scheduler")
        self.optimizer_factory = as_factory(optimizer)
        self.lr_scheduler_factory = None if lr_scheduler is None else as_factory(lr_scheduler)
        if class_weights is not None and len(class_weights) != num_classes:
            raise ScarceError(f"model.class_weights has {len(class_weights)} values, num_classes is {num_classes}: "
                              "give one weight per class, or null (and the ClassWeights callback to compute them)")
        if class_names is None:
            class_names = list(CITYSCAPES_CLASSES) if num_classes == len(CITYSCAPES_CLASSES) else \
                [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ScarceError(f"model.class_names has {len(class_names)} names, num_classes is {num_classes}")
        self.class_names = list(class_names)
        try:
            self.net = FCN8s(num_classes, backbone_weights=backbone_weights, width_divisor=width_divisor,
                             dropout=dropout, batch_norm=batch_norm)
        except (FileNotFoundError, ValueError) as err:  # nets raise builtins; the CLI prints ScarceErrors as one line
            raise ScarceError(str(err)) from None
        if channels_last:
            # Module.to(device) later preserves the layout; loading a checkpoint copies into these tensors.
            self.net.to(memory_format=torch.channels_last)
        weights = torch.ones(num_classes) if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("loss_weights", weights)
        # One metric per validation dataloader (source, target), one for test: states are summed over the split.
        self.val_metrics = nn.ModuleList(SegmentationMetrics(num_classes, ignore_index) for _ in range(2))
        self.test_metrics = SegmentationMetrics(num_classes, ignore_index)
        # The evaluation loss of a split: the cross-entropy over all its scored pixels, each batch's mean weighted by
        # its pixels' class weights, so it depends neither on the batching nor on the number of DDP ranks.
        # (torchmetrics 1.9 drops the weights with nan_strategy="disable"; a batch without scored pixels, whose
        # loss is NaN, enters with weight 0 and value 0, so "ignore" never has a NaN to remove.)
        self.val_losses = nn.ModuleList(MeanMetric(nan_strategy="ignore") for _ in range(2))
        self.test_loss = MeanMetric(nan_strategy="ignore")
        self.last_results: dict[str, dict[str, torch.Tensor]] = {}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in [0, 1] -> ``(B, num_classes, H, W)`` logits."""
        return self.net(self.to_memory_format(image))

    def to_memory_format(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` in the layout the network's weights use (NHWC with ``channels_last``)."""
        return image.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else image

    def configure_model(self) -> None:
        # Lightning calls this in fit / validate / test, before the optimizers exist; compiled once.
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.net.compile()
            self._compiled = True

    # ------------------------------------------------------------------------------------------ setup

    def set_class_weights(self, weights: Sequence[float], source: str = "given") -> None:
        """Set the cross-entropy class weights, ``(num_classes,)`` (e.g. from
        :class:`~scarce.callbacks.class_weights.ClassWeights`); kept in the ``loss_weights`` buffer."""
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if weights.shape != self.loss_weights.shape:
            raise ScarceError(f"{len(weights)} class weights for {len(self.loss_weights)} classes "
                              "(model.init_args.num_classes)")
        self.loss_weights.copy_(weights)
        rank_zero_info(f"{source} class weights: " + ", ".join(
            f"{n}={w:.2f}" for n, w in zip(self.class_names, weights.tolist())))

    def _domains(self) -> tuple[str, ...]:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return tuple(getattr(datamodule, "domains", ("source", "target")))

    def _prefix(self, stage: str, dataloader_idx: int, num_loaders: int) -> str:
        if stage == "train" or num_loaders == 1:
            return f"{stage}/"
        return f"{stage}/{self._domains()[dataloader_idx]}_"

    def _num_loaders(self, stage: str) -> int:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        return len(loaders) if isinstance(loaders, (list, tuple)) else 1

    # ------------------------------------------------------------------------------------------ steps

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixel-wise cross-entropy, ``ignore_index`` pixels excluded, classes weighted by ``loss_weights``."""
        return F.cross_entropy(logits, mask, weight=self.loss_weights.to(logits.dtype),
                               ignore_index=self.hparams.ignore_index)

    def _common_step(self, batch: dict[str, Any], stage: str, dataloader_idx: int = 0,
                     logits: torch.Tensor | None = None) -> torch.Tensor:
        image, mask = batch["image"], batch["mask"]
        # Subclasses that already ran the network on the batch (e.g. DANN, for its domain head) pass the logits.
        logits = self(image) if logits is None else logits
        loss = self.loss(logits, mask)
        if stage == "train":
            if is_logging_step(self):  # the steps the trainer writes; self.log on the others is wasted work
                self.log("train/loss", loss, prog_bar=True, batch_size=image.shape[0])
            return loss
        metrics = self.test_metrics if stage == "test" else self.val_metrics[dataloader_idx]
        metrics.update(logits.argmax(1), mask)
        # The denominator of F.cross_entropy's weighted mean: the class weights of the scored pixels.
        scored = mask != self.hparams.ignore_index
        weight = (self.loss_weights[torch.where(scored, mask, 0)] * scored).sum()
        losses = self.test_loss if stage == "test" else self.val_losses[dataloader_idx]
        losses.update(torch.where(weight > 0, loss.detach().float(), 0.0), weight=weight)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "source" in batch and "image" not in batch:  # paired source/target batches: source only here
            batch = batch["source"]
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        if dataloader_idx >= len(self.val_metrics):
            raise ScarceError(f"Segmentation supports {len(self.val_metrics)} validation dataloaders (source, "
                              f"target); got dataloader {dataloader_idx}")
        return self._common_step(batch, "val", dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._common_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch["image"]).argmax(1)

    # ------------------------------------------------------------------------------------------ epoch ends

    def _report(self, stage: str, metrics: SegmentationMetrics, losses: MeanMetric, prefix: str,
                title: str) -> dict[str, torch.Tensor]:
        # compute() sums the states over the DDP ranks: these are the values of the whole split.
        result = metrics.compute()
        metrics.reset()
        self.log(f"{prefix}miou", result["miou"], add_dataloader_idx=False)
        self.log(f"{prefix}acc", result["acc"], add_dataloader_idx=False)
        if losses.update_called:
            self.log(f"{prefix}loss", losses.compute(), add_dataloader_idx=False)
        losses.reset()
        if not self.trainer.sanity_checking:
            rank_zero_info(format_iou_table(result["iou"], self.class_names, title=title))
        return result

    def on_validation_epoch_end(self) -> None:
        n = self._num_loaders("val")
        results = {}
        for idx in range(n):
            prefix = self._prefix("val", idx, n)
            name = self._domains()[idx] if n > 1 else "val"
            results[name] = self._report("val", self.val_metrics[idx], self.val_losses[idx], prefix,
                                         f"epoch {self.current_epoch}, step {self.global_step}: {name} IoU")
        if n > 1:
            source, target = results[self._domains()[0]], results[self._domains()[1]]
            gap = source["miou"] - target["miou"]
            self.log("val/miou_gap", gap)
            if not self.trainer.sanity_checking:
                rank_zero_info(f"realism gap: source mIoU {source['miou']:.3f} (acc {source['acc']:.3f}), target "
                               f"mIoU {target['miou']:.3f} (acc {target['acc']:.3f}), gap {gap:.3f}")
        self.last_results = results

    def on_test_epoch_end(self) -> None:
        self.last_results = {"test": self._report("test", self.test_metrics, self.test_loss, "test/", "test IoU")}

    # ------------------------------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> Any:
        return configure_optimizer(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory,
                                   lambda: self.trainer.estimated_stepping_batches)
