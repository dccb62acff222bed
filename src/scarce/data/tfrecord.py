"""TFRecord files, byte-compatible with TensorFlow: ``tf.train.Example`` codec, framing, compression, index, shards.

A TFRecord file is a sequence of framed records::

    uint64  length            (little endian)
    uint32  masked_crc32c(length bytes)
    byte    data[length]      (here: a serialized tf.train.Example)
    uint32  masked_crc32c(data)

optionally wrapped whole in a GZIP or ZLIB stream. Reading detects the compression from the first bytes of
the file (``compression="auto"``); every error names the file and the byte offset in the uncompressed
stream, the same offset TensorFlow's ``DataLossError`` gives: the record's start for a damaged length or a
cut-off record, the start of its data for a data CRC mismatch.

An *index* (the ``tfrecord`` package's format: one line ``"offset length"`` per record, the length counting
the framing) allows random access into an uncompressed file; it is written next to the file as
``FILE.index``, or under ``$XDG_CACHE_HOME/scarce/tfrecord-index`` when that folder is read-only.

A decoded example is a ``dict`` mapping a feature name to a ``list`` of ``bytes``, ``int`` or ``float``
(float32 values, exactly as stored). :func:`decode_example_kinds` also gives each feature's kind
(``"bytes"``, ``"int64"``, ``"float"``, or ``None`` for a feature with no kind set).
"""

from __future__ import annotations

import glob as _glob
import gzip
import hashlib
import importlib.util
import io
import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import crc32c
import numpy as np
from google.protobuf.message import DecodeError

from scarce._errors import CorruptRecordError, DataNotFoundError, FeatureError, ScarceError


