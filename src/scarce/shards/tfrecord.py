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
``FILE.index``, or under ``$XDG_CACHE_HOME/scarce/tfrecord-index`` when that folder is read-only (and, for a
file named by URL, always there: readers never write into a dataset's storage).

Every path here may also be an fsspec URL (``s3://``, ``gs://``, ``https://``, ``file://``): see
:mod:`scarce.shards.storage`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import crc32c
import numpy as np

from scarce._errors import CorruptRecordError, DataNotFoundError, ScarceError
from scarce.shards import storage

__all__ = [
    "COMPRESSIONS",
    "MAX_RECORD_BYTES",
    "SkipReport",
    "SkippedRecordsWarning",
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
    "TEMP_PATTERN",
    "JOURNAL_SUFFIX",
    "unfinished_writes",
    "count_records",
    "expand_files",
    "MANIFEST_SUFFIX",
    "load_manifest",
    "find_shards",
]

# User-facing names -> what the file holds. "none" and None both mean a plain file.
COMPRESSIONS = ("none", "gzip", "zlib")
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
# Bounded reads: a damaged length field must not make the reader allocate petabytes.
_CHUNK = 16 * 1024 * 1024
# The longest record a reader accepts unless told otherwise (``max_record_bytes=``): what one record read may
# hold in memory. TensorFlow has no such bound; scarce's largest records (a 2048x1024 PNG pair) are ~6 MB.
MAX_RECORD_BYTES = 256 * 1024 * 1024
# Compressed reads: bytes read from the file per step, and the most zlib may inflate per step.
_READ_STEP = 1 << 16
_INFLATE_STEP = 1 << 20


# --------------------------------------------------------------------------------------------- framing


def masked_crc(data: bytes | bytearray | memoryview | Sequence[bytes]) -> int:
    """TFRecord's masked CRC32C: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32.

    ``data`` may also be a list of consecutive pieces (a long record read in chunks), never joined here.
    """
    if isinstance(data, list):
        crc = 0
        for piece in data:
            crc = crc32c.crc32c(piece, crc)
    else:
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
    with storage.open_input(path, read_ahead=None) as f:
        return _compression_of(f.read(12))


def _compression_of(head: bytes) -> str | None:
    """:func:`detect_compression` of a file's first 12 bytes."""
    if len(head) == 12:
        length_bytes, (crc,) = head[:8], struct.unpack("<I", head[8:])
        if masked_crc(length_bytes) == crc:
            return None
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None  # empty or damaged: read it as plain so the error names byte 0


class _StreamEnd(Exception):
    """Raised by :class:`_InflateReader` for damage it finds past the last record: ``(file offset, what)``."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(what)
        self.offset, self.what = offset, what


class _InflateReader:
    """``read(n)`` over a GZIP or ZLIB file, holding at most :data:`_INFLATE_STEP` decompressed bytes at a time.

    Python's ``gzip`` module stops silently at trailing garbage that is not a member and has no ZLIB stream
    reader at all, so both go through ``zlib.decompressobj`` here. After the end of the stream, the rest of the
    file must be empty, or (GZIP) another whole member; anything else raises :class:`_StreamEnd` with its offset
    in the compressed file, once every decompressed byte before it has been read.
    """

    def __init__(self, raw, compression: str) -> None:
        self._raw = raw  # the compressed file, local or remote (closed with this reader)
        self._gzip = compression == "gzip"
        self._wbits = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(self._wbits)
        self._consumed = 0  # compressed bytes fed to zlib so far
        self._pending = b""
        self._pos = 0  # read position in _pending (slicing it each time would copy it over and over)
        self._done = False
        self._error: BaseException | None = None
        self._unconsumed = b""  # the start of the next GZIP member, read while checking for one

    def seekable(self) -> bool:
        return False

    def _feed(self, data: bytes) -> None:
        # max_length bounds memory: a small stream cannot inflate into gigabytes at once.
        self._pending, self._pos = self._inflate.decompress(data, _INFLATE_STEP), 0
        if self._inflate.eof:
            self._member_end()

    def _member_end(self) -> None:
        rest = self._inflate.unused_data
        end = self._consumed - len(rest)  # file offset just past this stream / member
        while len(rest) < 2:
            more = self._raw.read(_READ_STEP)
            if not more:
                break
            self._consumed += len(more)
            rest += more
        if not rest:
            self._done = True
        elif self._gzip and rest[:2] == b"\x1f\x8b":
            self._inflate = zlib.decompressobj(self._wbits)  # another member (RFC 1952: `cat a.gz b.gz` is valid)
            self._unconsumed = rest
        else:
            name = "GZIP member" if self._gzip else "ZLIB stream"
            self._error = _StreamEnd(end, f"trailing data after the end of the {name} (offset in the compressed "
                                          "file)")
            self._done = True

    def _fill(self) -> None:
        while self._pos >= len(self._pending) and not self._done:
            data, self._unconsumed = self._inflate.unconsumed_tail or self._unconsumed, b""
            if not data:
                data = self._raw.read(_READ_STEP)
                self._consumed += len(data)
            if not data:
                self._done = True
                self._error = EOFError("compressed stream ended before the end-of-stream marker was reached")
                return
            self._feed(data)

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            self._fill()
            if self._pos >= len(self._pending):
                if self._error is not None and not parts:
                    raise self._error
                break
            part = self._pending[self._pos:self._pos + n]
            self._pos += len(part)
            n -= len(part)
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._raw.close()


def _read_bounded(stream, n: int) -> bytes | list[bytes]:
    """Read up to ``n`` bytes, beyond :data:`_CHUNK` as a list of chunks (stops early at the end of the stream).

    Long data is not joined here: a forged length's data is CRC-checked piecewise and dropped without the copy
    a join makes, so a damaged record never costs more than its declared length.
    """
    if n <= _CHUNK:
        return stream.read(n)
    parts, left = [], n
    while left:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return parts


def _skip_bytes(stream, n: int) -> bool:
    """Move ``n`` bytes ahead (a plain file: the caller checked the size); False when the stream ends first."""
    if stream.seekable():
        stream.seek(n, os.SEEK_CUR)
        return True
    while n:
        part = stream.read(min(n, _CHUNK))
        if not part:
            return False
        n -= len(part)
    return True


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

    def warn_since(self, before: int) -> None:
        """Report the spots added since ``len(self) == before`` as one warning (the end of a read)."""
        if len(self.skipped) > before:
            warnings.warn(SkipReport(self.skipped[before:]).summary(), SkippedRecordsWarning, stacklevel=3)


class SkippedRecordsWarning(UserWarning):
    """``skip_corrupt=True`` skipped damaged records; the message lists each file and offset."""


def _read_frame(stream, path: str, offset: int, verify: bool, keep: bool, max_record_bytes: int,
                size: int | None):
    """One record at ``offset``: ``(length, data, footer)`` (data ``None`` unless ``keep``; beyond
    :data:`_CHUNK` a list of chunks),
    or ``None`` at the end. ``size``: a plain file's size (``offset`` is then the file position), else ``None``.

    Raises:
        CorruptRecordError: A damaged length, a record cut off or longer than ``max_record_bytes``, a damaged
            compressed stream, trailing data after it.
    """
    try:
        header = stream.read(_HEADER.size)
        if not header:
            return None
        if len(header) < _HEADER.size:
            raise CorruptRecordError(path, offset, "truncated record")
        length, length_crc = _HEADER.unpack(header)
        if verify and masked_crc(header[:8]) != length_crc:
            raise CorruptRecordError(path, offset, "corrupted record")
        if size is not None and offset + _HEADER.size + length + _FOOTER.size > size:
            raise CorruptRecordError(path, offset, "truncated record")  # TensorFlow's words for a plain file
        if length > max_record_bytes:
            # A forged length (a valid CRC is 2^-32 luck or malice) must not make us inflate gigabytes.
            raise CorruptRecordError(path, offset, f"record length {length} exceeds max_record_bytes="
                                     f"{max_record_bytes} (a damaged file, or pass a larger max_record_bytes)")
        if not keep:
            if not _skip_bytes(stream, length + _FOOTER.size):
                raise CorruptRecordError(path, offset, "truncated record")
            return length, None, None
        data = _read_bounded(stream, length)
        footer = stream.read(_FOOTER.size)
        if (len(data) if isinstance(data, bytes) else sum(map(len, data))) < length or len(footer) < _FOOTER.size:
            raise CorruptRecordError(path, offset, "truncated record")
        return length, data, footer
    except EOFError as err:  # a compressed stream cut off
        raise CorruptRecordError(path, offset, "truncated record") from err
    except _StreamEnd as err:
        raise CorruptRecordError(path, err.offset, err.what) from err
    except (OSError, zlib.error) as err:
        what = f"corrupted record ({'plain' if stream.seekable() else 'compressed'} stream: {err})"
        raise CorruptRecordError(path, offset, what) from err


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
    exact_count: str | None = None,
    max_record_bytes: int | None = None,
    read_ahead: int = storage.READ_AHEAD_BYTES,
) -> Iterator[bytes] | Iterator[tuple[int, int, bytes]]:
    """Yield the data of every record of one file (``(offset, framed_length, data)`` with ``with_offsets``).

    Args:
        path: The file.
        compression: ``"auto"`` (detect), ``None``/``"none"``, ``"gzip"`` or ``"zlib"``.
        verify: Check both CRCs of every record.
        skip_corrupt: Skip a record whose data CRC fails instead of raising; a damaged length, a cut-off tail
            or a damaged compressed stream ends the file (nothing after it can be framed reliably). Each skip
            goes to ``report``, or, without one, into a :class:`SkippedRecordsWarning` at the end.
        report: Where skips are counted (see :class:`SkipReport`).
        with_offsets: Also yield each record's byte offset and framed length (uncompressed stream).
        start: Skip the first ``start`` records: their data is seeked over (plain files) or read and dropped
            (compressed), and not CRC-checked (the reader that owns them checks them).
        stop: Stop before record ``stop``.
        exact_count: With ``stop``: the file must hold exactly ``stop`` records; this names where that count
            came from (e.g. the manifest) in the error when it does not.
        max_record_bytes: The longest record accepted (default :data:`MAX_RECORD_BYTES`); what a read holds
            in memory is bounded by it.
        read_ahead: A file named by URL: bytes per request, the next block fetched in the background
            (default :data:`scarce.shards.storage.READ_AHEAD_BYTES`). Local files ignore it.

    Raises:
        CorruptRecordError: A CRC mismatch, a truncated or overlong record, a damaged compressed stream or
            data after its end.
        DataNotFoundError: The file (or its bucket) does not exist.
        ScarceError: The file does not hold the ``exact_count`` records; access denied or another error of
            the storage (naming the URL).
    """
    path = str(path)
    remote = storage.is_url(path)
    if not remote and not os.path.isfile(storage.local_path(path)):
        raise DataNotFoundError(f"{path}: no such TFRecord file")
    compression = normalize_compression(compression, allow_auto=True)
    limit = MAX_RECORD_BYTES if max_record_bytes is None else int(max_record_bytes)
    own_report = report is None and skip_corrupt
    report = SkipReport() if report is None else report
    before = len(report)
    raw = storage.open_input(path, read_ahead=read_ahead)
    stream = raw
    try:
        if compression == "auto":  # from the stream's first bytes: no second open (a second request, remotely)
            compression = _compression_of(raw.read(12))
            raw.seek(0)
        if compression is not None:
            stream = _InflateReader(raw, compression)
        size = None if compression is not None else raw.size if remote else os.fstat(raw.fileno()).st_size
    except BaseException:
        raw.close()
        raise
    offset, number = 0, 0
    try:
        while stop is None or number < stop:
            try:
                frame_ = _read_frame(stream, path, offset, verify, number >= start, limit, size)
            except CorruptRecordError as err:
                if not skip_corrupt:
                    raise
                report.add(err)
                return
            if frame_ is None:
                if exact_count is not None and stop is not None and number < stop:
                    raise ScarceError(f"{path}: the file ends after {number} records, but {exact_count} "
                                      f"says {stop}; the dataset changed after it was written: rewrite it")
                return
            length, data, footer = frame_
            framed = _HEADER.size + length + _FOOTER.size
            if data is not None:
                if verify and masked_crc(data) != _FOOTER.unpack(footer)[0]:
                    # TensorFlow blames the start of the data for a data CRC mismatch; so do we.
                    err = CorruptRecordError(path, offset + _HEADER.size, "corrupted record")
                    if not skip_corrupt:
                        raise err
                    report.add(err)
                else:
                    data = data if isinstance(data, bytes) else b"".join(data)
                    yield (offset, framed, data) if with_offsets else data
            offset += framed
            number += 1
        if exact_count is not None:
            try:
                more = _read_frame(stream, path, offset, False, False, limit, size)
            except CorruptRecordError as err:
                if skip_corrupt:
                    return  # a damaged tail past the counted records: the count pass reported it
                raise err
            if more is not None:
                raise ScarceError(f"{path}: the file holds more than the {stop} records {exact_count} says; "
                                  "the dataset changed after it was written: rewrite it")
    finally:
        stream.close()
        if own_report:
            report.warn_since(before)


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


# ".NAME.tmp-PID": the PID tells a live writer's temporary file from a dead one's.
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
# The journal of a commit in progress (scarce.shards.writer.ShardFolder) is the temporary file of "SCOPE.commit".
JOURNAL_SUFFIX = ".commit"


def unfinished_writes(folder: str | Path) -> list[str]:
    """Journals of commits in progress, or of writers that died inside one: the folder's datasets are unsettled."""
    return sorted(name for name in storage.listing(folder)
                  if name.startswith(".") and JOURNAL_SUFFIX + ".tmp-" in name and TEMP_PATTERN.match(name))


def index_path_for(path: str | Path) -> Path | str:
    """Where the index of ``path`` lives: ``path + ".index"`` (a ``Path``; for a URL, the URL string)."""
    if storage.is_url(path):
        return str(path) + ".index"
    return Path(storage.local_path(path) + ".index")


def _cache_index_path(path: Path | str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scarce" / "tfrecord-index"
    name = path if isinstance(path, str) else str(path.resolve())  # a URL names itself
    key = hashlib.sha256(name.encode()).hexdigest()[:24]
    return base / f"{key}.index"


def write_index_file(index_path: Path, offsets: Sequence[tuple[int, int]]) -> None:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(index_path)
    with open(tmp, "w") as f:
        f.write("".join(f"{o} {n}\n" for o, n in offsets))
    os.replace(tmp, index_path)


def _read_index_file(index_path: Path | str, text: bytes | None = None) -> np.ndarray:
    if (len(text) if text is not None else Path(index_path).stat().st_size) == 0:  # an empty shard's index
        return np.zeros((0, 2), np.int64)  # (np.loadtxt would warn "no data")
    try:
        arr = np.loadtxt(index_path if text is None else io.BytesIO(text), dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise ScarceError(f"{index_path}: not an index file ({err}); rebuild it with `scarce data index`") from err
    return arr.reshape(-1, 2)


def _covers(offsets: np.ndarray, size: int | None) -> bool:
    end = int(offsets[-1, 0] + offsets[-1, 1]) if len(offsets) else 0
    return end == size


def _index_is_fresh(index_path: Path, data_path: Path, offsets: np.ndarray) -> bool:
    if not index_path.is_file() or index_path.stat().st_mtime < data_path.stat().st_mtime - 1e-3:
        return False
    return _covers(offsets, data_path.stat().st_size)


def _fresh_remote_index(url: str, size: int | None = None) -> np.ndarray | None:
    """A URL's index (``URL.index`` next to it, else the local cache) when it covers the file exactly.

    Object stores keep no modification times a reader could compare, so coverage decides; a stale index of the
    same size is still caught, by the length and CRC checks of every record read through it.
    """
    size = storage.file_sizes([url])[url] if size is None else size
    if size is None:
        raise DataNotFoundError(f"{url}: no such TFRecord file or object")
    try:
        offsets = _read_index_file(str(index_path_for(url)), storage.read_bytes(index_path_for(url)))
        if _covers(offsets, size):
            return offsets
    except DataNotFoundError:
        pass
    cached = _cache_index_path(url)
    if cached.is_file():
        offsets = _read_index_file(cached)
        if _covers(offsets, size):
            return offsets
    return None


def _fresh_index(path: Path | str) -> np.ndarray | None:
    """The offsets from ``FILE.index`` or its cached copy, if one is up to date; else ``None``."""
    if storage.is_url(path):
        return _fresh_remote_index(str(path))
    path = Path(storage.local_path(path))
    for candidate in (index_path_for(path), _cache_index_path(path)):
        if candidate.is_file():
            offsets = _read_index_file(candidate)
            if _index_is_fresh(candidate, path, offsets):
                return offsets
    return None


def create_index(path: str | Path, index_path: str | Path | None = None, verify: bool = True) -> Path | str:
    """Scan an uncompressed file and write its index; returns where it went: next to the file or, when that
    folder is read-only or the file is named by URL, the local cache (``index_path``: there, a path or URL)."""
    remote = storage.is_url(path)
    path = str(path) if remote else Path(storage.local_path(path))
    compression = detect_compression(path) if remote or path.is_file() else None
    if compression is not None:
        raise ScarceError(f"{path}: is {compression}-compressed; an index (random access) needs an uncompressed "
                          "file. Read it with StreamingTFRecordDataset, or rewrite it with compression=None")
    offsets = [(o, n) for o, n, _ in iter_raw_records(path, None, verify, with_offsets=True)]
    if index_path is not None and storage.is_url(index_path):
        storage.write_bytes(index_path, "".join(f"{o} {n}\n" for o, n in offsets).encode())
        return str(index_path)
    if index_path is not None:
        targets = [Path(storage.local_path(index_path))]
    else:
        targets = [_cache_index_path(path)] if remote else [index_path_for(path), _cache_index_path(path)]
    for target in targets:
        try:
            write_index_file(target, offsets)
            return target
        except OSError:
            if target is targets[-1]:
                raise
    raise AssertionError("unreachable")


def load_index(path: str | Path, *, build: bool = True, size: int | None = None) -> np.ndarray:
    """The ``(N, 2)`` int64 array of ``(offset, framed_length)`` of an uncompressed file.

    Uses ``FILE.index`` (or the cached copy) when it is newer than the file and covers it exactly (a URL's:
    when it covers it exactly; ``size``: the URL's size, if known), otherwise builds it (with ``build=True``)
    and caches it.
    """
    if storage.is_url(path):
        offsets = _fresh_remote_index(str(path), size)
    else:
        path = Path(storage.local_path(path))
        if not path.is_file():
            raise DataNotFoundError(f"{path}: no such TFRecord file")
        offsets = _fresh_index(path)
    if offsets is not None:
        return offsets
    if not build:
        raise DataNotFoundError(f"{path}: no up-to-date index; run `scarce data index {path}`")
    return _read_index_file(create_index(path))


def count_records(path: str | Path, compression: str | None = "auto", *, skip_corrupt: bool = False,
                  report: SkipReport | None = None, max_record_bytes: int | None = None,
                  read_ahead: int = storage.READ_AHEAD_BYTES) -> int:
    """Number of records in a file: from a fresh index when there is one, else by reading the framing.

    With ``skip_corrupt``, a damaged tail ends the count (and goes to ``report``) instead of raising.
    """
    offsets = _fresh_index(path)
    if offsets is not None:
        return len(offsets)
    # Framing only (no CRC of the data): a damaged record still gets caught when it is read.
    return sum(1 for _ in iter_raw_records(path, compression, verify=False, skip_corrupt=skip_corrupt, report=report,
                                           max_record_bytes=max_record_bytes, read_ahead=read_ahead))


# --------------------------------------------------------------------------------------------- file lists

# A dataset's manifest, written last by every writer (scarce.shards.writer): its shards, their counts and sizes.
MANIFEST_SUFFIX = ".manifest.json"


def load_manifest(path: str | Path) -> dict:
    """A manifest's JSON, checked to list its shards as ``{"file", "records", ...}``.

    Raises:
        DataNotFoundError: No such file or object.
        ScarceError: Not a readable manifest, naming it.
    """
    try:
        manifest = json.loads(storage.read_bytes(path))
        shards = manifest["shards"]
        if not isinstance(shards, list) or not all(isinstance(s, dict) and "file" in s and "records" in s
                                                   for s in shards):
            raise ValueError("'shards' is not a list of {file, records, ...}")
    except FileNotFoundError as err:  # a local file (DataNotFoundError, from storage, is one too)
        if isinstance(err, ScarceError):
            raise
        raise DataNotFoundError(f"{path}: no such manifest") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ScarceError(f"{path}: not a readable manifest ({err}); rewrite the dataset") from err
    return manifest


def _manifest_shards(manifest_path: str, present: Iterable[str] | None = None) -> list[str]:
    """The shards a manifest lists, as paths next to it; each must be in ``present`` (the folder's names)."""
    folder = storage.dirname(manifest_path)
    names = [Path(str(s["file"])).name for s in load_manifest(manifest_path)["shards"]]
    if present:  # (a folder over plain HTTP may list nothing: then a missing shard is found when it is read)
        missing = sorted(set(names) - set(present))
        if missing:
            raise DataNotFoundError(f"{storage.join(folder, missing[0])}: listed in {manifest_path} but missing; "
                                    "the dataset changed after it was written: rewrite it")
    return [storage.join(folder, name) for name in names]


def _folder_shards(folder: str) -> list[str]:
    """A folder's shards: those its manifests list, when it has any (a dataset is what its manifests vouch
    for: on object storage nothing else is known to be whole), else every ``*.tfrecord*`` file but indexes."""
    names = storage.listing(folder)
    manifests = sorted(n for n in names if n.endswith(MANIFEST_SUFFIX) and not n.startswith("."))
    if manifests:
        return [p for m in manifests for p in _manifest_shards(storage.join(folder, m), names)]
    return [storage.join(folder, n) for n in names
            if ".tfrecord" in n and not n.startswith(".") and not n.endswith(".index")]


def expand_files(files: str | Path | Iterable[str | Path]) -> list[str]:
    """Paths or URLs of TFRecord files -> sorted list. Each item is one file, a glob (``*``, ``?``, ``[...]``),
    a manifest (``NAME.manifest.json``: the shards it lists), or a folder (the shards its manifests list, or with
    no manifest every ``*.tfrecord*`` file but indexes); local paths, ``file://`` and fsspec URLs alike.

    Raises:
        DataNotFoundError: Nothing matches an item; a folder holds an unfinished write (a writer's journal);
            a manifest lists a file that is missing.
    """
    items = [files] if isinstance(files, (str, Path)) else list(files)
    out: list[str] = []
    for item in items:
        item = str(item)
        is_glob = any(ch in item for ch in "*?[")
        is_folder = not is_glob and not item.endswith(MANIFEST_SUFFIX) and storage.isdir(item)
        folder = item if is_folder else storage.dirname(item)
        journals = unfinished_writes(folder)
        if journals:
            raise DataNotFoundError(f"{folder}: a dataset is being written here, or its writer died while committing "
                                    f"its files ({journals[0]}); rerun the writer, which cleans up")
        if is_folder:
            found = _folder_shards(item)
        elif item.endswith(MANIFEST_SUFFIX):
            found = _manifest_shards(item, storage.listing(folder))
        elif is_glob:
            found = [p for p in storage.glob(item) if not p.endswith((".index", ".json"))]
        else:
            found = [item] if storage.isfile(item) else []
        if not found:
            raise DataNotFoundError(f"no TFRecord files match {item!r} (a file, a folder of *.tfrecord files, "
                                    "a manifest, or a glob such as 'out/train-*.tfrecord')")
        out.extend(sorted(found))
    return out


def find_shards(root: str | Path, prefix: str) -> list[str]:
    """The shards of dataset ``prefix`` in folder ``root`` (a path or URL), sorted; ``[]`` when there are none.

    Those its manifest ``{prefix}.manifest.json`` lists when it has one (on object storage nothing else is known
    to be whole), else the files ``{prefix}-*.tfrecord*`` but indexes.

    Raises:
        DataNotFoundError: The folder holds an unfinished write; the manifest lists a missing file.
    """
    root = str(root)
    names = storage.listing(root)
    journals = sorted(n for n in names if TEMP_PATTERN.match(n) and JOURNAL_SUFFIX + ".tmp-" in n)
    if journals:
        raise DataNotFoundError(f"{root}: a dataset is being written here, or its writer died while committing "
                                f"its files ({journals[0]}); rerun the writer, which cleans up")
    if f"{prefix}{MANIFEST_SUFFIX}" in names:
        return sorted(_manifest_shards(storage.join(root, f"{prefix}{MANIFEST_SUFFIX}"), names))
    return sorted(storage.join(root, n) for n in names if n.startswith(f"{prefix}-") and ".tfrecord" in n
                  and not n.endswith(".index"))
