"""``scarce data convert|inspect|dump|index|stats``: TFRecord tools.

Each subcommand names a ``"module:function"`` in :data:`SUBCOMMANDS`, imported only when used. Converters
are registered by name in :data:`CONVERTERS`; each is a function::

    convert(root: str, out: str, shards: int, compression: str | None) -> dict

reading a dataset in its official layout under ``root`` and writing TFRecord shards (with
:func:`scarce.data.tfrecord.write_shards`) under ``out``; it returns the manifest (or a dict of manifests,
one per split), which the command prints as JSON. ``compression`` is ``None``, ``"gzip"`` or ``"zlib"``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from scarce._errors import CorruptRecordError, ScarceError
from scarce.cli import dispatch, load_target
from scarce.data import tfrecord as tfr

__all__ = ["SUBCOMMANDS", "CONVERTERS", "main", "convert_main", "inspect_main", "dump_main", "index_main",
           "inspect_file", "convert_imagefolder", "convert_mnist"]

# name -> ("module:function", help). Each function takes the remaining argv and returns an exit status.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("scarce.data.cli:convert_main", "convert a dataset into TFRecord shards"),
    "inspect": ("scarce.data.cli:inspect_main", "record count, feature schema and CRC check of TFRecord files"),
    "dump": ("scarce.data.cli:dump_main", "print records as JSON lines"),
    "index": ("scarce.data.cli:index_main", "write the .index of uncompressed TFRecord files"),
    # Class statistics of segmentation shards; implemented with the segmentation datasets.
    "stats": ("scarce.data.stats_cli:main", "class / pixel statistics of segmentation shards"),
}

# name -> "module:function" with signature convert(root, out, shards, compression) -> dict (see module doc).
CONVERTERS: dict[str, str] = {
    "imagefolder": "scarce.data.cli:convert_imagefolder",
    "mnist": "scarce.data.cli:convert_mnist",
    "cityscapes": "scarce.data.datasets.cityscapes:convert",
    "synthia": "scarce.data.datasets.synthia:convert",
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def main(argv: list[str]) -> int:
    return dispatch(argv, SUBCOMMANDS, "scarce data")


# --------------------------------------------------------------------------------------------- convert


def convert_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data convert", description="Convert a dataset into TFRecord "
                                     "shards (+ .index and a JSON manifest).")
    parser.add_argument("name", choices=sorted(CONVERTERS), help="dataset format")
    parser.add_argument("--root", help="dataset folder (mnist: optional, the offline copy by default)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--shards", type=int, default=1, help="files per split (default 1)")
    parser.add_argument("--compression", choices=tfr.COMPRESSIONS, default="none")
    args = parser.parse_args(argv)
    compression = None if args.compression == "none" else args.compression
    result = load_target(CONVERTERS[args.name])(args.root, args.out, args.shards, compression)
    print(json.dumps(result, indent=1))
    return 0


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
    records = ({"image": path.read_bytes(), "label": label} for path, label in files)
    manifest = tfr.write_shards(records, out, prefix="data", num_shards=shards, compression=compression)
    manifest["classes"] = classes
    (Path(out) / "data.manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def convert_mnist(root: str | None, out: str, shards: int, compression: str | None) -> dict:
    """MNIST (``scarce.data.datasets.MNIST``), each split to ``out/{train,val,test}-*.tfrecord``.

    Records: ``image`` (PNG, 28x28 grey) and ``label`` (int64).
    """
    import io

    from PIL import Image

    from scarce.data.datasets import MNIST

    def records(ds):
        for image, label in zip(ds.data.numpy(), ds.targets.tolist()):
            buf = io.BytesIO()
            Image.fromarray(image, mode="L").save(buf, format="PNG")
            yield {"image": buf.getvalue(), "label": int(label)}

    return {split: tfr.write_shards(records(MNIST(root, split=split)), out, prefix=split, num_shards=shards,
                                    compression=compression)
            for split in ("train", "val", "test")}


# --------------------------------------------------------------------------------------------- inspect


def inspect_file(path: str, verify: bool = True) -> dict:
    """Count records and gather the schema (kind, min/max number of values per feature) of one file.

    Raises:
        CorruptRecordError: on the first damaged record.
    """
    compression = tfr.detect_compression(path)
    schema: dict[str, dict] = {}
    count = 0
    for offset, _, data in tfr.iter_raw_records(path, compression, verify, with_offsets=True):
        for name, (kind, values) in tfr.decode_example_kinds(data, path, offset).items():
            entry = schema.setdefault(name, {"kinds": set(), "min_len": len(values), "max_len": len(values),
                                             "present": 0})
            if kind is not None:
                entry["kinds"].add(kind)
            entry["min_len"] = min(entry["min_len"], len(values))
            entry["max_len"] = max(entry["max_len"], len(values))
            entry["present"] += 1
        count += 1
    features = {}
    for name, entry in sorted(schema.items()):
        # A feature absent from some records has min length 0 there.
        features[name] = {"kind": "/".join(sorted(entry["kinds"])) or "none",
                          "min_len": entry["min_len"] if entry["present"] == count else 0,
                          "max_len": entry["max_len"]}
    return {"file": path, "compression": compression or "none", "records": count, "features": features}


def inspect_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data inspect", description="Record count, feature schema and "
                                     "CRC check; exit status 1 on a damaged file.")
    parser.add_argument("files", nargs="+", help="files, folders or globs")
    parser.add_argument("--no-verify", action="store_true", help="skip the CRC check")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    args = parser.parse_args(argv)
    status = 0
    for path in tfr.expand_files(args.files):
        try:
            info = inspect_file(path, verify=not args.no_verify)
        except CorruptRecordError as err:
            print(str(err), file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{path}: {info['records']} records, compression {info['compression']}, "
              f"CRC {'not checked' if args.no_verify else 'ok'}")
        for name, feat in info["features"].items():
            print(f"  {name:<20} {feat['kind']:<6} len {feat['min_len']}..{feat['max_len']}")
    return status


# --------------------------------------------------------------------------------------------- dump


def _jsonable(kind: str | None, values: list) -> list:
    if kind == "bytes":
        return ["b64:" + base64.b64encode(v).decode("ascii") for v in values]
    return values


def dump_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data dump", description="One JSON object per record: numbers "
                                     "as lists, bytes as lists of \"b64:<base64>\" strings.")
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=None, help="stop after N records")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        for i, (offset, _, data) in enumerate(tfr.iter_raw_records(args.file, with_offsets=True)):
            if args.limit is not None and i >= args.limit:
                break
            decoded = tfr.decode_example_kinds(data, args.file, offset)
            out.write(json.dumps({name: _jsonable(kind, values) for name, (kind, values) in decoded.items()}) + "\n")
    except CorruptRecordError as err:
        out.flush()
        print(str(err), file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------- index


def index_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data index", description="Write FILE.index (offset and length "
                                     "of each record, the tfrecord package's format) for uncompressed files.")
    parser.add_argument("files", nargs="+", help="files, folders or globs")
    args = parser.parse_args(argv)
    status = 0
    for path in tfr.expand_files(args.files):
        try:
            target = tfr.create_index(path)
        except CorruptRecordError as err:
            print(str(err), file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {sum(1 for _ in open(target))} records -> {target}")
    return status
