"""Cityscapes (fine annotations) from its official folders, or from the TFRecord shards made from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from scarce._errors import DataNotFoundError, ScarceError
from scarce.data.datasets._folder import SegmentationFolder
from scarce.data.datasets._utils import verify_str_arg
from scarce.data.datasets.labels import IGNORE_INDEX, NUM_CLASSES, label_ids_to_train_ids, lookup_table, remap

__all__ = ["LAYOUT", "SPLITS", "Cityscapes", "PairingError"]

SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"

LAYOUT = """\
root/
    leftImg8bit/
        {train,val,test}/
            {city}/
                {city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    gtFine/
        {train,val,test}/
            {city}/
                {city}_{seq:06d}_{frame:06d}_gtFine_labelTrainIds.png   (preferred: 19 train ids, 255 = ignore)
                {city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png        (else: converted per cityscapesScripts)"""

# A labelTrainIds file may only hold 0..18 and 255.
_TRAIN_ID_LUT = lookup_table({**{i: i for i in range(NUM_CLASSES)}, IGNORE_INDEX: IGNORE_INDEX}, size=256)


class PairingError(ScarceError):
    """Images without labels, or labels without images."""


def _pairing_message(where: str, lonely_images: list[str], lonely_labels: list[str]) -> str:
    def head(items: list[str]) -> str:
        shown = "\n".join(f"    {x}" for x in items[:10])
        return shown + (f"\n    ... and {len(items) - 10} more" if len(items) > 10 else "")

    parts = [f"{where}: images and labels do not pair up."]
    if lonely_images:
        parts.append(f"  {len(lonely_images)} image(s) without a label:\n{head(lonely_images)}")
    if lonely_labels:
        parts.append(f"  {len(lonely_labels)} label(s) without an image:\n{head(lonely_labels)}")
    parts.append("  Restore the missing files or remove the extra ones.")
    return "\n".join(parts)


def _find_pairs(root: Path, split: str) -> list[tuple[Path, Path, bool]]:
    """``(image, label, label_is_train_ids)`` for every frame of ``split``, checking the pairing."""
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (img_dir, gt_dir):
        if not folder.is_dir():
            raise DataNotFoundError(f"Cityscapes: no folder {str(folder)!r}. Expected layout:\n{LAYOUT}")
    images = {p.relative_to(img_dir).as_posix()[: -len(IMAGE_SUFFIX)]: p for p in img_dir.glob(f"*/*{IMAGE_SUFFIX}")}
    train_ids = {p.relative_to(gt_dir).as_posix()[: -len(TRAIN_IDS_SUFFIX)]: p
                 for p in gt_dir.glob(f"*/*{TRAIN_IDS_SUFFIX}")}
    label_ids = {p.relative_to(gt_dir).as_posix()[: -len(LABEL_IDS_SUFFIX)]: p
                 for p in gt_dir.glob(f"*/*{LABEL_IDS_SUFFIX}")}
    labelled = set(train_ids) | set(label_ids)
    if not images and not labelled:
        raise DataNotFoundError(f"Cityscapes: {str(img_dir)!r} and {str(gt_dir)!r} hold no frames. "
                                f"Expected layout:\n{LAYOUT}")
    lonely_images = sorted(str(images[k]) for k in set(images) - labelled)
    lonely_labels = sorted(str(train_ids.get(k) or label_ids[k]) for k in labelled - set(images))
    if lonely_images or lonely_labels:
        raise PairingError(_pairing_message(f"Cityscapes {split!r} split in {str(root)!r}", lonely_images,
                                            lonely_labels))
    return [(images[k], train_ids[k], True) if k in train_ids else (images[k], label_ids[k], False)
            for k in sorted(images)]


def _read_train_ids(path: Path, is_train_ids: bool) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ScarceError(f"{path}: cannot read the label image (missing, empty or not an image file)")
    if array.ndim != 2:
        raise ScarceError(f"{path}: a Cityscapes label image has one channel, this one has shape {array.shape}")
    if is_train_ids:
        return remap(array, _TRAIN_ID_LUT, path, what="Cityscapes trainId")
    return label_ids_to_train_ids(array, path)


class Cityscapes(SegmentationFolder):
    """Cityscapes with fine labels as 19 train ids (255 = ignore).

    Reads ``*_gtFine_labelTrainIds.png`` when present, else converts ``*_gtFine_labelIds.png`` with the
    cityscapesScripts table (:data:`scarce.data.datasets.labels.LABEL_ID_TO_TRAIN_ID`). The expected layout::

        root/
            leftImg8bit/{train,val,test}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
            gtFine/{train,val,test}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png (or _labelIds.png)

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"`` (the official test labels are all void).
        transform: called on each image.
        target_transform: called on each mask.
        transforms: called on each sample dict (joint image + mask augmentation; instead of the two above).

    Samples: ``{"image": float (3, H, W) in [0, 1], "mask": int64 (H, W), "name": str}``.

    Raises:
        DataNotFoundError: a split folder is missing (the message shows the layout).
        PairingError: images without labels or labels without images (the message lists them).
    """

    splits = SPLITS

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable | None = None):
        super().__init__(root, verify_str_arg(split, "split", SPLITS), transforms, transform, target_transform)
        self.items = _find_pairs(self.root, split)  # (image, label, whether the label holds train ids)

    def read_mask(self, label_path: Path, is_train_ids: bool) -> np.ndarray:
        return _read_train_ids(label_path, is_train_ids)

    def name(self, index: int) -> str:
        return self.items[index][0].name[: -len(IMAGE_SUFFIX)]
