"""The learning rate in the logs, for the configs that schedule it."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor as _LightningLearningRateMonitor

__all__ = ["LearningRateMonitor"]


class LearningRateMonitor(_LightningLearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (``lr-SGD``, ``lr-Adam``, ... in every logger) that stands aside when the
    run has no logger (``--trainer.logger false``), where Lightning's stops the fit with an error: the configs list
    it, and a quick run without logs should still train."""

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
