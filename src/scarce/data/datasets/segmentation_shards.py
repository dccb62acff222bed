"""A split of segmentation TFRecord shards (Cityscapes, SYNTHIA converted), read back by index.

The record schema (image PNG, train-id mask PNG, name, height, width) is
:data:`scarce.shards.schemas.SEGMENTATION_FEATURES`, written by ``scarce data convert cityscapes|synthia``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scarce._errors import DataNotFoundError
from scarce.data.datasets._utils import verify_str_arg
from scarce.shards.readers import TFRecordDataset
from scarce.shards.samples import SampleDataset
from scarce.shards.tfrecord import find_shards
from scarce.shards.schemas import SEGMENTATION_LAYOUT, decode_segmentation, decode_segmentation_mask

__all__ = ["SegmentationShards"]


class SegmentationShards(SampleDataset):
    """A split of a converted segmentation dataset, read back by index.

    Uncompressed shards are read at random through their index; GZIP/ZLIB shards are read once into memory
    (their records are compressed PNGs, so this holds about the size of the files).

    Expected layout::

        root/
            {split}-00000-of-0000N.tfrecord[.index]
            {split}.manifest.json

    Args:
        root: the folder given as ``--out`` to ``scarce data convert`` (a path, or a URL such as
            ``s3://bucket/prefix``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: called on each image.
        target_transform: called on each mask.
        transforms: called on each sample dict (joint image + mask augmentation; instead of the two above).

    Samples: ``{"image": float (3, H, W) in [0, 1], "mask": int64 (H, W), "name": str}``.
    """

    splits = ("train", "val", "test")
    target_key = "mask"

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable | None = None):
        super().__init__(root, verify_str_arg(split, "split", self.splits), transforms, transform, target_transform)
        files = find_shards(self.root, split)
        if not files:
            raise DataNotFoundError(f"no {split!r} shards in {str(self.root)!r}. Expected:\n"
                                    + SEGMENTATION_LAYOUT.format(split=split))
        self.records = TFRecordDataset(files, compressed="memory")
        self.files = self.records.files

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, data = self.records.raw(index)
        sample = decode_segmentation(data, where=path, default_name=str(index % len(self)))
        return self.apply_transforms(sample)

    def iter_masks(self) -> Iterator[np.ndarray]:
        """Every mask of the split, decoded (for class statistics)."""
        for i in range(len(self)):
            path, data = self.records.raw(i)
            yield decode_segmentation_mask(data, where=path)
