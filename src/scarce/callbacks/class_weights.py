"""Class weights for the segmentation loss, computed from the training data when a fit starts."""

from __future__ import annotations

from typing import Any

from jsonargparse.typing import PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer

from scarce._errors import ScarceError
from scarce.data.stats import ClassWeighting

__all__ = ["ClassWeights"]


class ClassWeights(Callback):
    """Compute class weights from the DataModule's source training set and hand them to the LightningModule.

    When fitting starts, the weights of ``weighting`` (see :data:`scarce.data.stats.CLASS_WEIGHTINGS`:
    ``median_frequency``, ``median(f) / f_c``; ``log_frequency``, the book's ``ln(total / n_c)``) are computed by
    the DataModule's ``class_weights(num_classes, limit, weighting)`` (the masks read without augmentation) and
    given to the module's ``set_class_weights(weights)``
    (:class:`~scarce.lightning_modules.segmentation.Segmentation`), which keeps them in a buffer. A fit resumed
    from a checkpoint written with this callback keeps the checkpoint's weights and reads no data.

    In a config::

        trainer:
          callbacks:
            - class_path: scarce.callbacks.class_weights.ClassWeights
              init_args: {weighting: median_frequency, samples: 200}

    Args:
        weighting: the weighting.
        samples: training samples read (None: all).
    """

    def __init__(self, weighting: ClassWeighting = "median_frequency", samples: PositiveInt | None = 500) -> None:
        self.weighting = weighting
        self.samples = samples
        self._restored = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._restored:  # resumed: the module's weights came with the checkpoint
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "class_weights"):
            raise ScarceError(f"ClassWeights({self.weighting!r}) reads the training masks through the DataModule's "
                              "class_weights(): use a SegmentationDataModule, or give `model.init_args.class_weights` "
                              "as a list of floats and drop the callback")
        if not hasattr(pl_module, "set_class_weights"):
            raise ScarceError(f"ClassWeights: {type(pl_module).__name__} has no set_class_weights(weights); it works "
                              "with Segmentation and its subclasses")
        pl_module.set_class_weights(datamodule.class_weights(pl_module.hparams.num_classes, limit=self.samples,
                                                             weighting=self.weighting), self.weighting)

    def state_dict(self) -> dict[str, Any]:
        return {"weighting": self.weighting, "computed": True}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = bool(state_dict.get("computed", False))
