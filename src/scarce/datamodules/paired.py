"""Source + target pairing, written once for every domain-adaptation DataModule.

Training batches of domain adaptation are ``{"source": batch, "target": batch}`` from Lightning's
``CombinedLoader``: labelled source samples, and target samples whose labels were dropped by :class:`Unlabelled`
(adaptation must not see them; the target's labels are used in validation and test only).
:class:`PairedLoaders` builds those loaders for
:class:`~scarce.datamodules.domain_adaptation.DomainAdaptationDataModule` (digits, blobs) and :class:`~scarce.datamodules.segmentation.SegmentationDataModule` (``paired_target``).
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import Dataset

from scarce.datamodules.resumable import ResumableLoaders

__all__ = ["LABEL_KEYS", "PairMode", "PairedLoaders", "Unlabelled"]

LABEL_KEYS = ("label", "mask")
"""The sample keys :class:`Unlabelled` drops: class labels and segmentation masks."""

PairMode = Literal["max_size_cycle", "min_size"]
"""``CombinedLoader`` mode: an epoch is the longer domain (the shorter one cycles) or the shorter one."""


class Unlabelled(Dataset):
    """A view of a dataset without its labels (``label``, ``mask``): target training data must not leak them."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {k: v for k, v in self.dataset[index].items() if k not in LABEL_KEYS}


class PairedLoaders(ResumableLoaders):
    """Mixin of LightningDataModules whose hyperparameters hold ``batch_size``, ``num_workers`` and ``pin_memory``:
    the loaders of :class:`~scarce.datamodules.resumable.ResumableLoaders` plus the paired source + target ones."""

    def _paired_loader(self, source: Dataset, target: Dataset, mode: PairMode = "max_size_cycle") -> CombinedLoader:
        """Shuffled ``{"source", "target"}`` training batches (full batches only); the target's labels dropped."""
        loaders = {"source": self._loader(source, shuffle=True, drop_last=True),
                   "target": self._loader(Unlabelled(target), shuffle=True, drop_last=True)}
        self._start_where_saved(list(loaders.values()), longest=mode == "max_size_cycle")
        return CombinedLoader(loaders, mode=mode)
