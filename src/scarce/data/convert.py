"""Converters: datasets in their official layouts -> TFRecord shards (``scarce data convert NAME``).

Each converter is registered by name in :data:`CONVERTERS` and has one signature::

    convert(root: str | None, out: str, shards: int, compression: str | None, *, overwrite: bool = False,
            skip_bad: bool = False) -> dict

It reads a dataset under ``root`` and writes, in one :class:`scarce.shards.writer.ShardFolder` (crash-safe: the
whole output appears, or none of it; ``overwrite`` replaces a dataset already in ``out``), one set of shards
per split under ``out`` (``{split}-0000K-of-0000N.tfrecord`` + ``{split}.manifest.json``), in the record schema
of :mod:`scarce.shards.schemas` that fits: image-folder (``imagefolder``, ``mnist``) or segmentation
(``cityscapes``, ``synthia``). It returns the manifest (or ``{split: manifest}``). ``compression`` is ``None``,
``"gzip"`` or ``"zlib"``. Each split shows its progress on stderr (:func:`scarce._progress.progress`); the
command ends with one summary line (``--json``: the manifests).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from scarce._errors import DataNotFoundError, FeatureError, ScarceError
from scarce._progress import progress
from scarce.shards.images import check_image, encode_png
from scarce.shards.schemas import encode_imagefolder
from scarce.shards.tfrecord import COMPRESSIONS
from scarce.shards.writer import ShardFolder

__all__ = ["CONVERTERS", "IMAGE_EXTENSIONS", "convert_cityscapes", "convert_imagefolder", "convert_mnist",
           "convert_synthia", "main"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _write_splits(name: str, splits: Iterable[tuple[str, Iterable[tuple[str, dict[str, Any]]], int]],
                  out: str | Path, shards: int, compression: str | None, overwrite: bool, skip_bad: bool,
                  meta: dict | None = None) -> dict[str, dict]:
    """``{split: manifest}`` after writing each split's ``(source, record)`` pairs (``total`` of them) as
    ``out/{split}-*.tfrecord``, all in one commit, with progress on stderr. Every record's ``image`` is decoded
    whole first (see :func:`_checked`); the manifests list what ``skip_bad`` left out under ``skipped``."""
    with ShardFolder(out, overwrite=overwrite) as folder:
        manifests = {}
        for split, pairs, total in splits:
            skipped: list[str] = []
            read = progress(pairs, desc=f"convert {name} {split}", total=total, unit="records")
            manifests[split] = folder.write_shards(_checked(read, skip_bad, skipped), split, num_shards=shards,
                                                   compression=compression, meta={**(meta or {}), "skipped": skipped})
            if skipped:
                print(f"{split}: skipped {len(skipped)} bad image(s) (--skip-bad):\n  " + "\n  ".join(skipped),
                      file=sys.stderr)
    if folder.cleaned:
        print(f"{out}: removed {len(folder.cleaned)} leftover file(s) of an interrupted writer", file=sys.stderr)
    return manifests


def _checked(pairs: Iterable[tuple[str, dict[str, Any]]], skip_bad: bool, skipped: list[str]
             ) -> Iterator[dict[str, Any]]:
    """The records whose ``image`` decodes whole; a bad one raises naming its source, or with ``skip_bad`` is
    counted in ``skipped``. (Converters copy the source files' bytes, so nothing else would look at them
    before training does.)"""
    for source, record in pairs:
        try:
            check_image(record["image"], where=source)
        except FeatureError as err:
            if not skip_bad:
                raise FeatureError(f"{err}; pass --skip-bad to leave such files out, counted") from err
            skipped.append(str(err))
            continue
        yield record


def _named(records: Iterable[dict[str, Any]], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Segmentation records with their source named for errors: ``where`` and the record's name."""
    return ((f"{where}: record {record['name']!r}", record) for record in records)


