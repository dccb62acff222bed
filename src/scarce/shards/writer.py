"""Writing TFRecord files: :class:`TFRecordWriter`, :func:`write_shards` and the shards' JSON manifest.

``write_shards`` lays a dataset out as::

    out/
        {prefix}-00000-of-0000N.tfrecord   (+ .index when uncompressed)   record i in shard i % N
        ...
        {prefix}.manifest.json             feature schema and the record count of every shard
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scarce._errors import FeatureError, ScarceError
from scarce.shards.example import encode_example, values_and_kind
from scarce.shards.tfrecord import frame, index_path_for, normalize_compression, temp_name, write_index_file

__all__ = ["TFRecordWriter", "manifest_counts", "shard_name", "write_shards"]


class TFRecordWriter:
    """Write framed records to ``path``, plain or compressed; the file appears under its name only when closed.

    Use as a context manager; on an exception inside the ``with`` block the partial file is removed.

    Args:
        path: The output file.
        compression: ``None``/``"none"``, ``"gzip"`` or ``"zlib"``.
        index: Also write ``path + ".index"`` (uncompressed files only).

    Example::

        with TFRecordWriter("out.tfrecord") as w:
            w.write({"image": jpeg_bytes, "label": 3})
    """

    def __init__(self, path: str | Path, compression: str | None = None, *, index: bool = False) -> None:
        self.path = Path(path)
        self.compression = normalize_compression(compression, allow_auto=False)
        if index and self.compression is not None:
            raise ScarceError(f"{self.path}: an index needs an uncompressed file (compression={compression!r})")
        self.index = index
        self.kinds: dict[str, str] = {}
        self.lengths: dict[str, list[int]] = {}
        self.count = 0
        self._offsets: list[tuple[int, int]] = []
        self._pos = 0
        self._tmp = temp_name(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "wb")
        if self.compression == "gzip":
            # No name and no time in the header: the same records give the same bytes.
            self._out = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0)
        else:
            self._out = self._file
        self._zlib = zlib.compressobj() if self.compression == "zlib" else None
        self._closed = False

    def _note_schema(self, record: Mapping[str, Any]) -> None:
        for name, value in record.items():
            kind, values = values_and_kind(str(name), value, self.kinds.get(name))
            previous = self.kinds.setdefault(name, kind)
            if previous != kind:
                raise FeatureError(f"feature {name!r}: kind {kind} in record {self.count}, but {previous} "
                                   "in earlier records of the same file")
            lo_hi = self.lengths.setdefault(name, [len(values), len(values)])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], len(values)), max(lo_hi[1], len(values))

    def write(self, record: Mapping[str, Any] | bytes) -> None:
        """Append one record: a record dict (encoded as a ``tf.train.Example``) or already serialized bytes."""
        if self._closed:
            raise ScarceError(f"{self.path}: write() after close()")
        if isinstance(record, (bytes, bytearray, memoryview)):
            data = bytes(record)
        else:
            self._note_schema(record)
            data = encode_example(record, self.kinds)
        framed = frame(data)
        if self._zlib is not None:
            self._file.write(self._zlib.compress(framed))
        else:
            self._out.write(framed)
        self._offsets.append((self._pos, len(framed)))
        self._pos += len(framed)
        self.count += 1

    def close(self) -> None:
        """Finish the stream, then move the file (and its index) to their final names."""
        if self._closed:
            return
        self._closed = True
        if self._zlib is not None:
            self._file.write(self._zlib.flush())
        if self._out is not self._file:
            self._out.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.index:
            write_index_file(index_path_for(self.path), self._offsets)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    """``prefix-00003-of-00008.tfrecord``."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def write_shards(
    records: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    prefix: str = "data",
    num_shards: int = 1,
    compression: str | None = None,
) -> dict:
    """Write records round-robin into ``num_shards`` files ``{prefix}-0000K-of-0000N.tfrecord``.

    Uncompressed shards get their ``.index``; ``{prefix}.manifest.json`` records the feature schema and
    the count per shard. Each shard is written under a temporary name and renamed when complete, and the
    manifest comes last, so a killed writer leaves no half shard behind.

    Args:
        records: Record dicts (see :func:`scarce.shards.example.encode_example` for the accepted values).
        out_dir: Output folder (created).
        prefix: File name prefix, e.g. ``"train"``.
        num_shards: Number of files; record ``i`` goes to shard ``i % num_shards``.
        compression: ``None``/``"none"``, ``"gzip"`` or ``"zlib"``.

    Returns:
        The manifest: ``{"format", "compression", "num_records", "features": {name: {"kind", "min_len",
        "max_len"}}, "shards": [{"file", "records", "index"}]}``.
    """
    if int(num_shards) < 1:
        raise ScarceError(f"num_shards must be >= 1, got {num_shards}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    compression = normalize_compression(compression, allow_auto=False)
    names = [shard_name(prefix, k, num_shards) for k in range(num_shards)]
    writers = [TFRecordWriter(out_dir / n, compression, index=compression is None) for n in names]
    kinds: dict[str, str] = {}
    try:
        for i, record in enumerate(records):
            writer = writers[i % num_shards]
            writer.kinds.update(kinds)  # an empty list in one shard takes its kind from the others
            writer.write(record)
            for name, kind in writer.kinds.items():
                if kinds.setdefault(name, kind) != kind:
                    raise FeatureError(f"feature {name!r}: kind {kind} in record {i}, but {kinds[name]} before")
    except BaseException:
        for w in writers:
            w.abort()
        raise
    for w in writers:
        w.close()
    features: dict[str, dict] = {}
    for w in writers:
        for name, (lo, hi) in w.lengths.items():
            entry = features.setdefault(name, {"kind": w.kinds[name], "min_len": lo, "max_len": hi})
            entry["min_len"], entry["max_len"] = min(entry["min_len"], lo), max(entry["max_len"], hi)
    manifest = {
        "format": "tfrecord/tf.train.Example",
        "compression": compression or "none",
        "num_records": sum(w.count for w in writers),
        "features": dict(sorted(features.items())),
        "shards": [{"file": n, "records": w.count, "index": index_path_for(n).name if compression is None else None}
                   for n, w in zip(names, writers)],
    }
    manifest_path = out_dir / f"{prefix}.manifest.json"
    tmp = temp_name(manifest_path)
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return manifest


def manifest_counts(files: Sequence[str]) -> dict[str, int]:
    """Record counts from ``*.manifest.json`` files next to the shards (absolute path -> count).

    A manifest is trusted for a shard only while the shard is not newer than it.
    """
    counts: dict[str, int] = {}
    for folder in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        for manifest in Path(folder).glob("*.manifest.json"):
            try:
                shards = json.loads(manifest.read_text()).get("shards", [])
            except (OSError, ValueError):
                continue
            for shard in shards:
                path = os.path.join(folder, shard.get("file", ""))
                if os.path.isfile(path) and os.path.getmtime(path) <= manifest.stat().st_mtime + 1e-3:
                    counts[path] = int(shard["records"])
    return counts
