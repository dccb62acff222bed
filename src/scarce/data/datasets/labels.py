"""Label tables: Cityscapes ids, train ids, names, colours, and the SYNTHIA -> Cityscapes train-id mappings.

One source of truth for every segmentation label in scarce. The Cityscapes table is the one of
``cityscapesScripts/helpers/labels.py``; the SYNTHIA mappings are those of the book's ``synthia_utils.py``
(SYNTHIA-SEQS and SYNTHIA-RAND-CITYSCAPES differ on id 12 and add ids 16-22 for RAND).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from scarce._errors import ScarceError

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "CITYSCAPES_LABELS",
    "IGNORE_INDEX",
    "LABEL_ID_TO_TRAIN_ID",
    "NUM_CLASSES",
    "SYNTHIA_RAND_TO_TRAIN_ID",
    "SYNTHIA_SEQS_TO_TRAIN_ID",
    "CityscapesLabel",
    "LabelMapError",
    "colorize",
    "label_ids_to_train_ids",
    "lookup_table",
    "remap",
]

IGNORE_INDEX = 255
NUM_CLASSES = 19


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int
    category: str
    color: tuple[int, int, int]


# cityscapesScripts' table (ignoreInEval labels carry train id 255; the license plate has id -1).
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", (119, 11, 32)),
    CityscapesLabel("license plate", -1, 255, "vehicle", (0, 0, 142)),
)

_TRAIN_LABELS = sorted((lab for lab in CITYSCAPES_LABELS if lab.train_id != IGNORE_INDEX), key=lambda lab: lab.train_id)
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = tuple(lab.color for lab in _TRAIN_LABELS)

# labelIds PNGs are uint8, so the license plate (-1) never appears in them.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {lab.id: lab.train_id for lab in CITYSCAPES_LABELS if lab.id >= 0}

SYNTHIA_SEQS_TO_TRAIN_ID: dict[int, int] = {
    0: 255,  # void
    1: 10,  # sky
    2: 2,  # building
    3: 0,  # road
    4: 1,  # sidewalk
    5: 4,  # fence
    6: 8,  # vegetation
    7: 5,  # pole
    8: 13,  # car
    9: 7,  # traffic sign
    10: 11,  # pedestrian -> person
    11: 18,  # bicycle
    12: 0,  # lanemarking -> road
    13: 255,  # parking slot
    14: 255,  # road work
    15: 6,  # traffic light
}

SYNTHIA_RAND_TO_TRAIN_ID: dict[int, int] = {
    **SYNTHIA_SEQS_TO_TRAIN_ID,
    12: 17,  # motorcycle (lanemarking is 22 in RAND-CITYSCAPES)
    16: 9,  # terrain
    17: 12,  # rider
    18: 14,  # truck
    19: 15,  # bus
    20: 16,  # train
    21: 3,  # wall
    22: 0,  # lanemarking -> road
}

# Marks ids outside a mapping in a lookup table; real targets are 0..18 and 255.
_UNMAPPED = -1


class LabelMapError(ScarceError):
    """A label image holds a value that its mapping does not know."""


def lookup_table(mapping: Mapping[int, int], size: int = 65536) -> np.ndarray:
    """A dense ``int32`` table ``lut[source_id] = train_id``, ``-1`` where ``mapping`` has no entry."""
    lut = np.full(size, _UNMAPPED, dtype=np.int32)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


def remap(ids: np.ndarray, mapping: Mapping[int, int] | np.ndarray, path: str | Path = "<array>",
          what: str = "label") -> np.ndarray:
    """Map an integer label image to train ids; unknown values raise, naming the values and the file.

    Args:
        ids: integer array, any shape (e.g. ``(H, W)``), values >= 0.
        mapping: source id -> train id, as a dict or a table from :func:`lookup_table`.
        path: the file the labels came from, for the error message.
        what: what the ids are ("SYNTHIA-SEQS class id", ...), for the error message.

    Returns:
        ``uint8`` array of the same shape with values in ``0..18`` or 255.
    """
    lut = mapping if isinstance(mapping, np.ndarray) else lookup_table(mapping)
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(lut)):
        raise LabelMapError(f"{path}: {what} values span {ids.min()}..{ids.max()}, outside 0..{len(lut) - 1}")
    out = lut[ids]
    if (out == _UNMAPPED).any():
        bad = np.unique(ids[out == _UNMAPPED]).tolist()
        known = np.flatnonzero(lut != _UNMAPPED).tolist()
        raise LabelMapError(
            f"{path}: {what} value(s) {bad} are not in the mapping (known: {known}). Check that the file belongs to "
            f"this dataset and layout, or extend the mapping in scarce.data.datasets.labels."
        )
    return out.astype(np.uint8)


_LABEL_ID_LUT = lookup_table(LABEL_ID_TO_TRAIN_ID, size=256)


def label_ids_to_train_ids(label_ids: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Cityscapes ``*_labelIds.png`` content -> train ids (19 classes, 255 = ignore), per cityscapesScripts."""
    return remap(label_ids, _LABEL_ID_LUT, path, what="Cityscapes labelId")


_PALETTE = np.zeros((256, 3), dtype=np.uint8)
_PALETTE[: len(CITYSCAPES_COLORS)] = np.asarray(CITYSCAPES_COLORS, dtype=np.uint8)


def colorize(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Train-id mask -> Cityscapes colours.

    Args:
        mask: integer train ids, shape ``(..., H, W)``; 255 (and any id past 18) is drawn black.

    Returns:
        ``uint8`` tensor of shape ``(..., 3, H, W)``.
    """
    mask = torch.as_tensor(mask).long().clamp(0, 255)
    rgb = torch.from_numpy(_PALETTE)[mask]  # (..., H, W, 3)
    return rgb.movedim(-1, -3).contiguous()
