"""What Cityscapes and SYNTHIA share: a list of (image file, label file, how to read the label) triples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from scarce._errors import ScarceError
from scarce.shards.samples import SampleDataset
from scarce.shards.schemas import encode_segmentation, segmentation_sample

__all__ = ["SegmentationFolder", "read_rgb"]


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 ``(H, W, 3)``; one clear error when it cannot be read."""
    array = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if array is None:
        raise ScarceError(f"{path}: cannot read the image (missing, empty or not an image file)")
    return array[..., ::-1]


class SegmentationFolder(SampleDataset):
    """Base of the folder datasets: ``items`` holds ``(image path, label path, how)`` per sample, ``read_mask(label
    path, how)`` gives train ids and ``name(index)`` a stable sample name; the rest (samples, masks for statistics,
    shard records) is written once here. The target of ``target_transform`` is the mask."""

    target_key = "mask"
    root: Path
    items: list[tuple[Path, Path, Any]]

    def read_mask(self, label_path: Path, how: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement read_mask(label_path, how)")

    def name(self, index: int) -> str:
        raise NotImplementedError(f"{type(self).__name__} must implement name(index)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, label_path, how = self.items[index]
        sample = segmentation_sample(read_rgb(image_path), self.read_mask(label_path, how), self.name(index))
        return self.apply_transforms(sample)

    def iter_masks(self) -> Iterator[np.ndarray]:
        """Every mask of the split as train ids (for class statistics)."""
        for _, label_path, how in self.items:
            yield self.read_mask(label_path, how)

    def records(self) -> Iterator[dict[str, Any]]:
        """Records for the shards: the original image file's bytes and the train-id mask as PNG."""
        for i, (image_path, label_path, how) in enumerate(self.items):
            yield encode_segmentation(image_path.read_bytes(), self.read_mask(label_path, how), self.name(i))
