"""Means of per-batch values over a whole evaluation split, the same on one process and on many.

``self.log(name, value, sync_dist=True)`` is not that under DDP when ranks see different numbers of samples,
which every evaluation loader here does (each sample once; see ``scarce.datamodules.resumable``): Lightning 2.6
mean-reduces each rank's sum of ``value * batch_size`` and each rank's int64 sample count, and the mean of the
integer counts is floored (Lightning issue #21838). With 23 validation digits on 4 ranks the logged loss came
out 5.75 / 5 = 1.15 times too large. :class:`SplitMeans` keeps a torchmetrics ``MeanMetric`` per name instead,
whose states are summed over the ranks.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric

__all__ = ["SplitMeans"]


class SplitMeans(nn.Module):
    """One weighted mean per name (``loss``, ``recon``, ...), accumulated over a split and synced in :meth:`compute`.

    Args:
        names: The values to average.

    Example::

        self.val_means = SplitMeans(["loss"])
        self.val_means.update({"loss": loss}, weight=len(batch["image"]))   # each evaluation step
        for name, value in self.val_means.compute_and_reset().items():     # at the epoch's end
            self.log(f"val/{name}", value)
    """

    def __init__(self, names: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        # "ignore": torchmetrics 1.9 drops the weights with nan_strategy="disable".
        self.means = nn.ModuleDict({name: MeanMetric(nan_strategy="ignore") for name in names})

    def update(self, values: dict[str, torch.Tensor], weight: float | torch.Tensor = 1.0) -> None:
        """Add one batch: each value (a batch mean) counts ``weight`` times (its number of samples)."""
        for name, value in values.items():
            self.means[name].update(value.detach().float(), weight=weight)

    def compute_and_reset(self) -> dict[str, torch.Tensor]:
        """The means over every batch added since the last reset, on every rank; then start over."""
        out = {name: metric.compute() for name, metric in self.means.items() if metric.update_called}
        for metric in self.means.values():
            metric.reset()
        return out
