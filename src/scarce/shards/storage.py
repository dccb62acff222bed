"""Where shards live: local paths, or URLs of any fsspec file system (``s3://``, ``gs://``, ``https://``, ...).

Every reader and writer of :mod:`scarce.shards` goes through these few functions, so a folder of shards can be
named by a local path, a ``file://`` URL or an object-storage URL alike. Local paths (and ``file://`` URLs,
turned into paths) use :mod:`os` and the builtin ``open``: fsspec is not imported for them. Any other URL goes
through fsspec (``s3://`` with s3fs, ``gs://`` with gcsfs, ``http(s)://`` with fsspec's HTTP file system over
aiohttp), imported on first use.

Credentials come only from the file systems' own configuration (for S3: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``, ``~/.aws``, instance roles; the endpoint of an S3-compatible
server from ``AWS_ENDPOINT_URL`` or fsspec's ``FSSPEC_S3_ENDPOINT_URL``): no scarce option, config or log holds
one, and a URL carrying a password (``https://user:pass@host/...``) is refused.

Reads of a URL come in two kinds (see ``docs/scaling.md``, "Object storage"):

* streaming (:func:`open_input` with ``read_ahead``): requests of ``read_ahead`` bytes, the next one fetched in
  a background thread while the current one is parsed (fsspec's ``background`` block cache, at most three
  blocks held);
* by byte range (``read_ahead=None``): every ``read(n)`` after a ``seek`` is one ranged GET of exactly ``n``
  bytes, which is what an index makes possible.

Errors of the storage (no such bucket or object, access denied, a server that cannot be reached) become one
:class:`~scarce._errors.ScarceError` line naming the URL.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from scarce._errors import DataNotFoundError, ScarceError

__all__ = [
    "READ_AHEAD_BYTES",
    "WRITE_BLOCK_BYTES",
    "basename",
    "dirname",
    "file_sizes",
    "glob",
    "is_url",
    "isdir",
    "isfile",
    "join",
    "listing",
    "local_path",
    "open_input",
    "open_output",
    "read_bytes",
    "remove",
    "storage_error",
    "storage_errors",
    "write_bytes",
]

# Bytes per request of a streaming read (one more block is fetched in the background while this one is parsed).
# Big enough that the request latency of object storage (~10-50 ms) is small next to the transfer, small enough
# that a consumer holds little: three blocks at most. A parameter of every streaming reader (`read_ahead=`).
READ_AHEAD_BYTES = 8 << 20
# Part size of an upload (S3's minimum is 5 MiB; GCS wants a multiple of 256 KiB). Each shard being written holds
# one such buffer, and `write_shards` keeps every shard of a dataset open at once.
WRITE_BLOCK_BYTES = 8 << 20
# Blocks a streaming read keeps (the current one and the one before it; the next is in flight).
_STREAM_BLOCKS = 2
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_SCHEMES = ("file", "local")
# Exceptions of the storage libraries that are not OSErrors (botocore's NoCredentialsError, aiohttp's
# ClientResponseError, ...): recognised by their package, so that none of them is imported here.
_STORAGE_PACKAGES = {"botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "fsspec", "requests"}


def _scheme(path: str | Path) -> str | None:
    match = _SCHEME.match(str(path)) if isinstance(path, str) else None
    return match["scheme"].lower() if match else None


def is_url(path: str | Path) -> bool:
    """Whether ``path`` is read through fsspec: a URL whose scheme is not ``file://``."""
    scheme = _scheme(path)
    return scheme is not None and scheme not in _LOCAL_SCHEMES


def local_path(path: str | Path) -> str:
    """``path`` as a local path: a ``file://`` URL loses its scheme; anything else is returned as a string."""
    text = str(path)
    scheme = _scheme(text)
    if scheme in _LOCAL_SCHEMES:
        return text[len(scheme) + 3:]
    return text


