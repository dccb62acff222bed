"""Rendered scenes as segmentation samples: rendered on demand, or read back from the rendering shards.

The label space is the rendering class table, :data:`scarce.render.CLASS_NAMES` (``background``, ``cube``,
``sphere``, ...): the shapes have no Cityscapes counterpart, so their train ids are their render class ids
(0 = background, a real class here, not ignored). Only ``image`` and ``mask`` are kept, so batches collate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from scarce._errors import DataNotFoundError
from scarce.render.config import CLASS_NAMES, RENDER_SIZE
from scarce.render.dataset import RenderedDataset
from scarce.shards.readers import TFRecordDataset
from scarce.shards.samples import SampleDataset
from scarce.shards.schemas import RENDERED_LAYOUT, decode_rendered
from scarce.shards.tfrecord import find_shards

__all__ = ["SPLIT_SEED_OFFSETS", "RenderedSegmentation", "RenderedSegmentationShards", "rendered_class_names"]

# A rendered data source of seed S renders its splits from these seeds on the fly (S, S + 1, S + 2); rendered into
# shards with the same seeds (`scarce render --split train S N --split val S+1 M ...`), they are the same scenes.
SPLIT_SEED_OFFSETS = {"train": 0, "val": 1, "test": 2}


def rendered_class_names() -> tuple[str, ...]:
    """The rendering class table (train id = position)."""
    return tuple(CLASS_NAMES)


def _segmentation_view(sample: dict[str, Any], name: str) -> dict[str, Any]:
    return {"image": sample["image"], "mask": sample["mask"], "name": name}


class RenderedSegmentation(SampleDataset):
    """Scenes rendered on demand (sample ``i`` is a pure function of ``(preset, seed, i)``).

    Rendering happens in the process that asks for a sample, with its own GL context created on first use: keep
    DataLoader workers (``num_workers > 0``) doing it, and never render in the parent before they fork.

    Args:
        preset: rendering preset (``synthetic-flat``, ``photo-clutter``, ``randomized``) or a
            ``configs/render/*.yaml`` path.
        num_samples: number of scenes.
        seed: scene seed (use different seeds for training and validation).
        size: ``(H, W)`` rendered (``None``: :data:`scarce.render.RENDER_SIZE`).
        transform: called on each image.
        target_transform: called on each mask.
        transforms: called on each sample dict (joint image + mask augmentation; instead of the two above).
    """

    target_key = "mask"

    def __init__(self, preset: str = "synthetic-flat", num_samples: int = 512, seed: int = 0,
                 size: tuple[int, int] | list[int] | None = RENDER_SIZE, transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable | None = None):
        super().__init__(None, None, transforms, transform, target_transform)
        size = tuple(size) if size is not None else RENDER_SIZE
        self.preset = preset
        self.scenes = RenderedDataset(preset, num_samples, seed, size=size)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = _segmentation_view(self.scenes[index], f"{self.preset}_{self.scenes.seed}_{index}")
        return self.apply_transforms(sample)

    def extra_repr(self) -> str:
        return f"Preset: {self.preset}\nSeed: {self.scenes.seed}\nSize: {self.scenes.size}"

    def iter_masks(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.scenes.render(i)["semantic"]


def _decode_rendered_view(example: dict[str, Any]) -> dict[str, Any]:
    return _segmentation_view(decode_rendered(example), "")


class RenderedSegmentationShards(SampleDataset):
    """A split of rendered scenes written as shards by the rendering tools, read by index.

    Expected layout::

        root/
            {split}-00000-of-0000N.tfrecord[.index]

    Args:
        root: the shard folder (a path, or a URL such as ``s3://bucket/prefix``).
        split: file prefix of the split (``train``, ``val``, ...).
        transform: called on each image.
        target_transform: called on each mask.
        transforms: called on each sample dict (joint image + mask augmentation; instead of the two above).
    """

    target_key = "mask"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable | None = None):
        super().__init__(root, split, transforms, transform, target_transform)
        files = find_shards(self.root, split)
        if not files:
            raise DataNotFoundError(f"no rendered {split!r} shards in {str(root)!r}. Expected:\n"
                                    + RENDERED_LAYOUT.format(split=split))
        self.records = TFRecordDataset(files, decode=_decode_rendered_view)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.records[index]
        sample["name"] = str(index)
        return self.apply_transforms(sample)
