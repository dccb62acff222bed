"""Tiny Cityscapes and SYNTHIA trees in their exact on-disk layouts (16-bit 3-channel SYNTHIA labels included).

Each image is painted with the colour of its label so a network can learn the pairing in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from scarce.data.datasets.labels import CITYSCAPES_LABELS, SYNTHIA_RAND_TO_TRAIN_ID, SYNTHIA_SEQS_TO_TRAIN_ID

H, W = 24, 40


def _blocks(rng: np.random.Generator, values: list[int], h: int = H, w: int = W) -> np.ndarray:
    """A label image made of vertical bands, one value per band, every value used."""
    cols = np.array_split(np.arange(w), len(values))
    out = np.zeros((h, w), dtype=np.int64)
    for value, c in zip(rng.permutation(values), cols):
        out[:, c] = value
    return out


def _paint(label: np.ndarray, seed: int) -> np.ndarray:
    """RGB uint8 image whose colour is a fixed function of the label, plus a little noise."""
    rng = np.random.default_rng(seed)
    lut = np.random.default_rng(0).integers(0, 256, size=(256, 3))
    img = lut[label.astype(np.int64) % 256] + rng.integers(-10, 11, size=label.shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[..., ::-1])


def write_gray(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_cityscapes(root: Path, *, per_split: int = 2, label_ids: bool = False, splits=("train", "val", "test"),
                    cities=("aachen", "bonn")) -> dict[str, list[np.ndarray]]:
    """Write ``root/leftImg8bit`` and ``root/gtFine``; returns the expected train-id masks per split, in order."""
    rng = np.random.default_rng(1)
    eval_ids = [lab.id for lab in CITYSCAPES_LABELS if lab.id >= 0]
    id_to_train = {lab.id: lab.train_id for lab in CITYSCAPES_LABELS}
    expected: dict[str, list[np.ndarray]] = {}
    for split in splits:
        items = []
        for city in cities:
            for k in range(per_split):
                stem = f"{city}_{k:06d}_000019"
                ids = _blocks(rng, list(rng.choice(eval_ids, size=6, replace=False)))
                train = np.vectorize(id_to_train.get)(ids).astype(np.uint8)
                write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _paint(train, k))
                gt = root / "gtFine" / split / city
                if label_ids:
                    write_gray(gt / f"{stem}_gtFine_labelIds.png", ids.astype(np.uint8))
                else:
                    write_gray(gt / f"{stem}_gtFine_labelTrainIds.png", train)
                items.append((f"{city}/{stem}", train))
        expected[split] = [m for _, m in sorted(items, key=lambda t: t[0])]
    return expected


def synthia_label_png(path: Path, class_ids: np.ndarray, instance_ids: np.ndarray | None = None) -> None:
    """A SYNTHIA GT/LABELS file: 16-bit, 3 channels, class in R (OpenCV's index 2), instance in G."""
    bgr = np.zeros(class_ids.shape + (3,), dtype=np.uint16)
    bgr[..., 2] = class_ids
    bgr[..., 1] = instance_ids if instance_ids is not None else 1000 + class_ids  # > 255: truly 16-bit
    write_gray(path, bgr)


def make_synthia(root: Path, *, rand_frames: int = 3, seqs_frames: int = 2,
                 cameras=(("Stereo_Left", "Omni_F"), ("Stereo_Right", "Omni_B"))) -> None:
    """``root/RAND_CITYSCAPES`` (every RAND id used) and ``root/SYNTHIA-SEQS-04-FALL`` (every SEQS id used)."""
    rng = np.random.default_rng(2)
    rand = root / "RAND_CITYSCAPES"
    for k in range(rand_frames):
        ids = _blocks(rng, sorted(SYNTHIA_RAND_TO_TRAIN_ID), w=2 * W)
        train = np.vectorize(SYNTHIA_RAND_TO_TRAIN_ID.get)(ids)
        write_rgb(rand / "RGB" / f"{k:07d}.png", _paint(train, k))
        synthia_label_png(rand / "GT" / "LABELS" / f"{k:07d}.png", ids)
    seqs = root / "SYNTHIA-SEQS-04-FALL"
    for stereo, omni in cameras:
        for k in range(seqs_frames):
            ids = _blocks(rng, sorted(SYNTHIA_SEQS_TO_TRAIN_ID), w=2 * W)
            train = np.vectorize(SYNTHIA_SEQS_TO_TRAIN_ID.get)(ids)
            write_rgb(seqs / "RGB" / stereo / omni / f"{k:06d}.png", _paint(train, k))
            synthia_label_png(seqs / "GT" / "LABELS" / stereo / omni / f"{k:06d}.png", ids)
        # SEQS also ship depth and colour-coded labels: they must be ignored.
        write_gray(seqs / "Depth" / stereo / omni / "000000.png", np.zeros((H, 2 * W), np.uint16))
