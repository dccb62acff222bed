"""SYNTHIA (RAND-CITYSCAPES and the SEQS sequences) with labels mapped to Cityscapes train ids."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from scarce._errors import DataNotFoundError, ScarceError
from scarce.data.datasets._folder import SegmentationFolder
from scarce.data.datasets._utils import verify_str_arg
from scarce.data.datasets.cityscapes import PairingError, _pairing_message
from scarce.data.datasets.labels import SYNTHIA_RAND_TO_TRAIN_ID, SYNTHIA_SEQS_TO_TRAIN_ID, lookup_table, remap

__all__ = ["LAYOUT", "SYNTHIA", "detect_layout", "read_synthia_label"]

SPLITS = ("train", "val", "all")

LAYOUT = """\
root/
    RAND_CITYSCAPES/                  (SYNTHIA-RAND-CITYSCAPES: detected by RGB/*.png)
        RGB/0000000.png
        GT/LABELS/0000000.png         (16-bit, 3 channels; class id in R, instance id in G)
    SYNTHIA-SEQS-04-FALL/             (SYNTHIA-SEQS: detected by RGB/Stereo_*/Omni_*/)
        RGB/{Stereo_Left,Stereo_Right}/{Omni_F,Omni_B,Omni_L,Omni_R}/000000.png
        GT/LABELS/{Stereo_Left,Stereo_Right}/{Omni_F,Omni_B,Omni_L,Omni_R}/000000.png
    ...                               (any number of sequence folders; root may also be one of them)"""

_LUTS = {"rand": lookup_table(SYNTHIA_RAND_TO_TRAIN_ID), "seqs": lookup_table(SYNTHIA_SEQS_TO_TRAIN_ID)}
_WHAT = {"rand": "SYNTHIA-RAND-CITYSCAPES class id", "seqs": "SYNTHIA-SEQS class id"}


def detect_layout(seq_dir: Path) -> str | None:
    """``"rand"`` (``RGB/*.png``), ``"seqs"`` (``RGB/Stereo_*/Omni_*/``) or ``None`` for a sequence folder."""
    rgb = seq_dir / "RGB"
    if not rgb.is_dir():
        return None
    if any(rgb.glob("*.png")):
        return "rand"
    if any(p.is_dir() for p in rgb.glob("Stereo_*/Omni_*")):
        return "seqs"
    return None


def _sequences(root: Path) -> list[tuple[Path, str]]:
    if not root.is_dir():
        raise DataNotFoundError(f"SYNTHIA: no folder {str(root)!r}. Expected layout:\n{LAYOUT}")
    if (layout := detect_layout(root)) is not None:
        return [(root, layout)]
    found = [(d, layout) for d in sorted(root.iterdir()) if d.is_dir() and (layout := detect_layout(d)) is not None]
    if not found:
        raise DataNotFoundError(f"SYNTHIA: no sequence folder (with RGB/*.png or RGB/Stereo_*/Omni_*/) in "
                                f"{str(root)!r}. Expected layout:\n{LAYOUT}")
    return found


def _camera_groups(seq_dir: Path, layout: str) -> list[tuple[Path, Path]]:
    """``(rgb_dir, label_dir)`` per camera: one for RAND, up to 8 (stereo x omni) for SEQS."""
    if layout == "rand":
        return [(seq_dir / "RGB", seq_dir / "GT" / "LABELS")]
    cams = sorted(p.relative_to(seq_dir / "RGB") for p in (seq_dir / "RGB").glob("Stereo_*/Omni_*") if p.is_dir())
    return [(seq_dir / "RGB" / c, seq_dir / "GT" / "LABELS" / c) for c in cams]


def _pairs_of(rgb_dir: Path, label_dir: Path) -> list[tuple[Path, Path]]:
    if not label_dir.is_dir():
        raise DataNotFoundError(f"SYNTHIA: {str(rgb_dir)!r} has no label folder {str(label_dir)!r}. "
                                f"Expected layout:\n{LAYOUT}")
    images = {p.name: p for p in rgb_dir.glob("*.png")}
    labels = {p.name: p for p in label_dir.glob("*.png")}
    lonely_images = sorted(str(images[k]) for k in set(images) - set(labels))
    lonely_labels = sorted(str(labels[k]) for k in set(labels) - set(images))
    if lonely_images or lonely_labels:
        raise PairingError(_pairing_message(f"SYNTHIA {str(rgb_dir)!r}", lonely_images, lonely_labels))
    return [(images[k], labels[k]) for k in sorted(images)]


def _split_frames(frames: list, split: str, val_fraction: float) -> list:
    # Frames of a sequence are near-duplicates of their neighbours: validate on the tail of each camera's
    # sequence rather than on frames interleaved with training ones.
    if split == "all":
        return frames
    n_val = min(len(frames) - 1, max(1, math.ceil(len(frames) * val_fraction))) if len(frames) > 1 else 0
    cut = len(frames) - n_val
    return frames[:cut] if split == "train" else frames[cut:]


def read_synthia_label(path: Path, layout: str) -> np.ndarray:
    """A SYNTHIA ``GT/LABELS`` PNG -> ``uint8`` Cityscapes train ids ``(H, W)``.

    The files are 16-bit PNGs with 3 channels; the class id is the R channel (index 2 as OpenCV reads BGR),
    the instance id the G channel. Values outside the layout's mapping raise, naming the value and the file.
    """
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ScarceError(f"{path}: cannot read the label image (missing, empty or not an image file)")
    if array.ndim != 3 or array.shape[2] < 3:
        raise ScarceError(f"{path}: a SYNTHIA label PNG has 3 channels (class id in R), this one has shape "
                          f"{array.shape}")
    return remap(array[..., 2], _LUTS[layout], path, what=_WHAT[layout])


class SYNTHIA(SegmentationFolder):
    """SYNTHIA-RAND-CITYSCAPES and SYNTHIA-SEQS, labels mapped to Cityscapes train ids.

    The layout (hence the label mapping) is detected per sequence folder::

        root/
            RAND_CITYSCAPES/RGB/*.png, GT/LABELS/*.png
            SYNTHIA-SEQS-XX-NAME/RGB/Stereo_{Left,Right}/Omni_{F,B,L,R}/*.png, GT/LABELS/(same)/*.png

    SYNTHIA has no official split: ``"val"`` is the last ``val_fraction`` of the frames of each camera of each
    sequence (at least one frame when there are two or more), ``"train"`` the rest, ``"all"`` everything.

    Args:
        root: folder holding the sequence folders (or one sequence folder).
        split: ``"train"``, ``"val"`` or ``"all"``.
        transform: called on each image.
        target_transform: called on each mask.
        transforms: called on each sample dict (joint image + mask augmentation; instead of the two above).
        val_fraction: share of each camera sequence kept for ``"val"``.

    Samples: ``{"image": float (3, H, W) in [0, 1], "mask": int64 (H, W), "name": str}``.
    """

    splits = SPLITS

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable | None = None,
                 val_fraction: float = 0.1):
        if not 0.0 <= val_fraction < 1.0:
            raise ScarceError(f"SYNTHIA: val_fraction must be in [0, 1), got {val_fraction}")
        super().__init__(root, verify_str_arg(split, "split", SPLITS), transforms, transform, target_transform)
        self.items: list[tuple[Path, Path, str]] = []  # (image, label, layout)
        for seq_dir, layout in _sequences(self.root):
            for rgb_dir, label_dir in _camera_groups(seq_dir, layout):
                frames = _pairs_of(rgb_dir, label_dir)
                self.items += [(img, lab, layout) for img, lab in _split_frames(frames, split, val_fraction)]

    def read_mask(self, label_path: Path, layout: str) -> np.ndarray:
        return read_synthia_label(label_path, layout)

    def name(self, index: int) -> str:
        parts = self.items[index][0].relative_to(self.root).with_suffix("").parts
        return "_".join(p for p in parts if p != "RGB")

