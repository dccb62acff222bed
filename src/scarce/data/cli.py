"""``scarce data convert|inspect|dump|index|stats``: TFRecord tools.

Each subcommand names a ``"module:function"`` in :data:`SUBCOMMANDS`, imported only when used, so the file
tools (inspect, dump, index) start without importing torch. The converters live in :mod:`scarce.data.convert`.

``inspect`` and ``dump`` also read datasets prepared by ``tensorflow_datasets``: give them the version folder
(``data_dir/NAME/[CONFIG/]VERSION``, the one holding ``dataset_info.json``) or the dataset folder
(``data_dir/NAME``: its newest version). ``inspect`` then shows the splits, the shard counts checked against
``dataset_info.json`` and the feature spec; ``dump`` prints the decoded features (:mod:`scarce.shards.tfds`).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

from scarce._errors import CorruptRecordError, DataNotFoundError, ScarceError
from scarce.cli import dispatch
from scarce.shards import storage
from scarce.shards.example import decode_example_kinds
from scarce.shards.tfrecord import (MAX_RECORD_BYTES, create_index, detect_compression, expand_files,
                                    iter_raw_records, load_manifest, unfinished_writes)
from scarce.shards.writer import MANIFEST_SUFFIX, check_manifest, manifest_counts

# Exit status of a command whose reader went away (`scarce data dump FILE | head`): 128 + SIGPIPE, what the
# shell reports for `cat` killed by the signal.
_EXIT_BROKEN_PIPE = 128 + 13

__all__ = ["SUBCOMMANDS", "main", "inspect_main", "dump_main", "index_main", "inspect_file"]

# name -> ("module:function", help). Each function takes the remaining argv and returns an exit status.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("scarce.data.convert:main", "convert a dataset into TFRecord shards"),
    "inspect": ("scarce.data.cli:inspect_main", "record count, feature schema and CRC check of TFRecord files"),
    "dump": ("scarce.data.cli:dump_main", "print records as JSON lines"),
    "index": ("scarce.data.cli:index_main", "write the .index of uncompressed TFRecord files"),
    # Class statistics of segmentation shards; implemented with the segmentation datasets.
    "stats": ("scarce.datamodules.stats_cli:main", "class / pixel statistics of segmentation shards"),
}


def main(argv: list[str]) -> int:
    try:
        return dispatch(argv, SUBCOMMANDS, "scarce data")
    except BrokenPipeError:
        # The reader of our stdout left (`| head`): stop quietly, as `cat` does. stdout now points at
        # /dev/null so that the interpreter's last flush does not print the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _EXIT_BROKEN_PIPE


# --------------------------------------------------------------------------------------------- inspect


def inspect_file(path: str, verify: bool = True, max_record_bytes: int | None = None) -> dict:
    """Count records and gather the schema (kind, min/max number of values per feature) of one file.

    Raises:
        CorruptRecordError: on the first damaged record.
    """
    compression = detect_compression(path)
    schema: dict[str, dict] = {}
    count = 0
    for offset, _, data in iter_raw_records(path, compression, verify, with_offsets=True,
                                            max_record_bytes=max_record_bytes):
        for name, (kind, values) in decode_example_kinds(data, path, offset).items():
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


def _tfds_folder(path: str) -> Path | None:
    """The TFDS version folder ``path`` names (itself, or the newest version of a dataset folder), else ``None``."""
    from scarce.shards.tfds import find_version_dir, is_version_dir

    if storage.is_url(path):  # TFDS folders are read from local disk
        return None
    folder = Path(path)
    if is_version_dir(folder):
        return folder
    if folder.is_dir() and any(is_version_dir(p) for p in folder.iterdir() if p.is_dir()):
        return find_version_dir(folder.parent, folder.name)
    return None


def inspect_tfds(folder: Path, verify: bool = True) -> tuple[dict, list[str]]:
    """Splits (examples, shards, counts checked against ``dataset_info.json``) and features of a TFDS version folder;
    and the problems found (a damaged shard, a count that disagrees)."""
    from scarce.shards.tfds import load_info

    info = load_info(folder)
    problems, splits = [], {}
    for name, split in info.splits.items():
        for path, expected in zip(split.files, split.shard_lengths):
            try:
                found = sum(1 for _ in iter_raw_records(path, None, verify))
            except CorruptRecordError as err:
                problems.append(str(err))
                continue
            if found != expected:
                problems.append(f"{path}: {found} records, but {folder / 'dataset_info.json'} says {expected}")
        splits[name] = {"examples": split.num_examples, "shards": len(split.files), "bytes": split.num_bytes}
    features = {path: feature.describe() for path, feature in info.features.leaves()}
    summary = {"dir": str(folder), "format": "tfds", "name": info.name, "config": info.config,
               "version": info.version, "splits": splits, "supervised_keys": info.supervised_keys,
               "features": features}
    return summary, problems


def _print_tfds(summary: dict, verify: bool) -> None:
    name = summary["name"] + (f"/{summary['config']}" if summary["config"] else "")
    total = sum(s["examples"] for s in summary["splits"].values())
    keys = summary["supervised_keys"]
    print(f"{summary['dir']}: TFDS dataset {name} {summary['version']}, {total} examples"
          + (f", supervised keys ({keys[0]}, {keys[1]})" if keys else ""))
    for split, entry in summary["splits"].items():
        print(f"  split {split:<12} {entry['examples']:>8} examples in {entry['shards']} shard(s), "
              f"CRC {'ok' if verify else 'not checked'}")
    width = max((len(p) for p in summary["features"]), default=0)
    for path, description in summary["features"].items():
        print(f"  {path:<{width}}  {description}")


def inspect_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data inspect", description="Record count, feature schema and "
                                     "CRC check; exit status 1 on a damaged file. A TFDS dataset folder "
                                     "(data_dir/NAME[/VERSION]) shows its splits and feature spec.")
    parser.add_argument("files", nargs="+", help="files, folders or globs")
    parser.add_argument("--no-verify", action="store_true", help="skip the CRC check")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument("--max-record-bytes", type=int, default=MAX_RECORD_BYTES,
                        help=f"longest record accepted (default {MAX_RECORD_BYTES}); bounds the memory a read holds")
    args = parser.parse_args(argv)
    status, files = 0, []
    for item in args.files:
        tfds_folder = _tfds_folder(item)
        if tfds_folder is not None:
            summary, problems = inspect_tfds(tfds_folder, verify=not args.no_verify)
            for line in problems:
                print(line, file=sys.stderr)
            status = 1 if problems else status
            print(json.dumps(summary)) if args.json else _print_tfds(summary, not args.no_verify)
            continue
        if storage.isdir(item):
            problems = check_folder(item, checksums=not args.no_verify)
            for line in problems:
                print(line, file=sys.stderr)
            status = 1 if problems else status
            if unfinished_writes(item) or not any(".tfrecord" in name for name in storage.listing(item)):
                continue  # reported above; nothing to list
            try:
                files += expand_files(item)
            except DataNotFoundError:
                pass  # a listed shard is missing: reported above
            continue
        files += expand_files(item)
    try:
        expected = manifest_counts(files)
    except ScarceError as err:
        print(str(err), file=sys.stderr)
        expected, status = {}, 1
    for path in files:
        try:
            info = inspect_file(path, verify=not args.no_verify, max_record_bytes=args.max_record_bytes)
        except CorruptRecordError as err:
            print(str(err), file=sys.stderr)
            status = 1
            continue
        count, manifest = expected.get(path, (info["records"], None))
        if count != info["records"]:
            print(f"{path}: {info['records']} records, but {manifest} says {count}", file=sys.stderr)
            status = 1
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{path}: {info['records']} records, compression {info['compression']}, "
              f"CRC {'not checked' if args.no_verify else 'ok'}")
        for name, feat in info["features"].items():
            print(f"  {name:<20} {feat['kind']:<6} len {feat['min_len']}..{feat['max_len']}")
    return status


def check_folder(folder: str, checksums: bool = True) -> list[str]:
    """Why a folder is not a complete dataset (``[]``: it is): an unfinished write, no manifest, a manifest
    that does not match its shards (missing, size, sha256), or TFRecord files no manifest lists. ``folder``
    may be a URL."""
    if unfinished_writes(folder):
        return [f"{folder}: incomplete: a write is in progress or its writer died ({unfinished_writes(folder)[0]}); "
                "rerun the writer"]
    names = storage.listing(folder)
    manifests = sorted(n for n in names if n.endswith(MANIFEST_SUFFIX) and not n.startswith("."))
    if not manifests:
        return [f"{folder}: incomplete: no *{MANIFEST_SUFFIX} (its writer did not finish, or the files were not "
                "written by scarce: inspect them by name or glob)"]
    problems, listed = [], set()
    for name in manifests:
        manifest = storage.join(folder, name)
        try:
            problems += check_manifest(manifest, checksums=checksums)
            listed.update(str(s["file"]) for s in load_manifest(manifest)["shards"])
        except ScarceError as err:
            problems.append(str(err))
    for name in sorted(names):
        if ".tfrecord" in name and not name.startswith(".") and not name.endswith(".index") and name not in listed:
            problems.append(f"{storage.join(folder, name)}: listed in no manifest of {folder} (left from another "
                            "dataset?)")
    return problems


# --------------------------------------------------------------------------------------------- dump


def _jsonable(kind: str | None, values: list) -> list:
    if kind == "bytes":
        return ["b64:" + base64.b64encode(v).decode("ascii") for v in values]
    return values


def _tfds_json(value):
    """A decoded TFDS value as JSON: numbers and arrays as (nested) lists, bytes as ``"b64:<base64>"``."""
    if isinstance(value, dict):
        return {k: _tfds_json(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return "b64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list):
        return [_tfds_json(v) for v in value]
    if hasattr(value, "dtype") and value.dtype == object:
        return _tfds_json(value.tolist())
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return value


def dump_tfds(folder: Path, split: str, limit: int | None) -> int:
    """Print the examples of a TFDS split string as JSON lines: the decoded features, images as their stored
    (encoded) bytes."""
    from scarce.shards.example import decode_example
    from scarce.shards.tfds import load_info, parse_split

    info = load_info(folder)
    printed = 0
    for part in parse_split(split, info.splits):
        shard_start = 0
        for path, length in zip(info.splits[part.split].files, info.splits[part.split].shard_lengths):
            lo, hi = max(part.start - shard_start, 0), min(part.stop - shard_start, length)
            shard_start += length
            if lo >= hi:
                continue
            records = iter_raw_records(path, None, with_offsets=True, start=lo, stop=hi)
            for k, (offset, _, data) in enumerate(records):
                if limit is not None and printed >= limit:
                    return 0
                example = info.features.decode(decode_example(data, path, offset),
                                               where=f"{path}: record {lo + k}", decode_images=False)
                sys.stdout.write(json.dumps(_tfds_json(example), ensure_ascii=False) + "\n")
                printed += 1
    return 0


def dump_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data dump", description="One JSON object per record: numbers "
                                     "as lists, bytes as lists of \"b64:<base64>\" strings. A TFDS dataset folder "
                                     "(data_dir/NAME[/VERSION]) prints the decoded features of --split.")
    parser.add_argument("file", help="a TFRecord file, or a TFDS dataset folder")
    parser.add_argument("--limit", type=int, default=None, help="stop after N records")
    parser.add_argument("--split", default="train", help="TFDS folders: the split string (default train; "
                        "e.g. 'test', 'train[:10]', 'train+test')")
    args = parser.parse_args(argv)
    out = sys.stdout
    tfds_folder = _tfds_folder(args.file)
    if tfds_folder is not None:
        try:
            return dump_tfds(tfds_folder, args.split, args.limit)
        except CorruptRecordError as err:
            out.flush()
            print(str(err), file=sys.stderr)
            return 1
    try:
        for i, (offset, _, data) in enumerate(iter_raw_records(args.file, with_offsets=True)):
            if args.limit is not None and i >= args.limit:
                break
            decoded = decode_example_kinds(data, args.file, offset)
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
    for path in expand_files(args.files):
        try:
            target = create_index(path)
        except CorruptRecordError as err:
            print(str(err), file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {sum(1 for _ in open(target))} records -> {target}")
    return status
