"""Datasets over TFRecord shards: map-style through the index, streaming for any file; exact sharding.

:class:`TFRecordDataset` (map-style) reads uncompressed files by index: ``len()`` and random access, so
the usual samplers (and Lightning's ``DistributedSampler``) apply. With ``compressed="memory"`` it also
takes GZIP / ZLIB files, whose records it reads into memory once.

:class:`StreamingTFRecordDataset` reads any file, compressed included, front to back. Each epoch it lays
the files out in one order (shuffled by ``seed + epoch`` when ``shuffle=True``), numbers the records
0..N-1 across that order, and gives rank ``r`` of ``W`` the contiguous range ``[r N // W, (r + 1) N // W)``.
Within a rank the range goes to the DataLoader workers in whole batches when ``batch_size`` is given (worker
``w`` of ``K`` reads batches ``[w b // K, (w + 1) b // K)`` of the rank's ``b``), so only the rank's last batch
can be partial and the loader yields ``ceil(records / batch_size)`` batches, the number ``len(DataLoader)``
promises and Lightning stops at; without it, worker ``k`` of the ``C = W * K`` consumers gets ``[k N // C,
(k + 1) N // C)`` (each worker then ends with a partial batch of its own). A consumer seeks over (or,
compressed, reads past) the records before its range. So across DDP ranks x DataLoader workers every record
is read exactly once per epoch, uneven shard sizes included, and each rank gets ``N / world_size`` records
give or take one. Record counts come from the index, from a ``*.manifest.json`` next to the shards, or from
one pass over the framing, done once in the main process.

Files may be named by fsspec URLs (``s3://``, ``gs://``, ``https://``): the map-style dataset then reads each
record with one byte-range request located by the index, the streaming one reads ahead in large requests
(``read_ahead``), see :mod:`scarce.shards.storage`.

Both take ``decode``: ``None`` (the decoded example dict: name -> list), a feature description such as
``{"image": "jpeg", "mask": "png", "label": "int"}`` (see :class:`scarce.shards.decode.FeatureDecoder`;
kinds are checked, only the described features are kept), or any callable on the example dict. Then
``transform`` (a callable on the sample dict), then :func:`scarce.shards.decode.finalize_sample`.
"""

from __future__ import annotations

import bisect
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from scarce._errors import CorruptRecordError, ScarceError
from scarce.shards import storage
from scarce.shards.decode import RecordParser
from scarce.shards.example import decode_example
from scarce.shards.tfrecord import (SkipReport, count_records, detect_compression, expand_files, iter_raw_records,
                                    load_index, read_record_at)
from scarce.shards.writer import manifest_counts

