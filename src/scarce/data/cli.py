"""``scarce data convert|inspect|dump|index|stats``: TFRecord tools.

Each subcommand names a ``"module:function"`` in :data:`SUBCOMMANDS`, imported only when used, so the file
tools (inspect, dump, index) start without importing torch. The converters live in :mod:`scarce.data.convert`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

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


def inspect_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data inspect", description="Record count, feature schema and "
                                     "CRC check; exit status 1 on a damaged file.")
    parser.add_argument("files", nargs="+", help="files, folders or globs")
    parser.add_argument("--no-verify", action="store_true", help="skip the CRC check")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument("--max-record-bytes", type=int, default=MAX_RECORD_BYTES,
                        help=f"longest record accepted (default {MAX_RECORD_BYTES}); bounds the memory a read holds")
    args = parser.parse_args(argv)
    status, files = 0, []
    for item in args.files:
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


def dump_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data dump", description="One JSON object per record: numbers "
                                     "as lists, bytes as lists of \"b64:<base64>\" strings.")
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=None, help="stop after N records")
    args = parser.parse_args(argv)
    out = sys.stdout
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