def _load_example_pb2():
    """The ``tf.train.Example`` protobuf module shipped by the ``tfrecord`` package.

    Loaded from its file: ``import tfrecord.example_pb2`` would run the package ``__init__``, which imports
    torch (4 s), and ``scarce data inspect`` should start in a blink.
    """
    spec = importlib.util.find_spec("tfrecord")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(folder, "example_pb2.py")
        if os.path.isfile(path):
            module_spec = importlib.util.spec_from_file_location("scarce.data._example_pb2", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
    from tfrecord import example_pb2  # pragma: no cover - unusual installs

    return example_pb2


example_pb2 = _load_example_pb2()

__all__ = [
    "COMPRESSIONS",
    "KINDS",
    "TFRecordWriter",
    "SkipReport",
    "masked_crc",
    "frame",
    "encode_example",
    "decode_example",
    "decode_example_kinds",
    "parse_example",
    "detect_compression",
    "iter_raw_records",
    "read_records",
    "read_record_at",
    "create_index",
    "load_index",
    "index_path_for",
    "count_records",
    "expand_files",
    "write_shards",
    "shard_name",
]

# User-facing names -> what the file holds. "none" and None both mean a plain file.
COMPRESSIONS = ("none", "gzip", "zlib")
KINDS = ("bytes", "int64", "float")
_ONEOF = {"bytes_list": "bytes", "int64_list": "int64", "float_list": "float"}
_KIND_FIELD = {kind: name for name, kind in _ONEOF.items()}
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Bounded reads: a damaged length field must not make the reader allocate petabytes.
_CHUNK = 16 * 1024 * 1024


# --------------------------------------------------------------------------------------------- framing


def masked_crc(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC32C: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One framed record: length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def _normalize_compression(compression: str | None, *, allow_auto: bool) -> str | None:
    value = "none" if compression is None else str(compression).lower()
    valid = COMPRESSIONS + (("auto",) if allow_auto else ())
    if value == "":
        value = "none"
    if value not in valid:
        raise ScarceError(f"unknown compression {compression!r}; valid values are {list(valid)}")
    return None if value == "none" else value


def detect_compression(path: str | Path) -> str | None:
    """Guess a file's compression from its first bytes: ``None`` (plain), ``"gzip"`` or ``"zlib"``.

    A plain file starts with a length whose masked CRC follows it, which settles the question whenever
    the file holds a record; otherwise the GZIP magic ``1f 8b`` or a valid ZLIB header decide.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) == 12:
        length_bytes, (crc,) = head[:8], struct.unpack("<I", head[8:])
        if masked_crc(length_bytes) == crc:
            return None
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None  # empty or damaged: read it as plain so the error names byte 0


class _ZlibReader(io.RawIOBase):
    """A readable stream over a ZLIB-compressed file (Python has ``gzip.open`` but no ``zlib.open``)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj()
        self._pending = b""
        self._pos = 0  # read position in _pending (slicing it each time would copy it over and over)
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._pending) and not self._eof:
            data = self._inflate.unconsumed_tail or self._raw.read(1 << 16)
            if not data:
                self._eof = True
                if not self._inflate.eof:
                    raise EOFError("compressed stream ended before the end-of-stream marker was reached")
                break
            # max_length bounds memory: a small damaged stream cannot inflate into gigabytes at once.
            self._pending, self._pos = self._inflate.decompress(data, 1 << 20), 0
            if self._inflate.eof and not self._inflate.unconsumed_tail:
                self._eof = True
        n = min(len(buffer), len(self._pending) - self._pos)
        buffer[:n] = memoryview(self._pending)[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_stream(path: str | Path, compression: str | None) -> BinaryIO:
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "zlib":
        return io.BufferedReader(_ZlibReader(open(path, "rb")), buffer_size=1 << 16)
    return open(path, "rb", buffering=1 << 16)


def _read_bounded(stream: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes in bounded chunks (stops early at the end of the stream)."""
    if n <= _CHUNK:
        return stream.read(n)
    parts, left = [], n
    while left:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _skip_bytes(stream: BinaryIO, n: int, path: str, offset: int) -> None:
    if stream.seekable() and not isinstance(stream, gzip.GzipFile):
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        if here + n > end:
            raise CorruptRecordError(path, offset, "truncated record")
        stream.seek(here + n)
        return
    while n:
        part = stream.read(min(n, _CHUNK))
        if not part:
            raise CorruptRecordError(path, offset, "truncated record")
        n -= len(part)


@dataclass
class SkipReport:
    """What ``skip_corrupt=True`` skipped: one ``(path, offset, what)`` per damaged spot."""

    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, err: CorruptRecordError) -> None:
        self.skipped.append((err.path, err.offset, err.what))

    def __len__(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        if not self.skipped:
            return "no corrupted records skipped"
        lines = [f"skipped {len(self.skipped)} corrupted spot(s):"]
        lines += [f"  {p}: {what} at byte {off}" for p, off, what in self.skipped]
        return "\n".join(lines)


def iter_raw_records(
    path: str | Path,
    compression: str | None = "auto",
    verify: bool = True,
    *,
    skip_corrupt: bool = False,
    report: SkipReport | None = None,
    with_offsets: bool = False,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[bytes] | Iterator[tuple[int, int, bytes]]:
    """Yield the data of every record of one file (``(offset, framed_length, data)`` with ``with_offsets``).

    Args:
        path: The file.
        compression: ``"auto"`` (detect), ``None``/``"none"``, ``"gzip"`` or ``"zlib"``.
        verify: Check both CRCs of every record.
        skip_corrupt: Skip a record whose data CRC fails instead of raising; a damaged length or a cut-off
            tail ends the file (nothing after it can be framed reliably). Each skip goes to ``report``.
        report: Where skips are counted (see :class:`SkipReport`).
        with_offsets: Also yield each record's byte offset and framed length (uncompressed stream).
        start: Skip the first ``start`` records: their data is seeked over (plain files) or read and dropped
            (compressed), and not CRC-checked (the reader that owns them checks them).
        stop: Stop before record ``stop``.

    Raises:
        CorruptRecordError: A CRC mismatch, a truncated record or a damaged compressed stream.
        DataNotFoundError: The file does not exist.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{path}: no such TFRecord file")
    compression = _normalize_compression(compression, allow_auto=True)
    if compression == "auto":
        compression = detect_compression(path)
    stream = _open_stream(path, compression)
    offset, number = 0, 0
    try:
        while stop is None or number < stop:
            try:
                header = stream.read(_HEADER.size)
                if not header:
                    return
                if len(header) < _HEADER.size:
                    raise CorruptRecordError(path, offset, "truncated record")
                length, length_crc = _HEADER.unpack(header)
                if verify and masked_crc(header[:8]) != length_crc:
                    raise CorruptRecordError(path, offset, "corrupted record")
                if number < start:
                    _skip_bytes(stream, length + _FOOTER.size, path, offset)
                    offset += _HEADER.size + length + _FOOTER.size
                    number += 1
                    continue
                data = _read_bounded(stream, length)
                footer = stream.read(_FOOTER.size)
                if len(data) < length or len(footer) < _FOOTER.size:
                    raise CorruptRecordError(path, offset, "truncated record")
            except EOFError as err:  # a compressed stream cut off
                raise CorruptRecordError(path, offset, "truncated record") from err
            except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
                what = f"corrupted record ({compression or 'plain'} stream: {err})"
                raise CorruptRecordError(path, offset, what) from err
            except CorruptRecordError as err:
                if skip_corrupt and report is not None:
                    report.add(err)
                if skip_corrupt:
                    return
                raise
            framed = _HEADER.size + length + _FOOTER.size
            if verify and masked_crc(data) != _FOOTER.unpack(footer)[0]:
                # TensorFlow blames the start of the data for a data CRC mismatch; so do we.
                err = CorruptRecordError(path, offset + _HEADER.size, "corrupted record")
                if not skip_corrupt:
                    raise err
                if report is not None:
                    report.add(err)
                offset += framed
                number += 1
                continue
            yield (offset, framed, data) if with_offsets else data
            offset += framed
            number += 1
    finally:
        stream.close()


def read_record_at(f: BinaryIO, path: str, offset: int, framed_length: int, verify: bool = True) -> bytes:
    """Read one record of an uncompressed file at a known ``offset`` (from the index) and check its CRCs."""
    f.seek(offset)
    buf = f.read(framed_length)
    if len(buf) < framed_length or framed_length < _HEADER.size + _FOOTER.size:
        raise CorruptRecordError(path, offset, "truncated record (stale index? rebuild with `scarce data index`)")
    length, length_crc = _HEADER.unpack_from(buf)
    if length != framed_length - _HEADER.size - _FOOTER.size:
        raise CorruptRecordError(path, offset, "record length disagrees with the index "
                                 "(stale index? rebuild with `scarce data index`)")
    data = buf[_HEADER.size:_HEADER.size + length]
    if verify:
        if masked_crc(buf[:8]) != length_crc:
            raise CorruptRecordError(path, offset, "corrupted record")
        if masked_crc(data) != _FOOTER.unpack_from(buf, _HEADER.size + length)[0]:
            raise CorruptRecordError(path, offset + _HEADER.size, "corrupted record")
    return data


# --------------------------------------------------------------------------------------------- Example codec


def _is_bytes_like(v: Any) -> bool:
    return isinstance(v, (bytes, bytearray, memoryview, str, np.bytes_, np.str_))


def _to_bytes(v: Any) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _kind_of_scalar(v: Any) -> str | None:
    if _is_bytes_like(v):
        return "bytes"
    if isinstance(v, (bool, int, np.integer, np.bool_)):
        return "int64"
    if isinstance(v, (float, np.floating)):
        return "float"
    return None


def _values_and_kind(name: str, value: Any, known_kind: str | None) -> tuple[str, list]:
    """Turn one record-dict value into (kind, list of python values)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return "int64", value.astype(np.int64).reshape(-1).tolist()
        if value.dtype.kind == "f":
            return "float", value.astype(np.float32).reshape(-1).tolist()
        if value.dtype.kind in "SUO":
            value = value.reshape(-1).tolist()
            if not value:
                return "bytes", []
        else:
            raise FeatureError(f"feature {name!r}: numpy dtype {value.dtype} cannot be stored; expected an "
                               "integer, bool, floating, bytes or str array")
    scalar_kind = _kind_of_scalar(value)
    if scalar_kind is not None:
        value = [value]
    elif not isinstance(value, (list, tuple)):
        raise FeatureError(f"feature {name!r}: cannot store a {type(value).__name__}; expected bytes, str, int, "
                           "float, a list/tuple of one of those, or a numpy array")
    kinds = {_kind_of_scalar(v) for v in value}
    if None in kinds:
        bad = next(v for v in value if _kind_of_scalar(v) is None)
        raise FeatureError(f"feature {name!r}: list holds a {type(bad).__name__}; expected bytes, str, int or float")
    if kinds == {"int64", "float"}:
        kinds = {"float"}  # [1, 2.5] is a float list, as numpy would read it
    if len(kinds) > 1:
        raise FeatureError(f"feature {name!r}: list mixes kinds {sorted(kinds)}; a feature holds one kind")
    if not kinds:
        if known_kind is None:
            raise FeatureError(f"feature {name!r}: an empty list has no kind; pass a typed numpy array "
                               "(np.array([], dtype=np.int64), np.float32 or object for bytes)")
        return known_kind, []
    kind = kinds.pop()
    if kind == "bytes":
        return kind, [_to_bytes(v) for v in value]
    if kind == "int64":
        ints = [int(v) for v in value]
        for v in ints:
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise FeatureError(f"feature {name!r}: {v} does not fit in int64")
        return kind, ints
    return kind, [float(v) for v in value]


def encode_example(record: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> bytes:
    """Serialize a record dict into a ``tf.train.Example``.

    Values: ``bytes``/``str`` -> bytes_list (str as UTF-8); ``int``/``bool`` -> int64_list; ``float`` ->
    float_list (stored as float32); lists/tuples of one of those; numpy arrays (or torch tensors) by dtype
    (integer/bool -> int64, floating -> float, bytes/str -> bytes), flattened. ``kinds`` gives the kind of
    features whose value may be an empty list.

    Raises:
        FeatureError: A value that cannot be stored, naming the feature and what is accepted.
    """
    example = example_pb2.Example()
    feature_map = example.features.feature
    for name, value in record.items():
        kind, values = _values_and_kind(str(name), value, (kinds or {}).get(name))
        getattr(feature_map[str(name)], _KIND_FIELD[kind]).value.extend(values)
    # Sorted map keys: the same record always gives the same bytes.
    return example.SerializeToString(deterministic=True)


def _parse_proto(data: bytes, path: str | None = None, offset: int | None = None) -> example_pb2.Example:
    example = example_pb2.Example()
    try:
        example.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise CorruptRecordError(path or "<bytes>", offset or 0, f"record is not a tf.train.Example ({err})") from err
    return example


def decode_example_kinds(data: bytes, path: str | None = None, offset: int | None = None) -> dict[str, tuple]:
    """Decode a serialized ``tf.train.Example`` into ``{name: (kind, values)}`` (kind ``None``: no kind set)."""
    out = {}
    for name, feature in _parse_proto(data, path, offset).features.feature.items():
        which = feature.WhichOneof("kind")
        if which is None:
            out[name] = (None, [])
        else:
            out[name] = (_ONEOF[which], list(getattr(feature, which).value))
    return out


def decode_example(data: bytes, path: str | None = None, offset: int | None = None) -> dict[str, list]:
    """Decode a serialized ``tf.train.Example`` into ``{name: list of bytes | int | float}``."""
    out = {}
    for name, feature in _parse_proto(data, path, offset).features.feature.items():
        which = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, which).value) if which is not None else []
    return out


def parse_example(data: bytes, kinds: Mapping[str, str], *, where: str = "") -> dict[str, list]:
    """Decode only the features named in ``kinds`` (name -> ``"bytes"|"int64"|"float"``), checking each kind.

    Raises:
        FeatureError: A missing key or a feature of another kind, naming the key, the expected and the
            found kind (and the existing keys).
    """
    features = _parse_proto(data, where or None).features.feature
    out = {}
    prefix = f"{where}: " if where else ""
    for name, kind in kinds.items():
        if name not in features:
            raise FeatureError(f"{prefix}feature {name!r} ({kind}) is missing; the example has "
                               f"{sorted(features.keys())}")
        feature = features[name]
        which = feature.WhichOneof("kind")
        if which is None:
            out[name] = []
            continue
        if _ONEOF[which] != kind:
            raise FeatureError(f"{prefix}feature {name!r}: expected kind {kind}, found {_ONEOF[which]}")
        out[name] = list(getattr(feature, which).value)
    return out


def read_records(
    path: str | Path,
    compression: str | None = "auto",
    verify: bool = True,
    *,
    skip_corrupt: bool = False,
    report: SkipReport | None = None,
) -> Iterator[dict[str, list]]:
    """Yield every record of one file as a decoded example dict (see :func:`decode_example`)."""
    for offset, _, data in iter_raw_records(path, compression, verify, skip_corrupt=skip_corrupt, report=report,
                                            with_offsets=True):
        try:
            yield decode_example(data, str(path), offset)
        except CorruptRecordError as err:
            if not skip_corrupt:
                raise
            if report is not None:
                report.add(err)


# --------------------------------------------------------------------------------------------- writer


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


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
        self.compression = _normalize_compression(compression, allow_auto=False)
        if index and self.compression is not None:
            raise ScarceError(f"{self.path}: an index needs an uncompressed file (compression={compression!r})")
        self.index = index
        self.kinds: dict[str, str] = {}
        self.lengths: dict[str, list[int]] = {}
        self.count = 0
        self._offsets: list[tuple[int, int]] = []
        self._pos = 0
        self._tmp = _temp_name(self.path)
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
            kind, values = _values_and_kind(str(name), value, self.kinds.get(name))
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
            _write_index_file(index_path_for(self.path), self._offsets)
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


# --------------------------------------------------------------------------------------------- index


def index_path_for(path: str | Path) -> Path:
    """Where the index of ``path`` lives: ``path + ".index"``."""
    return Path(str(path) + ".index")


def _cache_index_path(path: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scarce" / "tfrecord-index"
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return base / f"{key}.index"


def _write_index_file(index_path: Path, offsets: Sequence[tuple[int, int]]) -> None:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(index_path)
    with open(tmp, "w") as f:
        f.write("".join(f"{o} {n}\n" for o, n in offsets))
    os.replace(tmp, index_path)


def _read_index_file(index_path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(index_path, dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise ScarceError(f"{index_path}: not an index file ({err}); rebuild it with `scarce data index`") from err
    return arr.reshape(-1, 2)


def _index_is_fresh(index_path: Path, data_path: Path, offsets: np.ndarray) -> bool:
    if not index_path.is_file() or index_path.stat().st_mtime < data_path.stat().st_mtime - 1e-3:
        return False
    size = data_path.stat().st_size
    end = int(offsets[-1, 0] + offsets[-1, 1]) if len(offsets) else 0
    return end == size


def create_index(path: str | Path, index_path: str | Path | None = None, verify: bool = True) -> Path:
    """Scan an uncompressed file and write its index; returns where it went (next to the file or the cache)."""
    path = Path(path)
    compression = detect_compression(path) if path.is_file() else None
    if compression is not None:
        raise ScarceError(f"{path}: is {compression}-compressed; an index (random access) needs an uncompressed "
                          "file. Read it with StreamingTFRecordDataset, or rewrite it with compression=None")
    offsets = [(o, n) for o, n, _ in iter_raw_records(path, None, verify, with_offsets=True)]
    targets = [Path(index_path)] if index_path is not None else [index_path_for(path), _cache_index_path(path)]
    for target in targets:
        try:
            _write_index_file(target, offsets)
            return target
        except OSError:
            if target is targets[-1]:
                raise
    raise AssertionError("unreachable")


def load_index(path: str | Path, *, build: bool = True) -> np.ndarray:
    """The ``(N, 2)`` int64 array of ``(offset, framed_length)`` of an uncompressed file.

    Uses ``FILE.index`` (or the cached copy) when it is newer than the file and covers it exactly,
    otherwise builds it (with ``build=True``) and caches it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such TFRecord file")
    for candidate in (index_path_for(path), _cache_index_path(path)):
        if candidate.is_file():
            offsets = _read_index_file(candidate)
            if _index_is_fresh(candidate, path, offsets):
                return offsets
    if not build:
        raise DataNotFoundError(f"{path}: no up-to-date index; run `scarce data index {path}`")
    return _read_index_file(create_index(path))


def count_records(path: str | Path, compression: str | None = "auto") -> int:
    """Number of records in a file: from a fresh index when there is one, else by reading the framing."""
    path = Path(path)
    for candidate in (index_path_for(path), _cache_index_path(path)):
        if candidate.is_file():
            offsets = _read_index_file(candidate)
            if _index_is_fresh(candidate, path, offsets):
                return len(offsets)
    # Framing only (no CRC of the data): a damaged record still gets caught when it is read.
    return sum(1 for _ in iter_raw_records(path, compression, verify=False))


def expand_files(files: str | Path | Iterable[str | Path]) -> list[str]:
    """A glob, a folder (all ``*.tfrecord*`` files but indexes), one path or a list of those -> sorted paths."""
    items = [files] if isinstance(files, (str, Path)) else list(files)
    out: list[str] = []
    for item in items:
        item = str(item)
        if os.path.isdir(item):
            found = [p for p in _glob.glob(os.path.join(item, "*.tfrecord*")) if not p.endswith(".index")]
        elif any(ch in item for ch in "*?["):
            found = [p for p in _glob.glob(item) if not p.endswith((".index", ".json"))]
        else:
            found = [item] if os.path.isfile(item) else []
        if not found:
            raise DataNotFoundError(f"no TFRecord files match {item!r} (a file, a folder of *.tfrecord files, "
                                    "or a glob such as 'out/train-*.tfrecord')")
        out.extend(sorted(found))
    return out


# --------------------------------------------------------------------------------------------- shards


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
        records: Record dicts (see :func:`encode_example` for the accepted values).
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
    compression = _normalize_compression(compression, allow_auto=False)
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
    tmp = _temp_name(manifest_path)
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return manifest
