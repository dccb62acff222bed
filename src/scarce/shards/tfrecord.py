"""TFRecord files, byte-compatible with TensorFlow: framing, CRC, compression, index, file lists.

A TFRecord file is a sequence of framed records::

    uint64  length            (little endian)
    uint32  masked_crc32c(length bytes)
    byte    data[length]      (here: a serialized tf.train.Example, see :mod:`scarce.shards.example`)
    uint32  masked_crc32c(data)

optionally wrapped whole in a GZIP or ZLIB stream. Reading detects the compression from the first bytes of
the file (``compression="auto"``); every error names the file and the byte offset in the uncompressed
stream, the same offset TensorFlow's ``DataLossError`` gives: the record's start for a damaged length or a
cut-off record, the start of its data for a data CRC mismatch.

An *index* (the ``tfrecord`` package's format: one line ``"offset length"`` per record, the length counting
the framing) allows random access into an uncompressed file; it is written next to the file as
``FILE.index``, or under ``$XDG_CACHE_HOME/scarce/tfrecord-index`` when that folder is read-only.
"""

from __future__ import annotations

import glob as _glob
import gzip
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import crc32c
import numpy as np

from scarce._errors import CorruptRecordError, DataNotFoundError, ScarceError

__all__ = [
    "COMPRESSIONS",
    "SkipReport",
    "masked_crc",
    "frame",
    "normalize_compression",
    "detect_compression",
    "iter_raw_records",
    "read_record_at",
    "create_index",
    "load_index",
    "index_path_for",
    "write_index_file",
    "temp_name",
    "count_records",
    "expand_files",
]

# User-facing names -> what the file holds. "none" and None both mean a plain file.
COMPRESSIONS = ("none", "gzip", "zlib")
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
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


def normalize_compression(compression: str | None, *, allow_auto: bool) -> str | None:
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
    compression = normalize_compression(compression, allow_auto=True)
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



# --------------------------------------------------------------------------------------------- index


def temp_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (complete files only under their name)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def index_path_for(path: str | Path) -> Path:
    """Where the index of ``path`` lives: ``path + ".index"``."""
    return Path(str(path) + ".index")


def _cache_index_path(path: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scarce" / "tfrecord-index"
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return base / f"{key}.index"


def write_index_file(index_path: Path, offsets: Sequence[tuple[int, int]]) -> None:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(index_path)
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


def _fresh_index(path: Path) -> np.ndarray | None:
    """The offsets from ``FILE.index`` or its cached copy, if one is up to date; else ``None``."""
    for candidate in (index_path_for(path), _cache_index_path(path)):
        if candidate.is_file():
            offsets = _read_index_file(candidate)
            if _index_is_fresh(candidate, path, offsets):
                return offsets
    return None


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
            write_index_file(target, offsets)
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
    offsets = _fresh_index(path)
    if offsets is not None:
        return offsets
    if not build:
        raise DataNotFoundError(f"{path}: no up-to-date index; run `scarce data index {path}`")
    return _read_index_file(create_index(path))


def count_records(path: str | Path, compression: str | None = "auto") -> int:
    """Number of records in a file: from a fresh index when there is one, else by reading the framing."""
    path = Path(path)
    offsets = _fresh_index(path)
    if offsets is not None:
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
