"""Where bytes live: one narrow interface over local disks and object stores (pyarrow.fs).

URIs accepted everywhere: local paths (relative or absolute), `file://...`,
`s3://bucket/key` and `gs://bucket/key`. S3 (and S3-compatible stores such as MinIO) is
configured from the usual AWS environment variables: `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL` (an `http://` endpoint is allowed), `AWS_REGION` / `AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`. Credentials are handed to
pyarrow and never logged or stored.

Transient failures (a dropped connection, a timeout, a throttled or unavailable store) are
retried with exponential backoff (`retrying`); an error that says something about the file
itself (not found, no permission) is raised at once. Local directories are walked here, not
by pyarrow, so that a symlinked folder is followed once and a symlink back to a folder above
(`ln -s .. up`) is not followed at all, and so a file name that is not UTF-8 is listed (as
Python's surrogate-escaped str) instead of aborting the listing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import tempfile
import threading
import time
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from maskray.errors import UsageError
from maskray.pipeline.write_error import WriteError

_REMOTE_SCHEMES = ("s3", "gs", "gcs")
_cache: dict[tuple, pafs.FileSystem] = {}
_cache_lock = threading.Lock()

RETRY_ATTEMPTS = 5  # tries in all, for an error `is_transient` accepts
RETRY_BASE_DELAY_S = 0.2  # then 0.4, 0.8, 1.6 s (each with jitter): about 3 s before giving up
_retry_state = threading.local()
_TRANSIENT_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT,
                               errno.EAGAIN, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                               errno.EPIPE, errno.EIO, errno.ESTALE})
# How pyarrow's S3/GCS clients and curl word the failures that pass (AWS SDK error names).
_TRANSIENT_WORDS = ("NETWORK_CONNECTION", "curlCode", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "INTERNAL_FAILURE",
                    "REQUEST_TIMEOUT", "THROTTLING", "Connection reset", "Connection refused", "timed out",
                    "Timeout", "Broken pipe", "Temporary failure", "Couldn't connect", "Could not connect",
                    "(HTTP status 5")  # a 5xx the SDK names UNKNOWN


def is_local(uri: str) -> bool:
    """True for plain paths and `file://` URIs."""
    scheme = _scheme(uri)
    return scheme in ("", "file")


def canonical(uri: str) -> str:
    """The one spelling of a URI used in outputs: absolute local path, or `s3://bucket/key`."""
    scheme = _scheme(uri)
    if scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    if scheme == "file":
        return os.path.abspath(unquote(urlparse(uri).path))
    if scheme == "gcs":
        return "gs://" + uri.split("://", 1)[1]
    return uri


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """`(filesystem, path inside it)` for a URI; filesystems are cached per store."""
    scheme = _scheme(uri)
    if scheme in ("", "file"):
        return _cached(("local",), pafs.LocalFileSystem), canonical(uri)
    if scheme == "s3":
        return _s3_filesystem(), uri.split("://", 1)[1]
    if scheme in ("gs", "gcs"):
        return _cached(("gs",), pafs.GcsFileSystem), uri.split("://", 1)[1]
    # A user's typo (http://, ftp://) is a usage error wherever the URI is first used.
    raise UsageError(f"unsupported URI scheme {scheme!r} in {uri!r} (use a path, file://, s3:// or gs://)")


def join(uri: str, *parts: str) -> str:
    """`uri/part/part` with exactly one `/` between pieces (works for paths and object stores)."""
    result = uri
    for part in parts:
        result = result.rstrip("/") + "/" + part.lstrip("/")
    return result


def is_transient(error: BaseException) -> bool:
    """True for a failure that may pass if tried again (network, timeouts, a busy store)."""
    flagged = getattr(error, "transient", None)
    if isinstance(flagged, bool):
        return flagged
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                          FileExistsError)):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError):
        if error.errno in _TRANSIENT_ERRNOS:
            return True
        text = str(error)
        return any(word in text for word in _TRANSIENT_WORDS)
    return False


def retrying(action, *args, **kwargs):
    """`action(*args, **kwargs)`, tried again with backoff while it fails transiently.

    Only the outermost `retrying` of a thread retries: an action built of retried reads
    (a video index opens a stream) would otherwise multiply the tries.
    """
    if getattr(_retry_state, "active", False):
        return action(*args, **kwargs)
    _retry_state.active = True
    try:
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                return action(*args, **kwargs)
            except Exception as error:
                if attempt == RETRY_ATTEMPTS or not is_transient(error):
                    raise
                # Jitter, so workers that lost the store together do not return together.
                time.sleep(RETRY_BASE_DELAY_S * 2 ** (attempt - 1) * random.uniform(0.75, 1.25))
        raise AssertionError("unreachable")
    finally:
        _retry_state.active = False


def exists(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return retrying(lambda: filesystem.get_file_info(path).type != pafs.FileType.NotFound)


def read_bytes(uri: str) -> bytes:
    filesystem, path = resolve(uri)

    def read() -> bytes:
        with filesystem.open_input_file(path) as stream:
            return stream.read()

    return retrying(read)


def read_head(uri: str, size: int) -> bytes:
    """The first `size` bytes (for recognising a file's type by its content)."""
    filesystem, path = resolve(uri)

    def read() -> bytes:
        with filesystem.open_input_file(path) as stream:
            return stream.read(size)

    return retrying(read)


def open_input(uri: str):
    """A seekable, readable binary file object (read/seek/tell), e.g. for PyAV; close it.

    Opening is retried; reads from the stream are not (callers retry the whole read).
    """
    filesystem, path = resolve(uri)
    return retrying(filesystem.open_input_file, path)


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write `data` so readers see the old object or the whole new one, never a part.

    Local: a temp file in the same folder, then `os.replace`. Object stores: one PUT
    (an object appears only when its upload completes). Both are retried whole. A failure
    that outlasts the retries is a `WriteError`: one line naming the file and what to do.
    """
    try:
        retrying(_write_once, uri, data)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError.of(uri, error, transient=is_transient(error)) from error


def _write_once(uri: str, data: bytes) -> None:
    if is_local(uri):
        path = canonical(uri)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        handle, temp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
        try:
            os.chmod(temp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_path, path)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise
        return
    filesystem, path = resolve(uri)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def list_files(uri: str) -> list[tuple[str, int]]:
    """`(uri, size)` of every file at or under `uri`, sorted by URI.

    A file gives itself; a directory or prefix is walked recursively. URIs keep the
    caller's store spelling (local ones become absolute paths). FileNotFoundError if
    nothing is there. Local directories: see the module's note on symlinks and names.
    """
    if is_local(uri):
        return retrying(_list_local, canonical(uri))
    return retrying(_list_store, uri)


def _list_store(uri: str) -> list[tuple[str, int]]:
    filesystem, path = resolve(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [(_to_uri(uri, info.path), info.size or 0)]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(uri)
    selector = pafs.FileSelector(path.rstrip("/") or "/", recursive=True)
    found = [
        (_to_uri(uri, item.path), item.size or 0)
        for item in filesystem.get_file_info(selector)
        if item.type == pafs.FileType.File
    ]
    return sorted(found)


def _list_local(root: str) -> list[tuple[str, int]]:
    if os.path.isfile(root):
        return [(root, os.path.getsize(root))]
    if not os.path.isdir(root):
        raise FileNotFoundError(root)
    found: list[tuple[str, int]] = []
    seen_folders = {_identity(root)}
    pending = [(root, os.path.realpath(root))]
    while pending:
        folder, real_folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir():  # follows symlinks
                        real = os.path.realpath(entry.path)
                        identity = _identity(entry.path)
                        # A link to this folder or one above it is a loop; a folder reached
                        # twice (two links to one place) is walked once.
                        if identity in seen_folders or _contains(real, real_folder):
                            continue
                        seen_folders.add(identity)
                        pending.append((entry.path, real))
                    elif entry.is_file():
                        found.append((entry.path, entry.stat().st_size))
                except FileNotFoundError:
                    continue  # a dangling symlink, or a file deleted while we looked
    return sorted(found)


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _contains(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _to_uri(original: str, path: str) -> str:
    """Turn a filesystem path back into a URI of the same store as `original`."""
    scheme = _scheme(original)
    if scheme in ("", "file"):
        return path
    return ("gs" if scheme == "gcs" else scheme) + "://" + path.lstrip("/")


def _read_umask() -> int:
    # os.umask can only be read by setting it, so do it once, at import, not per write.
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()


def _scheme(uri: str) -> str:
    # A Windows drive letter or a plain path has no "://".
    if "://" not in uri:
        return ""
    return uri.split("://", 1)[0].lower()


def _cached(key: tuple, factory) -> pafs.FileSystem:
    with _cache_lock:
        filesystem = _cache.get(key)
        if filesystem is None:
            filesystem = _cache[key] = factory()
        return filesystem


def _s3_filesystem() -> pafs.FileSystem:
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    access_key = env.get("AWS_ACCESS_KEY_ID") or None
    secret_key = env.get("AWS_SECRET_ACCESS_KEY") or None
    session_token = env.get("AWS_SESSION_TOKEN") or None
    options: dict = {}
    if access_key and secret_key:
        options.update(access_key=access_key, secret_key=secret_key, session_token=session_token)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else "https://" + endpoint)
        options.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme)
        # A custom endpoint (MinIO, moto, Ceph) rarely cares about the region, but the SDK needs one.
        region = region or "us-east-1"
    if region:
        options["region"] = region
    # Credentials only enter the cache key as a digest, so they never sit in plain text in it.
    secret_digest = hashlib.sha256(f"{access_key}\0{secret_key}\0{session_token}".encode()).hexdigest()
    key = ("s3", endpoint, region, secret_digest)
    return _cached(key, lambda: pafs.S3FileSystem(**options))
