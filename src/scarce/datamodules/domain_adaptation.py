"""Source + target DataModules for domain adaptation: labelled source, unlabelled target for training."""

from __future__ import annotations

from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
import torch
from torch.utils.data import DataLoader, Dataset

from scarce.datamodules.paired import PairedLoaders, PairMode, Unlabelled
from scarce.data.datasets import MNIST, MNISTM, Blobs

__all__ = ["DomainAdaptationDataModule", "DigitsDataModule", "BlobsDataModule", "Unlabelled", "GreyToRGB"]


class GreyToRGB:
    """Repeat a 1-channel image ``(1, H, W)`` to 3 channels, so grey MNIST and colour MNIST-M share one network."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.expand(3, -1, -1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DomainAdaptationDataModule(PairedLoaders, LightningDataModule):
    """Loaders for domain adaptation; subclasses build the six datasets in :meth:`build_datasets`.

    Training batches are dicts ``{"source": {"image", "label"}, "target": {"image"}}`` from Lightning's
    ``CombinedLoader``; validation and test have two dataloaders, index 0 the source split and index 1 the
    target split (target labels are used only here, for evaluation).

    Args:
        batch_size: Per-domain batch size (each training step sees ``batch_size`` source and target samples).
        num_workers: DataLoader workers per loader.
        mode: ``CombinedLoader`` mode: ``"max_size_cycle"`` (epoch = the longer domain, the shorter one cycles)
            or ``"min_size"``.
        pin_memory: Pin host memory (useful on GPU).
    """

    def __init__(self, batch_size: PositiveInt = 64, num_workers: NonNegativeInt = 0,
                 mode: PairMode = "max_size_cycle", pin_memory: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, Dataset] = {}

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        """Return ``{"source_train", "target_train", "source_val", "target_val", "source_test", "target_test"}``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_datasets(stage)")

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = self.build_datasets(stage)

    def train_dataloader(self) -> CombinedLoader:
        return self._paired_loader(self.datasets["source_train"], self.datasets["target_train"], self.hparams.mode)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.datasets[f"{d}_val"], False, split=f"{d} validation") for d in ("source", "target")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.datasets[f"{d}_test"], False, split=f"{d} test") for d in ("source", "target")]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["target_test"], False, split="target test")


class DigitsDataModule(DomainAdaptationDataModule):
    """MNIST (source) -> MNIST-M (target), the DANN paper's digit benchmark.

    Args:
        mnist_root: Folder of MNIST IDX files; ``None`` uses the offline copy (see :class:`MNIST`).
        photos_dir: Colour photos for MNIST-M; ``None`` uses those shipped with scikit-image / scikit-learn.
        mnistm_seed: Seed of the MNIST-M crops.
        cache_dir: MNIST-M cache folder (default ``$SCARCE_CACHE`` or ``~/.cache/scarce``).
        limit_train: Use only the first N training digits of each domain (quick runs, tests).
        limit_eval: Use only the first N validation and test digits of each domain.
    """

    def __init__(self, mnist_root: str | None = None, photos_dir: str | None = None, mnistm_seed: int = 0,
                 cache_dir: str | None = None, limit_train: PositiveInt | None = None,
                 limit_eval: PositiveInt | None = None, batch_size: PositiveInt = 64, num_workers: NonNegativeInt = 0,
                 mode: PairMode = "max_size_cycle", pin_memory: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, mode=mode, pin_memory=pin_memory)
        self.save_hyperparameters()

    def _mnistm(self, split: str, limit: int | None) -> MNISTM:
        hp = self.hparams
        return MNISTM(hp.mnist_root, split=split, photos_dir=hp.photos_dir, seed=hp.mnistm_seed,
                      cache_dir=hp.cache_dir, limit=limit)

    def prepare_data(self) -> None:
        # Build the MNIST-M caches once, on one process per node, before the ranks read them.
        for split in ("train", "val", "test"):
            self._mnistm(split, self._limit(split))

    def _limit(self, split: str) -> int | None:
        return self.hparams.limit_train if split == "train" else self.hparams.limit_eval

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        rgb = GreyToRGB()
        datasets = {}
        for split in ("train", "val", "test"):
            limit = self._limit(split)
            datasets[f"source_{split}"] = MNIST(self.hparams.mnist_root, split=split, transform=rgb, limit=limit)
            datasets[f"target_{split}"] = self._mnistm(split, limit)
        return datasets


class BlobsDataModule(DomainAdaptationDataModule):
    """The book's 3-D blobs (notebook 7.5): source [0,0,0] / [2,4,4], target [6,3,3] / [7,6,7].

    Args:
        seed: Seed of every draw (source and target, all splits).
    """

    def __init__(self, seed: int = 0, batch_size: PositiveInt = 32, num_workers: NonNegativeInt = 0,
                 mode: PairMode = "max_size_cycle", pin_memory: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, mode=mode, pin_memory=pin_memory)
        self.save_hyperparameters()

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        return {f"{domain}_{split}": Blobs(domain, split, seed=self.hparams.seed)
                for domain in ("source", "target") for split in ("train", "val", "test")}
