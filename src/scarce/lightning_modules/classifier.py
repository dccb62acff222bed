"""Train the MNIST classifier whose features define the offline FID / KID / IS (see ``scarce.metrics.generative``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from torchmetrics.classification import MulticlassAccuracy

from scarce.metrics.means import SplitMeans
from scarce.nets.mnist_classifier import MNISTClassifier

__all__ = ["MNISTClassifierModule"]


class MNISTClassifierModule(LightningModule):
    """Cross-entropy training of :class:`~scarce.nets.mnist_classifier.MNISTClassifier`.

    AdamW with a one-cycle learning rate over the whole run (``trainer.max_epochs``): a few epochs reach
    > 99% test accuracy on two CPU cores.

    Args:
        num_features: Width of the penultimate layer (the FID / KID feature size).
        dropout: Dropout before the head.
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
    """

    def __init__(self, num_features: PositiveInt = 128, dropout: ClosedUnitInterval = 0.3, lr: PositiveFloat = 3e-3,
                 weight_decay: NonNegativeFloat = 1e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
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
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
