"""Train the MNIST classifier whose features define the offline FID / KID / IS (see ``scarce.metrics.generative``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.classification import MulticlassAccuracy

from scarce.metrics.means import SplitMeans
from scarce.nets.mnist_classifier import MNISTClassifier
from scarce.optim import as_factory, configure_optimizer, keep_specs, spec

__all__ = ["MNISTClassifierModule"]


class MNISTClassifierModule(LightningModule):
    """Cross-entropy training of :class:`~scarce.nets.mnist_classifier.MNISTClassifier`.

    AdamW with a one-cycle learning rate over the whole run (``torch.optim.lr_scheduler.OneCycleLR``, its
    ``total_steps`` from the trainer, stepped every batch): a few epochs reach > 99% test accuracy on two CPU cores.

    Args:
        num_features: Width of the penultimate layer (the FID / KID feature size).
        dropout: Dropout before the head.
        optimizer: The optimizer (default AdamW, weight decay 1e-4; see :mod:`scarce.optim`).
        lr_scheduler: The learning-rate schedule (default one cycle peaking at ``max_lr`` 3e-3, which sets the
            rates: the optimizer's ``lr`` is overwritten by it).
    """

    def __init__(self, num_features: PositiveInt = 128, dropout: ClosedUnitInterval = 0.3,
                 optimizer: OptimizerCallable = spec("torch.optim.AdamW", lr=3e-3, weight_decay=1e-4),
                 lr_scheduler: LRSchedulerCallable | None = spec("torch.optim.lr_scheduler.OneCycleLR",
                                                                 max_lr=3e-3)) -> None:
        super().__init__()
        self.save_hyperparameters()
        keep_specs(self.hparams, "optimizer", "lr_scheduler")
        self.optimizer_factory = as_factory(optimizer)
        self.lr_scheduler_factory = None if lr_scheduler is None else as_factory(lr_scheduler)
        self.net = MNISTClassifier(num_features=num_features, dropout=dropout)
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence the suffix.
        self.accuracy = torch.nn.ModuleDict({f"{stage}_acc": MulticlassAccuracy(num_classes=10, average="micro")
                                             for stage in ("train", "val", "test")})
        self.eval_losses = torch.nn.ModuleDict({stage: SplitMeans(["loss"]) for stage in ("val", "test")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _common_step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, batch["label"])
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True)
        else:  # the split's mean over all ranks (see scarce.metrics.means), logged at the epoch's end
            self.eval_losses[stage].update({"loss": loss}, weight=len(logits))
        self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def _log_eval_means(self, stage: str) -> None:
        for name, value in self.eval_losses[stage].compute_and_reset().items():
            self.log(f"{stage}/{name}", value, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_means("test")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "test")

    def configure_optimizers(self):
        return configure_optimizer(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory,
                                   lambda: self.trainer.estimated_stepping_batches)
