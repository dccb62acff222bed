"""Writing TFRecord files: :class:`TFRecordWriter`, :func:`write_shards`, the shards' JSON manifest, and the
crash-safe protocol every writer of a dataset follows (:class:`ShardFolder`).

``write_shards`` lays a dataset out as::

    out/
        {prefix}-00000-of-0000N.tfrecord   (+ .index when uncompressed)   record i in shard i % N
        ...
        {prefix}.manifest.json             feature schema, and the record count, size and sha256 of every shard

The protocol (``docs/reliability.md``): every file is written under a temporary name ``.NAME.tmp-PID`` and
fsynced; then a journal ``.SCOPE.commit.tmp-PID`` listing the final names is written, the files are renamed
into place, manifests last, and the journal removed. A dataset exists when its manifest does. The next writer
into the folder deletes the temporary files of writers that are no longer running, and undoes the renames of
one that died inside its commit (the files its journal lists), so a kill at any point leaves nothing behind.

On object storage (``out`` an fsspec URL such as ``s3://bucket/prefix``) there is no rename: the journal is
written first and names every object the write will create, the objects are uploaded under their final names
(each appears whole or not at all), the manifests last, then the journal is deleted. Readers refuse a folder
that holds a journal and read only what its manifests list; the next writer from the same host undoes what a
dead writer's journal lists (see ``docs/scaling.md``, "Object storage").
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import socket
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scarce._errors import FeatureError, ScarceError
from scarce.shards import storage
from scarce.shards.example import encode_example, values_and_kind
from scarce.shards.tfrecord import (JOURNAL_SUFFIX, MANIFEST_SUFFIX, TEMP_PATTERN, frame, index_path_for,
                                    load_manifest, normalize_compression, temp_name)

__all__ = ["MANIFEST_SUFFIX", "ObjectStoreShardFolder", "ShardFolder", "TFRecordWriter", "check_manifest",
           "manifest_counts", "shard_name", "write_shards"]

# Files of a dataset besides shards, indexes and manifests (what `scarce render` writes), replaced with it.
DATASET_EXTRAS = ("render_config.json", "preview.png")


def _write_error(path: Path | str, err: OSError) -> ScarceError:
    return ScarceError(f"{path}: cannot write ({err.strerror or err}); nothing was written under this name")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes, *, temp: Path | None = None) -> None:
    """Write ``data`` to ``temp`` (default: ``path``'s temporary name), fsync it, and (without ``temp``) rename it.

    Raises:
        ScarceError: A write error (disk full, file size limit), naming ``path``; the temporary file is removed.
    """
    tmp = temp if temp is not None else temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if temp is None:
            os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, err) from err


class _HashingFile:
    """A write-only file that keeps the sha256 and size of what went through it (for the manifest)."""

    def __init__(self, file) -> None:
        self.file, self.sha256, self.size = file, hashlib.sha256(), 0

    def write(self, data) -> int:
        n = self.file.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return n

    def flush(self) -> None:
        self.file.flush()


class TFRecordWriter:
    """Write framed records to ``path``, plain or compressed; the file appears under its name only when closed.

    Use as a context manager; on an exception inside the ``with`` block the partial file is removed. A write
    error (disk full, ``ulimit -f``) raises a :class:`~scarce._errors.ScarceError` naming ``path`` and removes
    the partial file.

    On object storage (``path`` an fsspec URL) the file is uploaded as it is written and appears when the
    upload completes (:meth:`finish`); ``abort`` cancels the upload, or deletes the object once it completed.

    Args:
        path: The output file (a path or an fsspec URL).
        compression: ``None``/``"none"``, ``"gzip"`` or ``"zlib"``.
        index: Also write ``path + ".index"`` (uncompressed files only).

    Example::

        with TFRecordWriter("out.tfrecord") as w:
            w.write({"image": jpeg_bytes, "label": 3})
    """

    def __init__(self, path: str | Path, compression: str | None = None, *, index: bool = False) -> None:
        self.remote = storage.is_url(path)
        self.path: Path | str = str(path) if self.remote else Path(storage.local_path(path))
        self.compression = normalize_compression(compression, allow_auto=False)
        if index and self.compression is not None:
            raise ScarceError(f"{self.path}: an index needs an uncompressed file (compression={compression!r})")
        self.index = index
        self.kinds: dict[str, str] = {}
        self.lengths: dict[str, list[int]] = {}
        self.count = 0
        self._offsets: list[tuple[int, int]] = []
        self._pos = 0
        # Remote: no temporary names (no rename on object storage); the upload itself is invisible until complete.
        self.tmp = None if self.remote else temp_name(self.path)
        self.index_tmp = temp_name(index_path_for(self.path)) if index and not self.remote else None
        self._closed = self._finished = False
        try:
            if self.remote:
                self._file = storage.open_output(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.tmp, "wb")
        except OSError as err:
            raise _write_error(self.path, err) from err
        self._hashed = _HashingFile(self._file)
        if self.compression == "gzip":
            # No name and no time in the header: the same records give the same bytes.
            self._out = gzip.GzipFile(filename="", mode="wb", fileobj=self._hashed, mtime=0)
        else:
            self._out = self._hashed
        self._zlib = zlib.compressobj() if self.compression == "zlib" else None

    @property
    def size(self) -> int:
        """Bytes in the file (final once :meth:`finish` returned)."""
        return self._hashed.size

    @property
    def sha256(self) -> str:
        """sha256 of the file's bytes (final once :meth:`finish` returned)."""
        return self._hashed.sha256.hexdigest()

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
        if self._closed or self._finished:
            raise ScarceError(f"{self.path}: write() after close()")
        if isinstance(record, (bytes, bytearray, memoryview)):
            data = bytes(record)
        else:
            self._note_schema(record)
            data = encode_example(record, self.kinds)
        framed = frame(data)
        try:
            if self._zlib is not None:
                self._hashed.write(self._zlib.compress(framed))
            else:
                self._out.write(framed)
        except OSError as err:
            self.abort()
            raise _write_error(self.path, err) from err
        self._offsets.append((self._pos, len(framed)))
        self._pos += len(framed)
        self.count += 1

    def finish(self) -> None:
        """Complete and fsync the temporary file (and index) without renaming them (see :class:`ShardFolder`);
        remote: complete the upload (the object appears) and upload the index."""
        if self._finished:
            return
        try:
            if self._zlib is not None:
                self._hashed.write(self._zlib.flush())
            if self._out is not self._hashed:
                self._out.close()
            self._file.flush()
            if not self.remote:
                os.fsync(self._file.fileno())
            self._file.close()
        except OSError as err:
            self.abort()
            raise _write_error(self.path, err) from err
        self._finished = True
        if self.remote and self.index:
            try:
                storage.write_bytes(index_path_for(self.path), self._index_text())
            except ScarceError:
                self.abort()
                raise
        if self.index_tmp is not None:
            try:
                write_file_atomic(index_path_for(self.path), self._index_text(), temp=self.index_tmp)
            except ScarceError:
                self.abort()
                raise

    def _index_text(self) -> bytes:
        return "".join(f"{o} {n}\n" for o, n in self._offsets).encode()

    def close(self) -> None:
        """Finish the stream, then move the file (and its index) to their final names."""
        if self._closed:
            return
        self.finish()
        self._closed = True
        if self.remote:
            return  # in place since finish()
        try:
            if self.index_tmp is not None:
                os.replace(self.index_tmp, index_path_for(self.path))
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.abort()
            raise _write_error(self.path, err) from err

    def abort(self) -> None:
        """Drop the partial file (never raises: it runs while another error is on its way)."""
        self._closed = True
        if self.remote:
            self._abort_upload()
            return
        for closer in (getattr(self._out, "close", None), self._file.close):
            try:
                if closer is not None and not self._finished:
                    closer()
            except (OSError, ValueError):
                pass  # the flush inside close() fails the same way the write did
        self.tmp.unlink(missing_ok=True)
        if self.index_tmp is not None:
            self.index_tmp.unlink(missing_ok=True)

    def _abort_upload(self) -> None:
        """Remote: cancel the upload (nothing appears), or delete the object (and index) once it completed."""
        with contextlib.suppress(Exception):  # never raises: another error is on its way
            if not self._finished:
                self._file.discard()  # s3fs: aborts the multipart upload
                return
        for path in (self.path, index_path_for(self.path)) if self.index else (self.path,):
            with contextlib.suppress(ScarceError):
                storage.remove(path)

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class ShardFolder:
    """One crash-safe write of one or more datasets into a folder (the protocol in the module docstring).

    Args:
        out: The folder (created).
        overwrite: Replace the dataset(s) already there, whole; without it, a folder that holds one is refused.
        prefixes: The datasets this write owns, by prefix: only their files count as "already there" and
            only their dead writers' files are cleaned. ``None`` (what the command line uses): the whole folder.

    Use as a context manager: on a clean exit everything written is committed, on an exception nothing is.
    ``out`` may be an object-storage URL (``s3://bucket/prefix``): then the instance is an
    :class:`ObjectStoreShardFolder`, which keeps the same guarantees without renames.

    Example::

        with ShardFolder("out", overwrite=True) as folder:
            folder.write_shards(train_records, "train", num_shards=4)
            folder.write_shards(val_records, "val")
            folder.write_file("notes.json", b"{}")

    Raises:
        ScarceError: ``out`` is a file; it holds a dataset and ``overwrite`` is off; another live writer is
            writing the same dataset there; a write error (naming the file).
    """

    def __new__(cls, out: str | Path, **kwargs: Any) -> ShardFolder:
        # One name for both protocols: an object-storage URL gets the one without renames.
        if cls is ShardFolder and storage.is_url(out):
            return super().__new__(ObjectStoreShardFolder)
        return super().__new__(cls)

    def __init__(self, out: str | Path, *, overwrite: bool = False, prefixes: Sequence[str] | None = None) -> None:
        self.out = Path(storage.local_path(out))
        self.overwrite = overwrite
        self.prefixes = None if prefixes is None else tuple(prefixes)
        self.cleaned: list[str] = []  # leftovers of dead writers removed on entry
        self._files: list[tuple[Path, Path]] = []  # (temporary, final): shards, indexes, extra files
        self._manifests: list[tuple[Path, Path]] = []  # renamed last: a manifest vouches for files in place
        self._writers: list[TFRecordWriter] = []
        self._replaced: list[Path] = []
        self._scope = "folder" if self.prefixes is None else "+".join(self.prefixes)

    # ------------------------------------------------------------------ entry: checks and leftovers

    def _owns(self, name: str) -> bool:
        if self.prefixes is None:
            return True
        # Exact shard names: prefix "data" must not claim the files of a dataset named "data-aug".
        return any(re.fullmatch(rf"{re.escape(p)}(-\d{{5}}-of-\d{{5}}\.tfrecord(\.index)?|{re.escape(MANIFEST_SUFFIX)}"
                                rf"|{re.escape(JOURNAL_SUFFIX)})", name) for p in self.prefixes)

    def _dataset_names(self, names: Iterable[str]) -> list[str]:
        """Of a folder's file ``names``, those of an existing dataset this write would replace: manifests, what
        they list, shards, extras; manifests first."""
        names = set(names)
        found: set[str] = set()
        for manifest in names:
            if not manifest.endswith(MANIFEST_SUFFIX) or manifest.startswith(".") or not self._owns(manifest):
                continue
            found.add(manifest)
            try:
                listed = json.loads(storage.read_bytes(self._target(manifest))).get("shards", [])
            except (OSError, ValueError, AttributeError):  # (a DataNotFoundError is an OSError too)
                listed = []
            for shard in listed if isinstance(listed, list) else []:
                for key in ("file", "index"):
                    if isinstance(shard, dict) and isinstance(shard.get(key), str):
                        found.add(Path(shard[key]).name)
        found.update(n for n in names if ".tfrecord" in n and not n.startswith(".") and self._owns(n))
        if self.prefixes is None:
            found.update(DATASET_EXTRAS)
        return sorted(found & names, key=lambda n: (not n.endswith(MANIFEST_SUFFIX), n))

    def _target(self, name: str) -> Path | str:
        return self.out / name

    def _dataset_files(self) -> list[Path]:
        """Files of an existing dataset this write would replace (see :meth:`_dataset_names`)."""
        return [self.out / name for name in self._dataset_names(storage.listing(self.out))]

    def _clean_dead_writers(self) -> None:
        journals, temps = [], []
        for path in self.out.iterdir():
            match = TEMP_PATTERN.match(path.name)
            if match is None or not self._owns(match["name"]):
                continue
            pid = int(match["pid"])
            if pid != os.getpid() and _pid_alive(pid):
                raise ScarceError(f"{self.out}: another writer (pid {pid}) is writing here ({path.name}); wait "
                                  "for it to finish, or delete the file if no such process is a writer")
            (journals if match["name"].endswith(JOURNAL_SUFFIX) else temps).append(path)
        for journal in journals:  # a writer died inside its commit: undo it
            try:
                plan = json.loads(journal.read_text())
            except (OSError, ValueError):
                plan = {}  # cut while being written: nothing was renamed yet
            plan = plan if isinstance(plan, dict) else {}
            # An --overwrite commit may have removed part of the old dataset already: finish that (the user
            # asked for it to go) and remove what was renamed of the new one; the rerun writes it whole.
            for name in list(plan.get("remove", [])) + list(plan.get("create", [])):
                target = self.out / Path(name).name
                if target.is_file():
                    target.unlink()
                    self.cleaned.append(target.name)
        for path in temps + journals:
            path.unlink(missing_ok=True)
            self.cleaned.append(path.name)

    def __enter__(self) -> ShardFolder:
        if self.out.exists() and not self.out.is_dir():
            raise ScarceError(f"{self.out}: is a file; the output must be a folder (new or holding a dataset)")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._clean_dead_writers()
        except OSError as err:
            raise ScarceError(f"{self.out}: cannot prepare the output folder ({err.strerror or err})") from err
        existing = self._dataset_files()
        if existing and not self.overwrite:
            names = ", ".join(p.name for p in existing[:4]) + (", ..." if len(existing) > 4 else "")
            raise ScarceError(f"{self.out}: already holds a dataset ({names}); pass --overwrite (overwrite=True) "
                              "to replace it, or choose another output folder")
        self._replaced = existing
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # ------------------------------------------------------------------ writing

    def write_file(self, name: str, data: bytes) -> None:
        """Write ``out/name`` (committed with the shards)."""
        path = self.out / name
        tmp = temp_name(path)
        self._files.append((tmp, path))
        write_file_atomic(path, data, temp=tmp)

    def write_shards(self, records: Iterable[Mapping[str, Any]], prefix: str, *, num_shards: int = 1,
                     compression: str | None = None, meta: Mapping[str, Any] | None = None) -> dict:
        """Write one dataset ``prefix`` (see :func:`write_shards`); ``meta`` adds keys to its manifest."""
        if int(num_shards) < 1:
            raise ScarceError(f"num_shards must be >= 1, got {num_shards}")
        compression = normalize_compression(compression, allow_auto=False)
        names = [shard_name(prefix, k, num_shards) for k in range(num_shards)]
        self._will_create(names + ([index_path_for(n).name for n in names] if compression is None else [])
                          + [f"{prefix}{MANIFEST_SUFFIX}"])
        writers = []
        for n in names:
            writers.append(TFRecordWriter(self._target(n), compression, index=compression is None))
            self._writers.append(writers[-1])
        kinds: dict[str, str] = {}
        for i, record in enumerate(records):
            writer = writers[i % num_shards]
            writer.kinds.update(kinds)  # an empty list in one shard takes its kind from the others
            writer.write(record)
            for name, kind in writer.kinds.items():
                if kinds.setdefault(name, kind) != kind:
                    raise FeatureError(f"feature {name!r}: kind {kind} in record {i}, but {kinds[name]} before")
        for w in writers:
            w.finish()
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
            "shards": [{"file": n, "records": w.count, "size": w.size, "sha256": w.sha256,
                        "index": index_path_for(n).name if compression is None else None}
                       for n, w in zip(names, writers)],
            **dict(meta or {}),
        }
        self._stage(writers, f"{prefix}{MANIFEST_SUFFIX}", (json.dumps(manifest, indent=1) + "\n").encode())
        return manifest

    def _will_create(self, names: list[str]) -> None:
        """Called before the files ``names`` are written (the object-storage protocol journals them first)."""

    def _stage(self, writers: list[TFRecordWriter], manifest_name: str, manifest: bytes) -> None:
        """Note the finished shards for the commit and write the manifest under its temporary name."""
        self._files += [(w.tmp, w.path) for w in writers]
        self._files += [(w.index_tmp, index_path_for(w.path)) for w in writers if w.index_tmp is not None]
        manifest_path = self.out / manifest_name
        tmp = temp_name(manifest_path)
        self._manifests.append((tmp, manifest_path))
        write_file_atomic(manifest_path, manifest, temp=tmp)

    # ------------------------------------------------------------------ commit / abort

    def commit(self) -> None:
        """Journal, replace the old dataset, rename everything into place (manifests last), drop the journal."""
        journal = temp_name(self.out / f"{self._scope}{JOURNAL_SUFFIX}")
        plan = {"remove": [p.name for p in self._replaced],
                "create": [final.name for _, final in self._files + self._manifests]}
        renamed: list[Path] = []
        try:
            write_file_atomic(journal, json.dumps(plan).encode(), temp=journal)
            _fsync_dir(self.out)
            # Old manifests go first: from then on the old dataset is not trusted by any reader.
            for path in sorted(self._replaced, key=lambda p: not p.name.endswith(MANIFEST_SUFFIX)):
                path.unlink(missing_ok=True)
            for tmp, final in self._files + self._manifests:
                os.replace(tmp, final)
                renamed.append(final)
            _fsync_dir(self.out)
            journal.unlink()
            _fsync_dir(self.out)
        except (OSError, ScarceError) as err:
            for path in renamed:  # only what this commit put in place: the old files may bear the same names
                path.unlink(missing_ok=True)
            self.abort()
            journal.unlink(missing_ok=True)
            if isinstance(err, ScarceError):
                raise
            raise _write_error(self.out, err) from err

    def abort(self) -> None:
        """Remove every temporary file of this write (never raises)."""
        for w in self._writers:
            w.abort()
        for tmp, _ in self._files + self._manifests:
            tmp.unlink(missing_ok=True)


