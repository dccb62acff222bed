"""Converters: datasets in their official layouts -> TFRecord shards (``scarce data convert NAME``).

Each converter is registered by name in :data:`CONVERTERS` and has one signature::

    convert(root: str | None, out: str, shards: int, compression: str | None) -> dict

It reads a dataset under ``root`` and writes, with :func:`scarce.shards.writer.write_shards`, one set of shards
per split under ``out`` (``{split}-0000K-of-0000N.tfrecord`` + ``{split}.manifest.json``), in the record schema
of :mod:`scarce.shards.schemas` that fits: image-folder (``imagefolder``, ``mnist``) or segmentation
(``cityscapes``, ``synthia``). It returns the manifest (or ``{split: manifest}``). ``compression`` is ``None``,
``"gzip"`` or ``"zlib"``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from scarce._errors import DataNotFoundError, ScarceError
from scarce.data.datasets.cityscapes import LAYOUT as CITYSCAPES_LAYOUT
from scarce.data.datasets.cityscapes import SPLITS as CITYSCAPES_SPLITS
from scarce.data.datasets.cityscapes import Cityscapes
from scarce.data.datasets.mnist import MNIST
from scarce.data.datasets.synthia import SYNTHIA
from scarce.shards.images import encode_png
from scarce.shards.schemas import encode_imagefolder
from scarce.shards.tfrecord import COMPRESSIONS
from scarce.shards.writer import write_shards

__all__ = ["CONVERTERS", "IMAGE_EXTENSIONS", "convert_cityscapes", "convert_imagefolder", "convert_mnist",
           "convert_synthia", "main"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _write_splits(splits: Iterable[tuple[str, Iterable[dict[str, Any]]]], out: str | Path, shards: int,
                  compression: str | None) -> dict[str, dict]:
    """``{split: manifest}`` after writing each split's records as ``out/{split}-*.tfrecord``."""
    return {split: write_shards(records, out, prefix=split, num_shards=shards, compression=compression)
            for split, records in splits}


def convert_imagefolder(root: str | None, out: str, shards: int, compression: str | None) -> dict:
    """``root/CLASS/*.jpg`` -> ``image`` (the encoded file bytes) and ``label`` (class index, sorted names).

    Layout::

        root/
            class_a/xxx.jpg
            class_b/yyy.png
            ...

    Writes ``out/data-0000K-of-0000N.tfrecord`` and ``out/data.manifest.json`` (with the class names).
    """
    if root is None or not Path(root).is_dir():
        raise ScarceError(f"imagefolder: --root {root!r} is not a folder; expected root/CLASS/IMAGE files")
    root_path = Path(root)
    classes = sorted(p.name for p in root_path.iterdir() if p.is_dir())
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((root_path / name).rglob("*")) if path.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ScarceError(f"imagefolder: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}/CLASS/; expected "
                          "one sub-folder per class")
    records = (encode_imagefolder(path.read_bytes(), label) for path, label in files)
    manifest = write_shards(records, out, prefix="data", num_shards=shards, compression=compression)
    manifest["classes"] = classes
    (Path(out) / "data.manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def convert_mnist(root: str | None, out: str, shards: int, compression: str | None) -> dict:
    """MNIST (:class:`scarce.data.datasets.MNIST`), each split to ``out/{train,val,test}-*.tfrecord``.

    Records (image-folder schema): ``image`` (PNG, 28x28 grey) and ``label`` (int64).
    """

    def records(ds: MNIST) -> Iterator[dict[str, Any]]:
        for image, label in zip(ds.data.numpy(), ds.targets.tolist()):
            yield encode_imagefolder(encode_png(image), label)

    return _write_splits(((split, records(MNIST(root, split=split))) for split in ("train", "val", "test")),
                         out, shards, compression)


def convert_cityscapes(root: str | None, out: str, shards: int, compression: str | None) -> dict:
    """Every Cityscapes split found under ``root/leftImg8bit/`` -> ``out/{split}-*.tfrecord`` (segmentation schema).

    Returns:
        ``{split: manifest}``.
    """
    if root is None:
        raise DataNotFoundError(f"cityscapes: --root is required. Expected layout:\n{CITYSCAPES_LAYOUT}")
    root_path = Path(root).expanduser()
    found = [s for s in CITYSCAPES_SPLITS if (root_path / "leftImg8bit" / s).is_dir()]
    if not found:
        raise DataNotFoundError(f"Cityscapes: no split folder under {str(root_path / 'leftImg8bit')!r}. "
                                f"Expected layout:\n{CITYSCAPES_LAYOUT}")
    return _write_splits(((split, Cityscapes(root_path, split).records()) for split in found), out, shards,
                         compression)


def convert_synthia(root: str | None, out: str, shards: int, compression: str | None,
                    val_fraction: float = 0.1) -> dict:
    """SYNTHIA under ``root`` -> ``out/train-*`` and ``out/val-*`` shards (segmentation schema; see :class:`SYNTHIA`
    for the split).

    Returns:
        ``{split: manifest}``.
    """
    if root is None:
        raise DataNotFoundError("synthia: --root is required (the folder holding the SYNTHIA sequence folders)")
    return _write_splits(((split, SYNTHIA(root, split, val_fraction=val_fraction).records()) for split in
                          ("train", "val")), out, shards, compression)


# name -> converter (see the module docstring for the signature).
CONVERTERS: dict[str, Callable[[str | None, str, int, str | None], dict]] = {
    "imagefolder": convert_imagefolder,
    "mnist": convert_mnist,
    "cityscapes": convert_cityscapes,
    "synthia": convert_synthia,
}


def main(argv: list[str]) -> int:
    """``scarce data convert NAME --root DIR --out DIR [--shards N] [--compression none|gzip|zlib]``."""
    parser = argparse.ArgumentParser(prog="scarce data convert", description="Convert a dataset into TFRecord "
                                     "shards (+ .index and a JSON manifest).")
    parser.add_argument("name", choices=sorted(CONVERTERS), help="dataset format")
    parser.add_argument("--root", help="dataset folder (mnist: optional, the offline copy by default)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--shards", type=int, default=1, help="files per split (default 1)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default="none")
    args = parser.parse_args(argv)
    compression = None if args.compression == "none" else args.compression
    result = CONVERTERS[args.name](args.root, args.out, args.shards, compression)
    print(json.dumps(result, indent=1))
    return 0
