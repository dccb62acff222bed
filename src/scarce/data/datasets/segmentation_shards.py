"""Segmentation samples as TFRecord shards: the record format shared by Cityscapes, SYNTHIA and rendered scenes.

Every converted segmentation dataset is a folder of shards, one set per split::

    out/
        train-00000-of-00004.tfrecord      (+ .index when uncompressed)
        ...
        train.manifest.json
        val-00000-of-00001.tfrecord
        val.manifest.json

Each record is a ``tf.train.Example`` with ``image`` (PNG bytes, RGB, 8-bit), ``mask`` (PNG bytes, one channel,
8-bit Cityscapes train ids, 255 = ignore), ``name`` (the source file's stem), ``height`` and ``width``. TensorFlow
reads it with ``tf.io.decode_png`` on both features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from scarce._errors import DataNotFoundError, ScarceError
from scarce.data import tfrecord
from scarce.data.datasets._utils import verify_str_arg

__all__ = [
    "FEATURES",
    "SegmentationShards",
    "decode_png",
    "encode_png",
    "make_record",
    "make_sample",
    "write_split_shards",
]

FEATURES = {"image": "bytes", "mask": "bytes", "name": "bytes", "height": "int64", "width": "int64"}

LAYOUT = """\
root/
    {split}-00000-of-0000N.tfrecord[.index]   (records: image PNG, mask PNG of train ids, name, height, width)
    {split}.manifest.json
made by `scarce data convert cityscapes|synthia --root DIR --out root`"""


def encode_png(array: np.ndarray) -> bytes:
    """``(H, W)`` or ``(H, W, 3)`` RGB uint8/uint16 array -> PNG bytes."""
    if array.ndim == 3:
        array = np.ascontiguousarray(array[..., ::-1])  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ScarceError(f"could not encode a {array.shape} {array.dtype} array as PNG")
    return buf.tobytes()


def decode_png(data: bytes, *, color: bool, where: str = "<bytes>") -> np.ndarray:
    """PNG/JPEG bytes -> ``(H, W, 3)`` RGB (``color=True``) or ``(H, W)`` (``color=False``) array, bit depth kept."""
    flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise ScarceError(f"{where}: not a decodable image ({len(data)} bytes)")
    if color:
        return array[..., ::-1]
    if array.ndim != 2:
        raise ScarceError(f"{where}: a mask must have one channel, this one has shape {array.shape}")
    return array


def make_sample(image: np.ndarray, mask: np.ndarray, name: str) -> dict[str, Any]:
    """uint8 ``(H, W, 3)`` image and ``(H, W)`` train ids -> the sample dict (``image`` float ``(3, H, W)`` in
    [0, 1], ``mask`` int64 ``(H, W)``, ``name``)."""
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return {"image": image_t, "mask": torch.from_numpy(np.ascontiguousarray(mask)).long(), "name": name}


def make_record(image_png: bytes, mask: np.ndarray, name: str) -> dict[str, Any]:
    """A record dict for :func:`scarce.data.tfrecord.write_shards` (``mask``: uint8 train ids ``(H, W)``)."""
    return {"image": image_png, "mask": encode_png(mask.astype(np.uint8)), "name": name,
            "height": int(mask.shape[0]), "width": int(mask.shape[1])}


def write_split_shards(records: Iterable[dict[str, Any]], out: str | Path, split: str, shards: int = 1,
                       compression: str | None = None) -> dict:
    """Write one split's records as ``{split}-*.tfrecord`` shards under ``out``; returns the manifest."""
    return tfrecord.write_shards(records, out, prefix=split, num_shards=shards, compression=compression)


class SegmentationShards(Dataset):
    """A split of a converted segmentation dataset, read back by index.

    Uncompressed shards are read at random through their index; GZIP/ZLIB shards are read once into memory
    (their records are compressed PNGs, so this holds about the size of the files).

    Expected layout::

        root/
            {split}-00000-of-0000N.tfrecord[.index]
            {split}.manifest.json

    Args:
        root: the folder given as ``--out`` to ``scarce data convert``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: called on each sample dict.
    """

    splits = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root, self.split, self.transform = Path(root), verify_str_arg(split, "split", self.splits), transform
        files = sorted(p for p in self.root.glob(f"{split}-*.tfrecord*") if not p.name.endswith(".index"))
        if not files:
            raise DataNotFoundError(f"no {split!r} shards in {str(self.root)!r}. Expected:\n"
                                    + LAYOUT.format(split=split))
        self.files = [str(p) for p in files]
        self._locations: list[tuple[int, int, int]] = []  # (file, offset, framed length)
        self._in_memory: list[bytes] = []
        for k, path in enumerate(self.files):
            if tfrecord.detect_compression(path) is None:
                self._locations += [(k, int(o), int(n)) for o, n in tfrecord.load_index(path)]
            else:
                self._in_memory += [data for data in tfrecord.iter_raw_records(path, "auto")]
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._locations) + len(self._in_memory)

    def _raw(self, index: int) -> tuple[bytes, str]:
        if index < len(self._locations):
            k, offset, length = self._locations[index]
            if k not in self._handles:  # opened lazily, so each DataLoader worker gets its own handle
                self._handles[k] = open(self.files[k], "rb")  # noqa: SIM115
            return tfrecord.read_record_at(self._handles[k], self.files[k], offset, length), self.files[k]
        return self._in_memory[index - len(self._locations)], self.root.name

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        data, path = self._raw(index % len(self))
        rec = tfrecord.parse_example(data, FEATURES, where=path)
        name = rec["name"][0].decode() if rec["name"] else str(index)
        image = decode_png(rec["image"][0], color=True, where=f"{path}: record {name!r} image")
        mask = decode_png(rec["mask"][0], color=False, where=f"{path}: record {name!r} mask")
        sample = make_sample(image, mask, name)
        return self.transform(sample) if self.transform is not None else sample

    def iter_masks(self) -> Iterator[np.ndarray]:
        """Every mask of the split, decoded (for class statistics)."""
        for i in range(len(self)):
            data, path = self._raw(i)
            rec = tfrecord.parse_example(data, {"mask": "bytes"}, where=path)
            yield decode_png(rec["mask"][0], color=False, where=path)