def _display(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path within it (fsspec caches instances per process)."""
    if urlsplit(url).password is not None:
        raise ScarceError(f"{_display(url)}: a password in a URL would end up in configs and logs; give "
                          "credentials through the file system's own configuration (environment, config files)")
    try:
        import fsspec

        return fsspec.core.url_to_fs(url)
    except ImportError as err:
        raise ScarceError(f"{url}: reading {_scheme(url)}:// URLs needs a package that is not installed ({err})"
                          ) from err
    except ValueError as err:  # fsspec: "Protocol not known"
        raise ScarceError(f"{url}: {err}") from err


def _missing_bucket(err: BaseException) -> bool:
    """Whether a FileNotFoundError says the bucket itself is missing (S3's NoSuchBucket, in s3fs's words)."""
    text = str(err).lower()
    return "bucket does not exist" in text or "nosuchbucket" in text


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _is_storage_error(err: BaseException) -> bool:
    return isinstance(err, (OSError, TimeoutError)) or type(err).__module__.split(".")[0] in _STORAGE_PACKAGES


def storage_error(url: str, err: BaseException, action: str = "read") -> ScarceError:
    """One line naming ``url`` for an error of the storage: missing, forbidden, unreachable, or another."""
    status = getattr(err, "status", None)  # aiohttp's ClientResponseError (HTTP)
    if isinstance(err, FileNotFoundError) or status == 404:
        what = "no such bucket" if _missing_bucket(err) else "no such file or object"
        return DataNotFoundError(f"{_display(url)}: {what} ({_describe(err)})")
    if isinstance(err, PermissionError) or status in (401, 403):
        return ScarceError(f"{_display(url)}: access denied to {action} ({_describe(err)}); check the credentials "
                           "the file system finds (for S3: AWS_ACCESS_KEY_ID / AWS_PROFILE, ~/.aws)")
    if type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return ScarceError(f"{_display(url)}: no credentials found ({_describe(err)}); set them the file system's "
                           "usual way (for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws)")
    return ScarceError(f"{_display(url)}: cannot {action} ({type(err).__name__}: {_describe(err)})")


@contextlib.contextmanager
def storage_errors(url: str, action: str = "read") -> Iterator[None]:
    """Turn an error of the storage libraries inside the block into one :class:`ScarceError` line naming ``url``."""
    try:
        yield
    except ScarceError:
        raise
    except Exception as err:  # noqa: BLE001 - narrowed by _is_storage_error, re-raised otherwise
        if not _is_storage_error(err):
            raise
        raise storage_error(url, err, action) from err


# --------------------------------------------------------------------------------------------- names


def join(folder: str | Path, name: str) -> str:
    """``folder/name``; a URL keeps its scheme and uses ``/``."""
    if is_url(folder):
        return str(folder).rstrip("/") + "/" + name
    return os.path.join(local_path(folder), name)


def basename(path: str | Path) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(local_path(path))


def dirname(path: str | Path) -> str:
    """The folder of ``path`` (for a URL: everything before the last ``/``)."""
    if is_url(path):
        return str(path).rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(local_path(path)) or "."


# --------------------------------------------------------------------------------------------- queries


def _forget(fs: Any, fspath: str) -> None:
    """Drop the file system's cached listings of ``fspath``: another process may have written there since."""
    with contextlib.suppress(Exception):
        fs.invalidate_cache(fspath)


def isfile(path: str | Path) -> bool:
    if not is_url(path):
        return os.path.isfile(local_path(path))
    fs, fspath = _filesystem(str(path))
    with storage_errors(str(path)):
        _forget(fs, fspath)
        return bool(fs.isfile(fspath))


def isdir(path: str | Path) -> bool:
    """A local folder, or a URL prefix with objects under it (object stores have no empty folders)."""
    if not is_url(path):
        return os.path.isdir(local_path(path))
    fs, fspath = _filesystem(str(path))
    with storage_errors(str(path)):
        _forget(fs, fspath)
        return bool(fs.isdir(fspath))


def listing(folder: str | Path) -> dict[str, int | None]:
    """The files directly in ``folder``: name -> size (``None`` where the server does not say, as plain HTTP).

    An absent folder lists as ``{}`` (object stores have no empty folders); an absent bucket is an error.
    """
    if not is_url(folder):
        local = local_path(folder)
        if not os.path.isdir(local):
            return {}
        with os.scandir(local) as entries:
            return {e.name: e.stat().st_size for e in entries if e.is_file()}
    url = str(folder).rstrip("/")
    fs, fspath = _filesystem(url)
    with storage_errors(url, "list"):
        _forget(fs, fspath)
        try:
            entries = fs.ls(fspath, detail=True)
        except FileNotFoundError as err:
            if _missing_bucket(err):
                raise
            return {}
        except Exception as err:  # noqa: BLE001
            # HTTP has no folders: a server that lists none (403, 405, ...) lists nothing, as an absent folder.
            if _scheme(url) in ("http", "https") and getattr(err, "status", None) is not None:
                return {}
            raise
    return {basename(e["name"]): e.get("size") for e in entries if e.get("type") != "directory"
            and basename(e["name"]) != basename(url)}


def file_sizes(paths: list[str]) -> dict[str, int | None]:
    """Size of each file, ``None`` for a missing one; a URL's come from one listing per folder."""
    sizes: dict[str, int | None] = {}
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        if is_url(path):
            by_folder.setdefault(dirname(path), []).append(path)
        else:
            local = local_path(path)
            sizes[path] = os.path.getsize(local) if os.path.isfile(local) else None
    for folder, members in by_folder.items():
        found = listing(folder)
        for path in members:
            size = found.get(basename(path)) if basename(path) in found else None
            if basename(path) in found and size is None:  # a listing without sizes (HTTP): ask the file
                fs, fspath = _filesystem(path)
                with storage_errors(path):
                    size = int(fs.size(fspath))
            sizes[path] = size
    return sizes


def glob(pattern: str) -> list[str]:
    """Files matching a glob (``*``, ``?``, ``[...]``), as paths or URLs like ``pattern``."""
    if not is_url(pattern):
        import glob as _glob

        return [p for p in _glob.glob(local_path(pattern)) if os.path.isfile(p)]
    fs, fspath = _filesystem(pattern)
    with storage_errors(pattern, "list"):
        _forget(fs, fspath.split("*", 1)[0].rsplit("/", 1)[0])
        found = fs.glob(fspath, detail=True)
    return [fs.unstrip_protocol(name) for name, info in found.items() if info.get("type") != "directory"]


# --------------------------------------------------------------------------------------------- reading


class _RemoteInput:
    """A readable remote file whose errors (network, permissions, the object gone) are one line naming the URL."""

    def __init__(self, url: str, file: Any) -> None:
        self.url, self._file = url, file
        self.size = getattr(file, "size", None)

    def read(self, n: int = -1) -> bytes:
        with storage_errors(self.url):
            return self._file.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        with storage_errors(self.url):
            return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return bool(self._file.seekable())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()

    def __enter__(self) -> _RemoteInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(path: str | Path, *, read_ahead: int | None = READ_AHEAD_BYTES, buffering: int = 1 << 16
               ) -> BinaryIO | _RemoteInput:
    """Open a file for reading: a local path with the builtin ``open`` (``buffering``), a URL through fsspec.

    Args:
        read_ahead: A URL streamed front to back: bytes per request, the next block prefetched in the
            background. ``None``: random access, each ``read(n)`` one byte-range request of ``n`` bytes.

    Raises:
        DataNotFoundError: No such file, object or bucket (naming it).
        ScarceError: Access denied, or another error of the storage.
    """
    if not is_url(path):
        local = local_path(path)
        try:
            return open(local, "rb", buffering=buffering)
        except FileNotFoundError as err:
            raise DataNotFoundError(f"{local}: no such TFRecord file") from err
    url = str(path)
    fs, fspath = _filesystem(url)
    if read_ahead is None:
        options = {"cache_type": "none"}
    else:
        options = {"cache_type": "background", "block_size": int(read_ahead),
                   "cache_options": {"maxblocks": _STREAM_BLOCKS}}
    with storage_errors(url):
        _forget(fs, fspath)
        return _RemoteInput(url, fs.open(fspath, "rb", **options))


def read_bytes(path: str | Path) -> bytes:
    """The whole content of a (small) file."""
    if not is_url(path):
        return Path(local_path(path)).read_bytes()
    fs, fspath = _filesystem(str(path))
    with storage_errors(str(path)):
        _forget(fs, fspath)
        return fs.cat_file(fspath)


# --------------------------------------------------------------------------------------------- writing


class _RemoteOutput:
    """A remote file open for writing whose storage errors all come out as ``OSError`` (what writers handle)."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._file, method)(*args)
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 - narrowed by _is_storage_error, re-raised otherwise
            if not _is_storage_error(err):
                raise
            raise OSError(f"{type(err).__name__}: {_describe(err)}") from err

    def write(self, data: bytes) -> int:
        return self._call("write", data)

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:
        self._call("close")

    def discard(self) -> None:
        """Drop an unfinished upload (an S3 multipart upload is aborted): nothing appears."""
        if getattr(self._file, "discard", None) is not None:
            self._call("discard")
        self._file.closed = True  # a discarded fsspec file would otherwise try to upload again when collected


def open_output(url: str) -> _RemoteOutput:
    """A remote file open for writing: uploaded in parts of :data:`WRITE_BLOCK_BYTES`, visible only once closed
    (an S3 multipart upload is completed, a GCS resumable upload finalised, on ``close()``; ``discard()`` drops it).

    Errors of the storage come out as ``OSError`` (the writer turns them into one line naming the file).
    """
    fs, fspath = _filesystem(url)
    try:
        return _RemoteOutput(fs.open(fspath, "wb", block_size=WRITE_BLOCK_BYTES))
    except NotImplementedError as err:
        raise ScarceError(f"{_display(url)}: {_scheme(url)}:// is read-only here; write to object storage "
                          "(s3://, gs://) or a local folder") from err


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a whole (small) remote object in one request; it appears whole or not at all."""
    url = str(path)
    fs, fspath = _filesystem(url)
    with storage_errors(url, "write"):
        try:
            fs.pipe_file(fspath, data)
        except NotImplementedError as err:
            raise ScarceError(f"{_display(url)}: {_scheme(url)}:// is read-only here; write to object storage "
                              "(s3://, gs://) or a local folder") from err


def remove(path: str | Path) -> None:
    """Delete a file or object; a missing one is not an error."""
    if not is_url(path):
        Path(local_path(path)).unlink(missing_ok=True)
        return
    url = str(path)
    fs, fspath = _filesystem(url)
    with storage_errors(url, "delete"):
        try:
            fs.rm_file(fspath)
        except FileNotFoundError as err:
            if _missing_bucket(err):
                raise
