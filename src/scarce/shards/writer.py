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
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scarce._errors import FeatureError, ScarceError
from scarce.shards.example import encode_example, values_and_kind
from scarce.shards.tfrecord import (JOURNAL_SUFFIX, TEMP_PATTERN, frame, index_path_for, normalize_compression,
                                    temp_name)

__all__ = ["MANIFEST_SUFFIX", "ShardFolder", "TFRecordWriter", "check_manifest", "manifest_counts", "shard_name",
           "write_shards"]

MANIFEST_SUFFIX = ".manifest.json"
# Files of a dataset besides shards, indexes and manifests (what `scarce render` writes), replaced with it.
DATASET_EXTRAS = ("render_config.json", "preview.png")


def _write_error(path: Path, err: OSError) -> ScarceError:
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
        self.tmp = temp_name(self.path)
        self.index_tmp = temp_name(index_path_for(self.path)) if index else None
        self._closed = self._finished = False
        try:
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
        """Complete and fsync the temporary file (and index) without renaming them (see :class:`ShardFolder`)."""
        if self._finished:
            return
        try:
            if self._zlib is not None:
                self._hashed.write(self._zlib.flush())
            if self._out is not self._hashed:
                self._out.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as err:
            self.abort()
            raise _write_error(self.path, err) from err
        self._finished = True
        if self.index_tmp is not None:
            try:
                write_file_atomic(index_path_for(self.path), "".join(f"{o} {n}\n" for o, n in self._offsets).encode(),
                                  temp=self.index_tmp)
            except ScarceError:
                self.abort()
                raise

    def close(self) -> None:
        """Finish the stream, then move the file (and its index) to their final names."""
        if self._closed:
            return
        self.finish()
        self._closed = True
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
        for closer in (getattr(self._out, "close", None), self._file.close):
            try:
                if closer is not None and not self._finished:
                    closer()
            except (OSError, ValueError):
                pass  # the flush inside close() fails the same way the write did
        self.tmp.unlink(missing_ok=True)
        if self.index_tmp is not None:
            self.index_tmp.unlink(missing_ok=True)

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

    Example::

        with ShardFolder("out", overwrite=True) as folder:
            folder.write_shards(train_records, "train", num_shards=4)
            folder.write_shards(val_records, "val")
            folder.write_file("notes.json", b"{}")

    Raises:
        ScarceError: ``out`` is a file; it holds a dataset and ``overwrite`` is off; another live writer is
            writing the same dataset there; a write error (naming the file).
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False, prefixes: Sequence[str] | None = None) -> None:
        self.out = Path(out)
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

    def _dataset_files(self) -> list[Path]:
        """Files of an existing dataset this write would replace: manifests, what they list, shards, extras."""
        found: set[Path] = set()
        for manifest in self.out.glob(f"*{MANIFEST_SUFFIX}"):
            if not self._owns(manifest.name):
                continue
            found.add(manifest)
            try:
                listed = json.loads(manifest.read_text()).get("shards", [])
            except (OSError, ValueError):
                listed = []
            for shard in listed if isinstance(listed, list) else []:
                for key in ("file", "index"):
                    if isinstance(shard, dict) and isinstance(shard.get(key), str):
                        found.add(self.out / Path(shard[key]).name)
        found.update(p for p in self.out.glob("*.tfrecord*") if self._owns(p.name))
        if self.prefixes is None:
            found.update(self.out / name for name in DATASET_EXTRAS)
        return sorted((p for p in found if p.is_file()), key=lambda p: (not p.name.endswith(MANIFEST_SUFFIX), p.name))

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
        writers = []
        for n in names:
            writers.append(TFRecordWriter(self.out / n, compression, index=compression is None))
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
        self._files += [(w.tmp, w.path) for w in writers]
        self._files += [(w.index_tmp, index_path_for(w.path)) for w in writers if w.index_tmp is not None]
        manifest_path = self.out / f"{prefix}{MANIFEST_SUFFIX}"
        tmp = temp_name(manifest_path)
        self._manifests.append((tmp, manifest_path))
        write_file_atomic(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode(), temp=tmp)
        return manifest

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


def _load_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        shards = manifest["shards"]
        if not isinstance(shards, list) or not all(isinstance(s, dict) and "file" in s and "records" in s
                                                   for s in shards):
            raise ValueError("'shards' is not a list of {file, records, ...}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ScarceError(f"{path}: not a readable manifest ({err}); rewrite the dataset") from err
    return manifest


def check_manifest(path: str | Path, *, checksums: bool = True) -> list[str]:
    """What is wrong with a dataset against its manifest (``[]``: it matches), one line per problem.

    Checks that every shard exists with the recorded size and (``checksums``) sha256; record counts are
    checked by whoever reads the shards (:func:`~scarce.shards.tfrecord.iter_raw_records` ``exact_count``).
    Manifests written before sizes and checksums were recorded are checked for presence only.
    """
    path = Path(path)
    problems = []
    for shard in _load_manifest(path)["shards"]:
        file = path.parent / Path(str(shard["file"])).name
        if not file.is_file():
            problems.append(f"{file}: listed in {path.name} but missing")
            continue
        size = file.stat().st_size
        if "size" in shard and size != shard["size"]:
            problems.append(f"{file}: {size} bytes, but {path.name} says {shard['size']}")
        elif checksums and "sha256" in shard:
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != shard["sha256"]:
                problems.append(f"{file}: sha256 differs from {path.name} (the file changed after it was written)")
    return problems


def manifest_counts(files: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Record counts from ``*.manifest.json`` files next to the shards: absolute path -> (count, manifest path).

    A manifest is used for a shard when the shard has the size it records (or, for a manifest without sizes,
    is not newer than it); the count is then checked where the shard is read to its end.

    Raises:
        ScarceError: A shard whose size differs from its manifest's, naming both.
    """
    counts: dict[str, tuple[int, str]] = {}
    wanted = {os.path.abspath(f) for f in files}
    for folder in sorted({os.path.dirname(p) for p in wanted}):
        for manifest in Path(folder).glob(f"*{MANIFEST_SUFFIX}"):
            try:
                shards = _load_manifest(manifest)["shards"]
            except ScarceError:
                continue  # not a shards manifest (or not ours): count the files themselves
            for shard in shards:
                path = os.path.join(folder, str(shard["file"]))
                if path not in wanted or not os.path.isfile(path):
                    continue
                if "size" in shard:
                    if os.path.getsize(path) != shard["size"]:
                        raise ScarceError(f"{path}: {os.path.getsize(path)} bytes, but {manifest} says "
                                          f"{shard['size']}; the dataset changed after it was written: rewrite it")
                elif os.path.getmtime(path) > manifest.stat().st_mtime + 1e-3:
                    continue
                counts[path] = (int(shard["records"]), str(manifest))
    return counts