class ObjectStoreShardFolder(ShardFolder):
    """:class:`ShardFolder` on object storage (``s3://bucket/prefix``, ``gs://...``): what ``ShardFolder(url)`` is.

    Object stores have no rename, but each object appears whole or not at all. So the write is made safe by its
    order (``docs/scaling.md``, "Object storage"):

    1. the journal ``.SCOPE.commit.tmp-PID`` is written first (host, PID, the objects to remove, every object the
       write will create, rewritten before each dataset starts); readers refuse a folder holding one;
    2. with ``overwrite``, the old dataset is deleted, manifests first;
    3. shards, indexes and extra files are uploaded under their final names;
    4. the manifests are uploaded last, then the journal is deleted.

    An exception deletes what was created and the journal. A writer killed outright leaves its journal: the next
    writer on the same host whose PID is no longer running deletes every object it lists (and the journal), as
    for a local folder; a journal of another host (or of a live process) is a refusal naming it, to be deleted by
    hand once that writer is known to be gone. An S3 multipart upload cut by a kill stays invisible; a bucket
    lifecycle rule (``AbortIncompleteMultipartUpload``) reclaims its parts.
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False, prefixes: Sequence[str] | None = None) -> None:
        super().__init__(".", overwrite=overwrite, prefixes=prefixes)
        self.out = str(out).rstrip("/")  # type: ignore[assignment]
        self._journal = storage.join(self.out, f".{self._scope}{JOURNAL_SUFFIX}.tmp-{os.getpid()}")
        self._created: list[str] = []  # every name the journal announces, in order
        self._started = False
        self._pending_manifests: list[tuple[str, bytes]] = []
        self._replaced_names: list[str] = []

    def _target(self, name: str) -> str:
        return storage.join(self.out, name)

    def __enter__(self) -> ObjectStoreShardFolder:
        if storage.isfile(self.out):
            raise ScarceError(f"{self.out}: is an object (a file); the output must be a folder (a prefix, new or "
                              "holding a dataset)")
        names = storage.listing(self.out)  # a missing bucket: one line naming it, before anything is written
        if self._clean_dead_journals(names):
            names = storage.listing(self.out)
        existing = self._dataset_names(names)
        if existing and not self.overwrite:
            shown = ", ".join(existing[:4]) + (", ..." if len(existing) > 4 else "")
            raise ScarceError(f"{self.out}: already holds a dataset ({shown}); pass --overwrite (overwrite=True) "
                              "to replace it, or choose another output folder")
        self._replaced_names = existing
        return self

    def _clean_dead_journals(self, names: Mapping[str, Any]) -> bool:
        """Undo the writes of dead writers whose journals are here; refuse live or foreign ones."""
        journals = []
        for name in sorted(names):
            match = TEMP_PATTERN.match(name)
            if match is None or not match["name"].endswith(JOURNAL_SUFFIX) or not self._owns(match["name"]):
                continue
            try:
                plan = json.loads(storage.read_bytes(self._target(name)))
            except (OSError, ValueError):
                plan = {}
            plan = plan if isinstance(plan, dict) else {}
            pid, host = int(match["pid"]), plan.get("host")
            if host != socket.gethostname() or (pid != os.getpid() and _pid_alive(pid)):
                raise ScarceError(f"{self._target(name)}: another writer (host {host}, pid {pid}) is writing here, "
                                  "or died there; wait for it to finish, or delete this object once no such writer "
                                  "is running (the next write then replaces its files)")
            journals.append((name, plan))
        for name, plan in journals:
            for listed in list(plan.get("remove", [])) + list(plan.get("create", [])):
                listed = Path(str(listed)).name
                if listed in names:
                    storage.remove(self._target(listed))
                    self.cleaned.append(listed)
            storage.remove(self._target(name))
            self.cleaned.append(name)
        return bool(journals)

    def _write_journal(self) -> None:
        plan = {"host": socket.gethostname(), "pid": os.getpid(), "remove": self._replaced_names,
                "create": self._created}
        storage.write_bytes(self._journal, json.dumps(plan).encode())

    def _will_create(self, names: list[str]) -> None:
        self._created += [n for n in names if n not in self._created]
        self._write_journal()
        if not self._started:
            self._started = True
            # The old dataset goes before anything new appears, manifests first: a reader that ignored the
            # journal would still find no manifest vouching for a mix of old and new objects.
            for name in self._replaced_names:
                storage.remove(self._target(name))

    def _stage(self, writers: list[TFRecordWriter], manifest_name: str, manifest: bytes) -> None:
        self._pending_manifests.append((manifest_name, manifest))  # uploaded last, at the commit

    def write_file(self, name: str, data: bytes) -> None:
        """Upload ``out/name`` (part of the commit: deleted again if the write fails)."""
        self._will_create([name])
        storage.write_bytes(self._target(name), data)

    def commit(self) -> None:
        """Upload the manifests (the commit), then delete the journal."""
        try:
            if not self._started and not self._replaced_names:
                return  # nothing written, nothing replaced
            self._will_create([name for name, _ in self._pending_manifests])
            for name, data in self._pending_manifests:
                storage.write_bytes(self._target(name), data)
            storage.remove(self._journal)
        except ScarceError:
            self.abort()
            raise

    def abort(self) -> None:
        """Delete what this write created, then its journal (never raises; if the storage fails here, the journal
        stays and the next writer finishes the cleanup)."""
        for w in self._writers:
            w.abort()
        try:
            for name in self._created:
                storage.remove(self._target(name))
            if self._started:
                storage.remove(self._journal)
        except ScarceError:
            pass


def write_shards(
    records: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    prefix: str = "data",
    num_shards: int = 1,
    compression: str | None = None,
    overwrite: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> dict:
    """Write records round-robin into ``num_shards`` files ``{prefix}-0000K-of-0000N.tfrecord``.

    Uncompressed shards get their ``.index``; ``{prefix}.manifest.json`` records the feature schema and the
    count, size and sha256 of each shard. The write follows :class:`ShardFolder`'s protocol: nothing appears
    under a final name unless the whole dataset does, and a killed writer's leftovers are removed by the next.

    Args:
        records: Record dicts (see :func:`scarce.shards.example.encode_example` for the accepted values).
        out_dir: Output folder (created).
        prefix: File name prefix, e.g. ``"train"``.
        num_shards: Number of files; record ``i`` goes to shard ``i % num_shards``.
        compression: ``None``/``"none"``, ``"gzip"`` or ``"zlib"``.
        overwrite: Replace a dataset of the same prefix in ``out_dir`` (refused otherwise).
        meta: Extra keys for the manifest (e.g. ``{"classes": [...]}``).

    Returns:
        The manifest: ``{"format", "compression", "num_records", "features": {name: {"kind", "min_len",
        "max_len"}}, "shards": [{"file", "records", "size", "sha256", "index"}], **meta}``.
    """
    with ShardFolder(out_dir, overwrite=overwrite, prefixes=[prefix]) as folder:
        manifest = folder.write_shards(records, prefix, num_shards=num_shards, compression=compression, meta=meta)
    return manifest


# --------------------------------------------------------------------------------------------- reading manifests


def check_manifest(path: str | Path, *, checksums: bool = True) -> list[str]:
    """What is wrong with a dataset against its manifest (``[]``: it matches), one line per problem.

    Checks that every shard exists with the recorded size and (``checksums``) sha256; record counts are
    checked by whoever reads the shards (:func:`~scarce.shards.tfrecord.iter_raw_records` ``exact_count``).
    Manifests written before sizes and checksums were recorded are checked for presence only. ``path`` may be
    a URL (the sizes then come from one listing of its folder).
    """
    path = str(path)
    folder, manifest_name = storage.dirname(path), storage.basename(path)
    shards = load_manifest(path)["shards"]
    files = [storage.join(folder, Path(str(shard["file"])).name) for shard in shards]
    sizes = storage.file_sizes(files)
    problems = []
    for shard, file in zip(shards, files):
        size = sizes[file]
        if size is None:
            problems.append(f"{file}: listed in {manifest_name} but missing")
            continue
        if "size" in shard and size != shard["size"]:
            problems.append(f"{file}: {size} bytes, but {manifest_name} says {shard['size']}")
        elif checksums and "sha256" in shard:
            digest = hashlib.sha256()
            with storage.open_input(file) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != shard["sha256"]:
                problems.append(f"{file}: sha256 differs from {manifest_name} (the file changed after it was written)")
    return problems


def manifest_counts(files: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Record counts from ``*.manifest.json`` files next to the shards: path (as given) -> (count, manifest path).

    A manifest is used for a shard when the shard has the size it records (or, for a local manifest without
    sizes, is not newer than it); the count is then checked where the shard is read to its end.

    Raises:
        ScarceError: A shard whose size differs from its manifest's, naming both.
    """
    counts: dict[str, tuple[int, str]] = {}
    wanted = {_key(f): f for f in files}
    for folder in sorted({storage.dirname(p) for p in wanted}):
        names = storage.listing(folder)  # one listing per folder gives every size (remotely: one request)
        for manifest_name in sorted(n for n in names if n.endswith(MANIFEST_SUFFIX) and not n.startswith(".")):
            manifest = storage.join(folder, manifest_name)
            try:
                shards = load_manifest(manifest)["shards"]
            except ScarceError:
                continue  # not a shards manifest (or not ours): count the files themselves
            for shard in shards:
                name = str(shard["file"])
                path = storage.join(folder, name)
                if path not in wanted or name not in names:
                    continue
                size = names[name] if names[name] is not None else storage.file_sizes([path])[path]
                if "size" in shard:
                    if size != shard["size"]:
                        raise ScarceError(f"{path}: {size} bytes, but {manifest} says {shard['size']}; the "
                                          "dataset changed after it was written: rewrite it")
                elif storage.is_url(path) or os.path.getmtime(path) > os.path.getmtime(manifest) + 1e-3:
                    continue  # no size to trust it by (a URL's objects have no comparable times)
                counts[wanted[path]] = (int(shard["records"]), str(manifest))
    return counts


def _key(path: str) -> str:
    """A file's one name: a local path made absolute, a URL as it is."""
    return path if storage.is_url(path) else os.path.abspath(storage.local_path(path))
