"""Class statistics of segmentation data, in one place: pixel counts per class and the class weightings computed
from them (median frequency, the book's log frequency); ``scarce data stats`` (:mod:`scarce.datamodules.stats_cli`)
prints them.

:class:`~scarce.callbacks.class_weights.ClassWeights` hands the weights of a DataModule's source training set to
the LightningModule through :meth:`~scarce.datamodules.segmentation.SegmentationDataModule.class_weights`;
``scarce data stats`` prints the same numbers for a dataset on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from scarce._errors import ScarceError
from scarce._progress import progress

__all__ = [
    "CLASS_WEIGHTINGS",
    "ClassWeighting",
    "class_pixel_counts",
    "class_statistics",
    "class_weights",
    "log_frequency_weights",
    "mask_histogram",
    "median_frequency_weights",
]

ClassWeighting = Literal["median_frequency", "log_frequency"]
"""The weightings of :data:`CLASS_WEIGHTINGS`, as a type for options (``ClassWeights(weighting=...)``)."""


class _MaskHistogram(Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.bincount(torch.as_tensor(self.dataset[index]["mask"]).flatten(), minlength=256)[:256]


def mask_histogram(dataset: Dataset, limit: int | None = None, num_workers: int = 0,
                   stored_masks: bool = False) -> tuple[np.ndarray, int]:
    """Pixels per mask value ``0..255`` over the first ``limit`` samples (None: all), and how many masks were read.

    Samples are read in a DataLoader, so rendered datasets render in workers (never in the parent process), and
    the dataset's transform applies (masks are counted at the size training sees). With ``stored_masks`` a dataset
    that has ``iter_masks()`` (no ``limit``) is read through it instead: the masks as stored, without decoding
    the images. Progress goes to stderr (:func:`scarce._progress.progress`).
    """
    if stored_masks and limit is None and hasattr(dataset, "iter_masks"):
        counts, images = np.zeros(256, dtype=np.int64), 0
        for mask in progress(dataset.iter_masks(), desc="class pixel counts", total=len(dataset), unit="masks"):
            counts += np.bincount(np.asarray(mask, dtype=np.int64).ravel(), minlength=256)[:256]
            images += 1
        return counts, images
    if limit is not None:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    counts = torch.zeros(256, dtype=torch.int64)
    loader = DataLoader(_MaskHistogram(dataset), batch_size=1, num_workers=num_workers)
    for hist in progress(loader, desc="class pixel counts", total=len(dataset), unit="masks"):
        counts += hist.sum(0)
    return counts.numpy(), len(dataset)


def class_pixel_counts(dataset: Dataset, num_classes: int = 19, num_workers: int = 0,
                       limit: int | None = None) -> np.ndarray:
    """Pixels per class over ``dataset`` (its masks' values ``0..num_classes-1``; 255 and others not counted)."""
    return mask_histogram(dataset, limit, num_workers)[0][:num_classes]


def median_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015): ``w_c = median(f) / f_c`` over the classes present.

    ``f_c`` is the share of class ``c`` among labelled pixels; classes without a pixel get weight 0 (they cannot
    be learnt from this data and must not blow up the loss).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        raise ScarceError("no labelled pixel in the dataset: cannot compute class weights")
    freq = counts / total
    present = freq > 0
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def log_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """The book's weights (notebooks 6.5 and 7.4): ``w_c = ln(total / n_c)``, minus the log of the class share.

    Gentler than median frequency: a class 100x rarer gets about ``ln(100) = 4.6`` more weight, not 100x.
    Classes without a pixel get weight 0, as in :func:`median_frequency_weights`.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        raise ScarceError("no labelled pixel in the dataset: cannot compute class weights")
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = np.log(total / counts[present])
    return weights


CLASS_WEIGHTINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median_frequency": median_frequency_weights,
    "log_frequency": log_frequency_weights,
}
"""Class weightings computed from pixel counts, by name."""


def class_weights(dataset: Dataset, weighting: ClassWeighting = "median_frequency", num_classes: int = 19,
                  limit: int | None = None, num_workers: int = 0) -> np.ndarray:
    """The ``weighting`` of the pixel counts of ``dataset``'s first ``limit`` samples, ``(num_classes,)``."""
    if weighting not in CLASS_WEIGHTINGS:
        raise ScarceError(f"unknown class weighting {weighting!r}; valid values are {', '.join(CLASS_WEIGHTINGS)}")
    return CLASS_WEIGHTINGS[weighting](class_pixel_counts(dataset, num_classes, num_workers, limit))


def class_statistics(dataset: Dataset, num_classes: int = 19) -> dict:
    """Pixel count, frequency and the weight of every weighting per class, plus the ignored pixels.

    Masks are read as stored (through ``iter_masks()`` when the dataset has it), so the counts are those of the
    files.
    """
    counts, images = mask_histogram(dataset, stored_masks=True)
    labelled = counts[:num_classes]
    weights = {f"{name}_weight": weigh(labelled) for name, weigh in CLASS_WEIGHTINGS.items()}
    total = labelled.sum()
    return {
        "images": images,
        "labelled_pixels": int(total),
        "ignored_pixels": int(counts[num_classes:].sum()),
        "classes": [{"id": c, "pixels": int(labelled[c]), "frequency": float(labelled[c] / total),
                     **{key: float(w[c]) for key, w in weights.items()}} for c in range(num_classes)],
    }
