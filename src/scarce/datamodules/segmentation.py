"""The segmentation DataModule: one source domain to train on, an optional target domain to measure the gap.

Each domain is a :class:`SegmentationSource`: Cityscapes or SYNTHIA folders, their TFRecord shards, or rendered
scenes. Validation has one dataloader per domain (index 0 the source, index 1 the target), so one run reports
``val/source_miou`` and ``val/target_miou``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt, restricted_number_type
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors

from scarce._errors import ScarceError
from scarce.adaptation.fda import FDA
from scarce.datamodules.paired import PairedLoaders
from scarce.data.datasets.cityscapes import Cityscapes
from scarce.data.datasets.labels import NUM_CLASSES
from scarce.data.datasets.segmentation_shards import SegmentationShards
from scarce.data.datasets.synthia import SYNTHIA
from scarce.data.stats import ClassWeighting, class_weights
from scarce.data.transforms import eval_transform, train_transform
from scarce.render.segmentation import SPLIT_SEED_OFFSETS, RenderedSegmentation, RenderedSegmentationShards

__all__ = [
    "SegmentationDataModule",
    "SegmentationSource",
    "SegmentationTransform",
    "build_dataset",
]

Kind = Literal["cityscapes", "synthia", "shards", "rendered"]

FDABeta = restricted_number_type("FDABeta", float, [(">=", 0.0), ("<=", 0.5)],
                                 docstring="FDA's window size, a fraction of min(H, W) in [0, 0.5]")


@dataclass
class SegmentationSource:
    """Where one domain's images come from.

    Args:
        kind: ``cityscapes`` (official folders), ``synthia`` (sequence folders), ``shards`` (the output of
            ``scarce data convert cityscapes|synthia``) or ``rendered`` (scenes rendered on the fly, or the
            rendering shards under ``root`` when it is set).
        root: the dataset folder (optional for ``rendered``).
        train_split: split trained on.
        val_split: split validated on (Cityscapes ``val``; SYNTHIA has no official split, see ``SYNTHIA``).
        test_split: split tested on (Cityscapes' official test labels are void, hence ``val``).
        preset: rendered only: the rendering preset (``synthetic-flat``, ``photo-clutter``).
        num_train: rendered: number of training scenes; others: keep only the first ``num_train`` (None: all).
        num_val: rendered: number of validation scenes; others: keep only the first ``num_val`` (None: all).
        seed: rendered only: base seed; training, validation and test scenes use ``seed``, ``seed + 1``, ``seed + 2``.
            Rendered once into ``root`` (``scarce render --split train S N --split val S+1 M --split test S+2 K``)
            they are the same scenes, read back instead of rendered each epoch: set ``root`` and ``test_split:
            test`` (``preset`` and ``seed`` are then unused).
    """

    kind: Kind = "cityscapes"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "val"
    preset: str = "synthetic-flat"
    num_train: PositiveInt | None = None
    num_val: PositiveInt | None = None
    seed: int = 0


# The DataModule's hyperparameters (saved in checkpoints) hold SegmentationSource objects: allow them in
# `torch.load(weights_only=True)`, which Lightning uses when a fit resumes from a checkpoint.
torch.serialization.add_safe_globals([SegmentationSource])


class SegmentationTransform:
    """Sample dict -> resized (and, for training, augmented) sample dict, image and mask together.

    Wraps :func:`scarce.data.transforms.train_transform` / :func:`eval_transform`: the mask is resized with
    nearest neighbour, colour changes touch the image only.

    Args:
        size: output ``(H, W)``; None keeps the input size.
        train: random flip, random 0.8-1.0 crop resized back, brightness and saturation jitter.
    """

    def __init__(self, size: Sequence[int] | None, train: bool):
        self.size = list(size) if size is not None else None
        self.pipeline = train_transform(self.size) if train else eval_transform(self.size)

    def __call__(self, sample: dict) -> dict:
        wrapped = dict(sample, image=tv_tensors.Image(sample["image"]), mask=tv_tensors.Mask(sample["mask"]))
        return self.pipeline(wrapped)


def _limit(dataset: Dataset, n: int | None) -> Dataset:
    return Subset(dataset, range(min(n, len(dataset)))) if n is not None else dataset


def build_dataset(source: SegmentationSource, stage: Literal["train", "val", "test"],
                  size: Sequence[int] | None, transform: Callable | None) -> Dataset:
    """The dataset of one domain for one stage."""
    split = {"train": source.train_split, "val": source.val_split, "test": source.test_split}[stage]
    count = source.num_train if stage == "train" else source.num_val
    if source.kind == "rendered" and source.root is not None:
        return _limit(RenderedSegmentationShards(source.root, split, transforms=transform), count)
    if source.kind == "rendered":
        n = count if count is not None else (512 if stage == "train" else 64)
        seed = source.seed + SPLIT_SEED_OFFSETS[stage]
        return RenderedSegmentation(source.preset, n, seed, size=size, transforms=transform)
    if source.root is None:
        raise ScarceError(f"data source of kind {source.kind!r} needs a root folder: set `root:` in the config "
                          f"(e.g. `--data.source.root DIR`)")
    if source.kind == "cityscapes":
        dataset = Cityscapes(source.root, split, transforms=transform)
    elif source.kind == "synthia":
        dataset = SYNTHIA(source.root, split, transforms=transform)
    elif source.kind == "shards":
        dataset = SegmentationShards(source.root, split, transforms=transform)
    else:
        raise ScarceError(f"unknown data source kind {source.kind!r}; valid values are "
                          "'cityscapes', 'synthia', 'shards', 'rendered'")
    return _limit(dataset, count)


class SegmentationDataModule(PairedLoaders, LightningDataModule):
    """Train on ``source``; validate on ``source`` (dataloader 0) and ``target`` (dataloader 1, when given).

    Batches are dicts: ``image`` float ``(B, 3, H, W)``, ``mask`` int64 ``(B, H, W)`` (255 = ignore), ``name``.
    With ``paired_target=True`` the training batches are ``{"source": batch, "target": batch}`` (for domain
    adaptation; the target masks are dropped), built by :class:`~scarce.datamodules.paired.PairedLoaders`.
    Testing uses the target's ``test_split`` when there is a target, else the source's.

    FDA (Yang & Soatto 2020): with ``fda_beta`` set, every paired training batch is restyled on its device after
    transfer (:meth:`on_after_batch_transfer`): each source image takes the low-frequency amplitude spectrum of a
    random target image of the batch (:class:`scarce.adaptation.FDA`); target images, masks, validation and test
    batches are untouched. Any LightningModule that trains on the source part of paired batches gets it
    (``Segmentation``, ``DANNSegmentation``, ``SelfTraining``). Restyling after the transfer runs the FFTs on
    the GPU when there is one, and after the augmentation, so both images share one size.

    Args:
        source: the domain trained on.
        target: the domain the gap is measured on (None: source only).
        size: ``(H, W)`` every image and mask is resized to (training crops are resized back to it).
        augment: random flip, crop and colour jitter on training samples.
        batch_size: samples per batch.
        num_workers: DataLoader workers per loader.
        pin_memory: pin host memory (GPU training).
        paired_target: training batches also carry unlabelled target samples.
        fda_beta: FDA's window size beta (the paper's 0.01 to 0.09), or None for no FDA; needs
            ``paired_target``.
    """

    def __init__(self, source: SegmentationSource, target: SegmentationSource | None = None,
                 size: tuple[PositiveInt, PositiveInt] | None = (256, 512), augment: bool = True,
                 batch_size: PositiveInt = 8, num_workers: NonNegativeInt = 0, pin_memory: bool = False,
                 paired_target: bool = False, fda_beta: FDABeta | None = None) -> None:
        super().__init__()
        if paired_target and target is None:
            raise ScarceError("paired_target=True needs a `target` data source")
        self.save_hyperparameters()
        self.fda = FDA(fda_beta) if fda_beta is not None else None
        self.source, self.target = source, target
        self.datasets: dict[str, Dataset] = {}

    @property
    def domains(self) -> tuple[str, ...]:
        """Names of the validation dataloaders, in order."""
        return ("source", "target") if self.target is not None else ("source",)

    def _build(self, domain: str, stage: Literal["train", "val", "test"]) -> Dataset:
        spec = self.source if domain == "source" else self.target
        transform = SegmentationTransform(self.hparams.size, train=stage == "train" and self.hparams.augment)
        return build_dataset(spec, stage, self.hparams.size, transform)

    def _check_fda(self) -> None:
        """``fda_beta`` needs paired batches and a window of at least one frequency (checked in :meth:`setup`, where
        ``scarce fit`` reports a :class:`ScarceError` as one line; in ``__init__`` jsonargparse would wrap it)."""
        beta, size = self.hparams.fda_beta, self.hparams.size
        if beta is None:
            return
        if not self.hparams.paired_target:
            raise ScarceError(f"data.init_args.fda_beta ({beta}) restyles source images with the target images of the "
                              "same batch: set `data.init_args.paired_target: true` (with a `target`), or "
                              "`fda_beta: null`")
        if size is not None and math.floor(min(size) * beta) == 0:
            raise ScarceError(f"data.init_args.fda_beta ({beta}) at size {list(size)} swaps no frequency "
                              f"(floor({min(size)} * {beta}) = 0): use at least 1 / {min(size)} = {1 / min(size):.3f}")

    def setup(self, stage: str | None = None) -> None:
        self._check_fda()
        wanted = {"fit": [("source", "train"), *[(d, "val") for d in self.domains]],
                  "validate": [(d, "val") for d in self.domains],
                  "test": [(self.domains[-1], "test")],
                  "predict": [(self.domains[-1], "test")]}
        keys = wanted.get(stage) if stage else [k for v in wanted.values() for k in v]
        if self.hparams.paired_target and stage in (None, "fit"):
            keys = [*keys, ("target", "train")]
        for domain, split in keys:
            if f"{domain}_{split}" not in self.datasets:
                self.datasets[f"{domain}_{split}"] = self._build(domain, split)

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        if self.hparams.paired_target:
            return self._paired_loader(self.datasets["source_train"], self.datasets["target_train"])
        return self._training_loader(self.datasets["source_train"])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """FDA on paired training batches (``fda_beta``); every other batch as it is."""
        if self.fda is not None and self.trainer is not None and self.trainer.training:
            return self.fda(batch)
        return batch

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.datasets[f"{d}_val"], shuffle=False, split=f"{d} validation") for d in self.domains]

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets[f"{self.domains[-1]}_test"], shuffle=False, split=f"{self.domains[-1]} test")

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def class_weights(self, num_classes: int = NUM_CLASSES, limit: int | None = None,
                      weighting: ClassWeighting = "median_frequency") -> np.ndarray:
        """Class weights of the source training set, read without augmentation, ``(num_classes,)``.

        ``weighting`` is a name in :data:`scarce.data.stats.CLASS_WEIGHTINGS`; ``limit`` caps the samples read.
        Used by :class:`scarce.callbacks.class_weights.ClassWeights`.
        """
        transform = SegmentationTransform(self.hparams.size, train=False)
        dataset = build_dataset(self.source, "train", self.hparams.size, transform)
        return class_weights(dataset, weighting, num_classes, limit=limit, num_workers=self.hparams.num_workers)