def convert_imagefolder(root: str | None, out: str, shards: int, compression: str | None, *,
                        overwrite: bool = False, skip_bad: bool = False) -> dict:
    """``root/CLASS/*.jpg`` -> ``image`` (the encoded file bytes) and ``label`` (class index, sorted names).

    Layout::

        root/
            class_a/xxx.jpg
            class_b/yyy.png
            ...

    Writes ``out/data-0000K-of-0000N.tfrecord`` and ``out/data.manifest.json`` (with the class names). Every
    image is decoded whole before it is written (a text file named ``.jpg`` or a cut-off JPEG is an error
    naming the file); with ``skip_bad`` such files are left out, and counted in the manifest's ``skipped``.
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
    pairs = ((str(path), encode_imagefolder(path.read_bytes(), label)) for path, label in files)
    return _write_splits("imagefolder", [("data", pairs, len(files))], out, shards, compression, overwrite, skip_bad,
                         {"classes": classes})["data"]


def convert_mnist(root: str | None, out: str, shards: int, compression: str | None, *, overwrite: bool = False,
                  skip_bad: bool = False) -> dict:
    """MNIST (:class:`scarce.data.datasets.MNIST`), each split to ``out/{train,val,test}-*.tfrecord``.

    Records (image-folder schema): ``image`` (PNG, 28x28 grey) and ``label`` (int64).
    """

    from scarce.data.datasets.mnist import MNIST  # the datasets import torch: only the converter that needs one

    def records(ds: MNIST) -> Iterator[tuple[str, dict[str, Any]]]:
        for image, label in zip(ds.data.numpy(), ds.targets.tolist()):
            yield f"MNIST {ds.split} image", encode_imagefolder(encode_png(image), label)

    def split_records(split: str) -> tuple[str, Iterator[tuple[str, dict[str, Any]]], int]:
        dataset = MNIST(root, split=split)
        return split, records(dataset), len(dataset)

    return _write_splits("mnist", (split_records(split) for split in ("train", "val", "test")), out, shards,
                         compression, overwrite, skip_bad)


def convert_cityscapes(root: str | None, out: str, shards: int, compression: str | None, *,
                       overwrite: bool = False, skip_bad: bool = False) -> dict:
    """Every Cityscapes split found under ``root/leftImg8bit/`` -> ``out/{split}-*.tfrecord`` (segmentation schema).

    Returns:
        ``{split: manifest}``.
    """
    from scarce.data.datasets.cityscapes import LAYOUT as CITYSCAPES_LAYOUT
    from scarce.data.datasets.cityscapes import SPLITS as CITYSCAPES_SPLITS
    from scarce.data.datasets.cityscapes import Cityscapes

    if root is None:
        raise DataNotFoundError(f"cityscapes: --root is required. Expected layout:\n{CITYSCAPES_LAYOUT}")
    root_path = Path(root).expanduser()
    found = [s for s in CITYSCAPES_SPLITS if (root_path / "leftImg8bit" / s).is_dir()]
    if not found:
        raise DataNotFoundError(f"Cityscapes: no split folder under {str(root_path / 'leftImg8bit')!r}. "
                                f"Expected layout:\n{CITYSCAPES_LAYOUT}")
    def split_records(split: str) -> tuple[str, Iterator[tuple[str, dict[str, Any]]], int]:
        dataset = Cityscapes(root_path, split)
        return split, _named(dataset.records(), root), len(dataset)

    return _write_splits("cityscapes", (split_records(split) for split in found), out, shards, compression, overwrite,
                         skip_bad)


def convert_synthia(root: str | None, out: str, shards: int, compression: str | None, *,
                    overwrite: bool = False, skip_bad: bool = False, val_fraction: float = 0.1) -> dict:
    """SYNTHIA under ``root`` -> ``out/train-*`` and ``out/val-*`` shards (segmentation schema; see :class:`SYNTHIA`
    for the split).

    Returns:
        ``{split: manifest}``.
    """
    from scarce.data.datasets.synthia import SYNTHIA

    if root is None:
        raise DataNotFoundError("synthia: --root is required (the folder holding the SYNTHIA sequence folders)")
    def split_records(split: str) -> tuple[str, Iterator[tuple[str, dict[str, Any]]], int]:
        dataset = SYNTHIA(root, split, val_fraction=val_fraction)
        return split, _named(dataset.records(), root), len(dataset)

    return _write_splits("synthia", (split_records(split) for split in ("train", "val")), out, shards, compression,
                         overwrite, skip_bad)


# name -> converter (see the module docstring for the signature).
CONVERTERS: dict[str, Callable[..., dict]] = {
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
    parser.add_argument("--out", required=True, help="output folder, or a URL (s3://bucket/prefix, gs://...; "
                        "credentials from the environment: docs/scaling.md)")
    parser.add_argument("--shards", type=int, default=1, help="files per split (default 1)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default="none")
    parser.add_argument("--overwrite", action="store_true", help="replace the dataset already in --out, whole")
    parser.add_argument("--skip-bad", action="store_true", help="leave out images that do not decode whole, "
                        "counted and listed (default: stop at the first, naming it)")
    parser.add_argument("--json", action="store_true", help="print the manifests (JSON) instead of the summary line")
    args = parser.parse_args(argv)
    if args.shards < 1:
        raise ScarceError(f"--shards must be >= 1, got {args.shards}")
    compression = None if args.compression == "none" else args.compression
    result = CONVERTERS[args.name](args.root, args.out, args.shards, compression, overwrite=args.overwrite,
                                   skip_bad=args.skip_bad)
    print(json.dumps(result, indent=1) if args.json else summary_line(args.name, args.out, result))
    return 0


def summary_line(name: str, out: str, result: dict) -> str:
    """One line for a finished conversion: records and shards per split, bytes written, images skipped."""
    manifests = {"data": result} if "shards" in result else result
    parts = [f"{split} {m['num_records']} records in {len(m['shards'])} shard(s)" for split, m in manifests.items()]
    size = sum(s["size"] for m in manifests.values() for s in m["shards"])
    skipped = sum(len(m.get("skipped", [])) for m in manifests.values())
    return (f"{name} -> {out}: {', '.join(parts)}; {size / 1e6:.1f} MB" + (f"; {skipped} skipped" if skipped else "")
            + f" (manifests: {out}/*.manifest.json)")