__all__ = [
    "TFRecordDataset",
    "StreamingTFRecordDataset",
    "ShuffleBuffer",
    "distributed_rank",
    "consumer_ranges",
]


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of torch.distributed when initialised, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def consumer_ranges(total: int, consumers: int) -> list[tuple[int, int]]:
    """Split ``range(total)`` into ``consumers`` contiguous ranges whose sizes differ by at most one."""
    return [(k * total // consumers, (k + 1) * total // consumers) for k in range(consumers)]


# --------------------------------------------------------------------------------------------- map-style


class TFRecordDataset(Dataset):
    """Map-style dataset over TFRecord files: uncompressed ones by their index (built on first use and cached).

    Args:
        files: A glob, a folder, a file or a list of those.
        decode: See the module docstring.
        transform: Callable on the decoded sample.
        verify: Check CRCs of each record read.
        compressed: What to do with a GZIP / ZLIB file, which has no random access: ``"error"`` (raise), or
            ``"memory"`` (read its records into memory once, here; about the size of the file).
        skip_corrupt: Read every file once here and leave damaged records (and a damaged tail) out of the
            dataset instead of raising; they are counted in ``skip_report`` and reported as a
            :class:`~scarce.shards.tfrecord.SkippedRecordsWarning`. (A map-style dataset cannot skip at
            ``__getitem__``, so the check happens up front, and the index of such a file is not cached.)
        max_record_bytes: The longest record accepted in a scan (default
            :data:`~scarce.shards.tfrecord.MAX_RECORD_BYTES`).

    Raises:
        ScarceError: A compressed file with ``compressed="error"`` (use :class:`StreamingTFRecordDataset`).
    """

    def __init__(self, files: str | Path | Iterable[str | Path], decode: Mapping[str, str] | Callable | None = None,
                 transform: Callable | None = None, verify: bool = True,
                 compressed: Literal["error", "memory"] = "error", skip_corrupt: bool = False,
                 max_record_bytes: int | None = None) -> None:
        if compressed not in ("error", "memory"):
            raise ScarceError(f"compressed={compressed!r}; valid values are 'error' and 'memory'")
        self.files = expand_files(files)
        # Per file: the (N, 2) index of an uncompressed file, or the records of a compressed one.
        self.offsets: list[np.ndarray | list[bytes]] = []
        self.skip_report = SkipReport()
        scan = {"verify": verify, "skip_corrupt": skip_corrupt, "report": self.skip_report,
                "max_record_bytes": max_record_bytes}
        # A URL's size comes from one listing of its folder (not a request per file); local sizes are stat'ed.
        sizes = storage.file_sizes([f for f in self.files if storage.is_url(f)])
        for path in self.files:
            compression = detect_compression(path)
            if compression is None and skip_corrupt:
                found = [(o, n) for o, n, data in iter_raw_records(path, None, with_offsets=True, **scan)
                         if self._is_example(data, path, o)]
                self.offsets.append(np.array(found, np.int64).reshape(-1, 2))
            elif compression is None:
                self.offsets.append(load_index(path, size=sizes.get(path)))
            elif compressed == "memory":
                records = iter_raw_records(path, compression, with_offsets=True, **scan)
                self.offsets.append([data for o, _, data in records if not skip_corrupt
                                     or self._is_example(data, path, o)])
            else:
                raise ScarceError(f"{path}: is {compression}-compressed, so it has no random access; use "
                                  "StreamingTFRecordDataset (or `data.streaming: true`) for compressed shards")
        self.skip_report.warn_since(0)
        self.cumulative = np.cumsum([0] + [len(o) for o in self.offsets]).tolist()
        self.parser = RecordParser(decode, transform)
        self.verify = verify
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def _is_example(self, data: bytes, path: str, offset: int) -> bool:
        """With ``skip_corrupt``: whether a CRC-clean record parses as a ``tf.train.Example`` (else counted)."""
        try:
            decode_example(data, path, offset)
        except CorruptRecordError as err:
            self.skip_report.add(err)
            return False
        return True

    def __len__(self) -> int:
        return self.cumulative[-1]

    def _handle(self, path: str):
        if self._pid != os.getpid():  # forked into a worker: do not share file positions with the parent
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(path)
        if handle is None:
            # A URL: every read is one byte-range request, located by the index (no read-ahead to waste).
            handle = self._handles[path] = storage.open_input(path, read_ahead=None, buffering=-1)
        return handle

    def raw(self, index: int) -> tuple[str, bytes]:
        """The file and serialized example of record ``index``."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        k = bisect.bisect_right(self.cumulative, index) - 1
        path, location = self.files[k], self.offsets[k][index - self.cumulative[k]]
        if isinstance(location, bytes):  # a record of a compressed file, held in memory
            return path, location
        offset, length = (int(v) for v in location)
        return path, read_record_at(self._handle(path), path, offset, length, self.verify)

    def __getitem__(self, index: int) -> Any:
        path, data = self.raw(index)
        return self.parser(data, where=path)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __del__(self) -> None:
        for handle in getattr(self, "_handles", {}).values():
            handle.close()


# --------------------------------------------------------------------------------------------- streaming


class ShuffleBuffer:
    """Shuffle a stream through a buffer of ``size`` items (tf.data's ``shuffle(buffer_size)``)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.rng = int(size), rng

    def __call__(self, items: Iterable[Any]) -> Iterator[Any]:
        buffer: list[Any] = []
        for item in items:
            if len(buffer) < self.size:
                buffer.append(item)
                continue
            j = self.rng.randrange(self.size)
            buffer[j], item = item, buffer[j]
            yield item
        self.rng.shuffle(buffer)
        yield from buffer


class StreamingTFRecordDataset(IterableDataset):
    """Stream records from TFRecord files (plain, GZIP or ZLIB), exactly once per epoch over ranks x workers.

    Args:
        files: A glob, a folder, a file or a list of those.
        decode: See the module docstring.
        transform: Callable on the decoded sample.
        shuffle: Shuffle the file order per epoch and the records through a buffer.
        buffer_size: Shuffle buffer size per consumer (records held in memory).
        seed: With ``epoch``, fixes the order: the same seed and epoch give the same samples per consumer.
        compression: ``"auto"`` (detect per file), ``"none"``, ``"gzip"`` or ``"zlib"``.
        verify: Check CRCs.
        skip_corrupt: Skip damaged records (and a damaged tail, also in the counting pass) instead of raising;
            they are counted in ``skip_report`` (per process) and reported as a
            :class:`~scarce.shards.tfrecord.SkippedRecordsWarning` at the end of each pass.
        rank, world_size: Override torch.distributed's (default: read when iterating).
        counts: Records per file, if known (else from index / manifest / a pass over the framing); the
            consumer that reads a file to its end checks it holds exactly that many.
        max_record_bytes: The longest record accepted (default
            :data:`~scarce.shards.tfrecord.MAX_RECORD_BYTES`), which bounds the memory one read holds.
        read_ahead: Files named by URL: bytes per request, the next block fetched in the background while
            this one is parsed (default :data:`~scarce.shards.storage.READ_AHEAD_BYTES`; at most three blocks
            held per consumer). Local files ignore it.
        even_ranks: Give every rank exactly ``N // world_size`` records, leaving out the last ``N % world_size``
            of the epoch's order (which records those are changes with the shuffled file order). DDP training
            needs the same number of batches on every rank; the default reads every record exactly once.
        batch_size: The DataLoader's batch size: workers then read whole batches of their rank's range (see the
            module docstring). ``None``: records are split evenly over ranks x workers.

    Call :meth:`set_epoch` before each epoch (the :class:`~scarce.datamodules.tfrecord.TFRecordDataModule`
    does); ``len()`` is the number of records this rank yields per epoch.
    """

    def __init__(self, files: str | Path | Iterable[str | Path], decode: Mapping[str, str] | Callable | None = None,
                 transform: Callable | None = None, *, shuffle: bool = False, buffer_size: int = 1000,
                 seed: int = 0, compression: str | None = "auto", verify: bool = True, skip_corrupt: bool = False,
                 rank: int | None = None, world_size: int | None = None,
                 counts: Sequence[int] | None = None, even_ranks: bool = False,
                 max_record_bytes: int | None = None, read_ahead: int = storage.READ_AHEAD_BYTES,
                 batch_size: int | None = None) -> None:
        self.files = expand_files(files)
        self.parser = RecordParser(decode, transform)
        self.shuffle, self.buffer_size, self.seed = shuffle, int(buffer_size), int(seed)
        self.compression, self.verify, self.skip_corrupt = compression, verify, skip_corrupt
        self.rank, self.world_size = rank, world_size
        self.even_ranks = even_ranks
        if batch_size is not None and int(batch_size) < 1:
            raise ScarceError(f"batch_size={batch_size}; expected a positive number or None")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.epoch = 0
        self.skip_report = SkipReport()
        self.max_record_bytes = max_record_bytes
        if int(read_ahead) < 1:
            raise ScarceError(f"read_ahead must be a positive number of bytes, got {read_ahead}")
        self.read_ahead = int(read_ahead)
        self._count_sources: list[str] | None = None if counts is None else ["the counts argument"] * len(counts)
        if counts is not None and len(counts) != len(self.files):
            raise ScarceError(f"counts has {len(counts)} entries for {len(self.files)} files")
        self._counts = list(counts) if counts is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose file order and shuffle to use."""
        self.epoch = int(epoch)

    @property
    def counts(self) -> list[int]:
        """Records per file (computed once, in the process that asks first: call it before forking workers)."""
        if self._counts is None:
            known = manifest_counts(self.files)
            self._count_sources = [known.get(f, (None, "the count pass"))[1] for f in self.files]
            self._counts = [known[f][0] if f in known
                            else count_records(f, self.compression, skip_corrupt=self.skip_corrupt,
                                               report=self.skip_report, max_record_bytes=self.max_record_bytes,
                                               read_ahead=self.read_ahead)
                            for f in self.files]
        return self._counts

    def _rank(self) -> tuple[int, int]:
        rank, world = distributed_rank()
        return (self.rank if self.rank is not None else rank), (self.world_size or world)

    def _total(self, world: int) -> int:
        total = sum(self.counts)
        return total - total % world if self.even_ranks else total

    def __len__(self) -> int:
        rank, world = self._rank()
        lo, hi = consumer_ranges(self._total(world), world)[rank]
        return hi - lo

    def file_order(self, epoch: int | None = None) -> list[int]:
        """File indices in the order read in ``epoch``."""
        order = list(range(len(self.files)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + (self.epoch if epoch is None else epoch)).shuffle(order)
        return order

    def record_range(self, rank: int, world: int, worker: int = 0, workers: int = 1) -> tuple[int, int]:
        """The records ``[start, stop)`` of the epoch's order that DataLoader worker ``worker`` of ``workers`` on rank
        ``rank`` of ``world`` reads."""
        total = self._total(world)
        if self.batch_size is None:
            return consumer_ranges(total, world * workers)[rank * workers + worker]
        lo, hi = consumer_ranges(total, world)[rank]
        b0, b1 = consumer_ranges(-(-(hi - lo) // self.batch_size), workers)[worker]
        return min(hi, lo + b0 * self.batch_size), min(hi, lo + b1 * self.batch_size)

    def plan(self, consumer: int, num_consumers: int, epoch: int | None = None) -> list[tuple[int, int, int]]:
        """The ``(file index, start, stop)`` segments consumer ``consumer`` of ``num_consumers`` reads (consumer
        ``rank * workers + worker``; ranks own contiguous blocks of workers, so dropping the tail keeps every
        rank's share equal)."""
        counts = self.counts
        order = self.file_order(epoch)
        world = self._rank()[1]
        workers = num_consumers // world
        lo, hi = self.record_range(consumer // workers, world, consumer % workers, workers)
        segments, base = [], 0
        for f in order:
            start, stop = max(lo, base), min(hi, base + counts[f])
            if start < stop:
                segments.append((f, start - base, stop - base))
            base += counts[f]
        return segments

    def _consumer(self) -> tuple[int, int, int]:
        rank, world = self._rank()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers, worker

    def raw_records(self) -> Iterator[tuple[str, bytes]]:
        """This consumer's ``(file, record bytes)`` for the current epoch, before shuffling."""
        consumer, consumers, _ = self._consumer()
        counts = self.counts
        for f, start, stop in self.plan(consumer, consumers):
            path = self.files[f]
            # The consumer that reads a file to its end checks that it ends there: a count from a manifest
            # that disagrees with the file is an error, not a silent cut.
            exact = self._count_sources[f] if stop == counts[f] and self._count_sources is not None else None
            yield from ((path, data) for data in iter_raw_records(
                path, self.compression, self.verify, skip_corrupt=self.skip_corrupt, report=self.skip_report,
                start=start, stop=stop, exact_count=exact, max_record_bytes=self.max_record_bytes,
                read_ahead=self.read_ahead))

    def __iter__(self) -> Iterator[Any]:
        consumer, consumers, _ = self._consumer()
        stream: Iterable[tuple[str, bytes]] = self.raw_records()
        if self.shuffle and self.buffer_size > 1:
            rng = random.Random((self.seed * 1_000_003 + self.epoch) * 65_537 + consumer)
            stream = ShuffleBuffer(self.buffer_size, rng)(stream)
        before = len(self.skip_report)
        for path, data in stream:
            try:
                sample = self.parser(data, where=path)
            except CorruptRecordError as err:  # framed and CRC-clean, but not a tf.train.Example
                if not self.skip_corrupt:
                    raise
                self.skip_report.add(err)
                continue
            yield sample
        self.skip_report.warn_since(before)
