"""One small I/O interface over local paths and ``s3://`` URIs, with atomic publish.

Jobs name inputs and outputs by URI and never branch on where they live. S3 goes through
boto3; its endpoint comes from an explicit :class:`StorageConfig` or the standard AWS
environment (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``), so the same code runs against
AWS, MinIO or a loopback test server.

Single files are written atomically (temp file + rename locally, one upload on close on S3):
an interrupted write never leaves a partial object. Directories of outputs are published with
``with publish(dest) as staging:``; a published directory carries a ``_SUCCESS`` marker
written last, and readers must treat a directory without it as incomplete
(:func:`is_complete`). Missing objects and buckets raise ``FileNotFoundError`` naming the URI.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob as _glob
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid as _uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
STAGING_PREFIX = "_staging"
_GLOB_CHARS = "*?["
_MiB = 1024 * 1024


@dataclass(frozen=True)
class StorageConfig:
    """S3 settings; None means "what boto3 / the AWS environment says"."""

    endpoint_url: str | None = None
    region_name: str | None = None
    multipart_threshold: int = 64 * _MiB  # uploads at least this big go multipart
    multipart_chunksize: int = 16 * _MiB
    max_concurrency: int = 4
    spool_bytes: int = 32 * _MiB  # an S3 writer keeps this much in memory before spilling to disk
    read_buffer: int = 8 * _MiB  # an S3 reader fetches ranges of this size


_default_config = StorageConfig()


def _cfg(config: StorageConfig | None) -> StorageConfig:
    return config if config is not None else _default_config


# --- URIs --------------------------------------------------------------------------------------


def is_s3(uri: str) -> bool:
    return str(uri).startswith(("s3://", "s3a://", "s3n://"))


def split_s3(uri: str) -> tuple[str, str]:
    """('bucket', 'key/inside') of an s3:// URI (s3a:// and s3n:// are accepted too)."""
    uri = str(uri)
    if not is_s3(uri):
        raise ValueError(f"not an s3 URI: {uri!r}")
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key


def _s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _local(uri: str | os.PathLike) -> str:
    uri = os.fspath(uri)
    return uri[len("file://"):] if uri.startswith("file://") else uri


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or an s3:// URI."""
    uri = os.fspath(uri)
    if is_s3(uri):
        out = uri.rstrip("/")
        for p in parts:
            out = f"{out}/{p.strip('/')}"
        return out
    return os.path.join(_local(uri), *parts)


def _split_parent(uri: str) -> tuple[str, str]:
    """(parent, name) of a URI without a trailing slash."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        key = key.rstrip("/")
        if not key:
            raise ValueError(f"{uri!r} is a bucket root; publish needs a prefix inside the bucket")
        parent, _, name = key.rpartition("/")
        return (_s3_uri(bucket, parent) if parent else f"s3://{bucket}"), name
    path = resolve_local(uri)
    return os.path.dirname(path), os.path.basename(path)


def resolve_local(uri: str | os.PathLike) -> str:
    """The absolute path a local output is written at: a symlinked output is its link's target,
    so publishing replaces the target and the link stays (renaming over the link would drop it)."""
    path = os.path.abspath(_local(os.fspath(uri)))
    return os.path.realpath(path) if os.path.islink(path) else path


# --- boto3 client (lazy, one per process and endpoint) ------------------------------------------

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _endpoint(config: StorageConfig) -> str | None:
    return config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_client(config: StorageConfig | None = None):
    """The boto3 S3 client of this process for the configured endpoint (created on first use).

    Keyed by pid so a forked worker never reuses its parent's connections, and by endpoint and
    credentials so a changed environment gets a fresh client.
    """
    config = _cfg(config)
    key = (
        os.getpid(),
        _endpoint(config),
        config.region_name or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_PROFILE"),
    )
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                session = boto3.session.Session()
                client = session.client(
                    "s3",
                    endpoint_url=key[1],
                    region_name=key[2],
                    config=Config(retries={"max_attempts": 8, "mode": "adaptive"}),
                )
                _clients[key] = client
    return client


def _transfer_config(config: StorageConfig):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=config.multipart_threshold,
        multipart_chunksize=config.multipart_chunksize,
        max_concurrency=config.max_concurrency,
    )


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _translate(exc: Exception, uri: str) -> Exception:
    """A clear Python exception naming the URI for a botocore ClientError."""
    code = _error_code(exc)
    if code in ("NoSuchBucket",):
        return FileNotFoundError(f"s3 bucket does not exist: {uri}")
    if code in ("NoSuchKey", "404", "NotFound"):
        return FileNotFoundError(f"no such s3 object: {uri}")
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return PermissionError(f"access denied to {uri} ({code})")
    return exc


def _client_error():
    from botocore.exceptions import ClientError

    return ClientError


def _head(bucket: str, key: str, config: StorageConfig) -> dict:
    uri = _s3_uri(bucket, key)
    try:
        return s3_client(config).head_object(Bucket=bucket, Key=key)
    except _client_error() as exc:
        err = _translate(exc, uri)
        if isinstance(err, FileNotFoundError):
            _check_bucket(bucket, config)  # say "bucket does not exist" when that is the cause
        raise err from exc


def _check_bucket(bucket: str, config: StorageConfig) -> None:
    try:
        s3_client(config).head_bucket(Bucket=bucket)
    except _client_error() as exc:
        if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            raise FileNotFoundError(f"s3 bucket does not exist: s3://{bucket}") from exc
        raise _translate(exc, f"s3://{bucket}") from exc


# --- reading ---------------------------------------------------------------------------------


class _S3RangeReader(io.RawIOBase):
    """Seekable raw reader over one S3 object via ranged GETs (Parquet readers seek to the footer)."""

    def __init__(self, bucket: str, key: str, config: StorageConfig):
        self._bucket, self._key, self._config = bucket, key, config
        head = _head(bucket, key, config)
        self.size = int(head["ContentLength"])
        self._etag = head.get("ETag")
        self._pos = 0
        self.name = _s3_uri(bucket, key)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def _get(self, start: int, end_inclusive: int) -> bytes:
        kwargs = {"Bucket": self._bucket, "Key": self._key, "Range": f"bytes={start}-{end_inclusive}"}
        if self._etag:
            kwargs["IfMatch"] = self._etag  # the object changed under us: fail rather than mix versions
        try:
            return s3_client(self._config).get_object(**kwargs)["Body"].read()
        except _client_error() as exc:
            raise _translate(exc, self.name) from exc

    def readinto(self, buffer) -> int:
        if self._pos >= self.size:
            return 0
        n = min(len(buffer), self.size - self._pos)
        if n <= 0:
            return 0
        data = self._get(self._pos, self._pos + n - 1)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        if self._pos >= self.size:
            return b""
        data = self._get(self._pos, self.size - 1)
        self._pos += len(data)
        return data


def open_read(uri: str | os.PathLike, config: StorageConfig | None = None) -> io.BufferedIOBase:
    """A seekable binary reader. FileNotFoundError naming the URI when it does not exist."""
    uri = os.fspath(uri)
    if is_s3(uri):
        config = _cfg(config)
        bucket, key = split_s3(uri)
        raw = _S3RangeReader(bucket, key, config)
        return io.BufferedReader(raw, buffer_size=config.read_buffer)
    path = _local(uri)
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {uri}") from exc


def read_bytes(uri: str | os.PathLike, config: StorageConfig | None = None) -> bytes:
    uri = os.fspath(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return s3_client(config).get_object(Bucket=bucket, Key=key)["Body"].read()
        except _client_error() as exc:
            err = _translate(exc, uri)
            if isinstance(err, FileNotFoundError) and _error_code(exc) != "NoSuchBucket":
                _check_bucket(bucket, _cfg(config))
            raise err from exc
    with open_read(uri) as f:
        return f.read()


# --- writing ---------------------------------------------------------------------------------


class _AtomicWriter(io.BufferedIOBase):
    """Binary writer that makes its file visible only on a clean close.

    Leaving a `with` block by an exception, calling abort(), or dropping the object unclosed
    discards what was written: a reader never sees a partial file.
    """

    def __init__(self, uri: str, config: StorageConfig):
        self.name = uri
        self._config = config
        self._done = False
        self._file = None
        self._tmp_path = None
        if is_s3(uri):
            self._bucket, self._key = split_s3(uri)
            if not self._key or self._key.endswith("/"):
                raise ValueError(f"cannot write an object at {uri!r}: it names no key")
            self._file = tempfile.SpooledTemporaryFile(max_size=config.spool_bytes)
            self._tmp_path = None
        else:
            path = os.path.abspath(_local(uri))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, self._tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                                  dir=os.path.dirname(path))
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: outputs are read by other users
            self._path = path
            self._file = os.fdopen(fd, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    @property
    def closed(self) -> bool:
        return self._done

    def close(self) -> None:
        """Commit: upload (S3) or rename into place (local)."""
        if self._done:
            return
        self._done = True
        try:
            if self._tmp_path is None:
                self._file.seek(0)
                try:
                    s3_client(self._config).upload_fileobj(
                        self._file, self._bucket, self._key, Config=_transfer_config(self._config)
                    )
                except _client_error() as exc:
                    raise _translate(exc, self.name) from exc
                except Exception as exc:  # boto3's transfer manager wraps ClientError
                    cause = exc.__cause__ or (exc.args[0] if exc.args else None)
                    if isinstance(cause, _client_error()):
                        raise _translate(cause, self.name) from exc
                    raise
                finally:
                    self._file.close()
            else:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                os.replace(self._tmp_path, self._path)
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)

    def abort(self) -> None:
        """Drop everything written; the destination is left as it was."""
        if not self._done:
            self._done = True
            self._discard()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False

    def __del__(self):
        try:
            self.abort()  # never commit a file nobody closed
        except Exception:  # interpreter shutdown: nothing sensible left to do
            pass


def open_write(uri: str | os.PathLike, config: StorageConfig | None = None) -> _AtomicWriter:
    """A binary writer; the file appears (local rename / S3 upload, multipart when big) on close."""
    return _AtomicWriter(os.fspath(uri), _cfg(config))


@contextlib.contextmanager
def atomic_local_path(path: str | os.PathLike) -> Iterator[str]:
    """A unique temporary path beside `path`, renamed onto it when the block ends normally.

    For native writers that want a file name (pyarrow, pyahocorasick, shutil): a reader or a
    retried task sees the old file or the whole new one, never a partial one. On an exception
    the temporary file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}-{_uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def current_umask() -> int:
    """The process umask: Linux reports it in /proc/self/status; elsewhere it is read by setting
    it and putting it back (there is no getter), which another thread creating a file in between
    would see, so only where /proc cannot tell."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_umask_lock = threading.Lock()


def write_bytes(uri: str | os.PathLike, data: bytes, config: StorageConfig | None = None) -> None:
    with open_write(uri, config) as f:
        f.write(data)


def makedirs(uri: str | os.PathLike) -> None:
    """Create a local directory and its parents (an existing one is fine). A no-op on S3: a
    prefix exists once an object is written under it, and every writer here creates its parents."""
    uri = os.fspath(uri)
    if not is_s3(uri):
        os.makedirs(_local(uri), exist_ok=True)


# --- Parquet tables and NumPy arrays (the bytes of pyarrow's and NumPy's own writers) ------------


def write_table(table, uri: str | os.PathLike, *, config: StorageConfig | None = None, **parquet_kwargs) -> int:
    """`pyarrow.parquet.write_table(table, ..., **parquet_kwargs)` to a local path or s3:// URI,
    atomically (open_write); returns the file's size. The bytes are those pq.write_table writes
    to a local path with the same arguments."""
    import pyarrow.parquet as pq

    with open_write(uri, config) as f:
        pq.write_table(table, f, **parquet_kwargs)
        return f.tell()


def read_table(uri: str | os.PathLike, *, config: StorageConfig | None = None, **kwargs):
    """`pyarrow.parquet.read_table(..., **kwargs)` of one Parquet file, local or s3:// (on S3 by
    ranged reads: only the footer and the row groups / columns asked for are fetched)."""
    import pyarrow.parquet as pq

    if not is_s3(os.fspath(uri)):  # Arrow's own file reader (memory-mapped, no Python in the reads)
        path = _local(uri)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {os.fspath(uri)}")
        return pq.read_table(path, memory_map=True, **kwargs)
    with open_read(uri, config) as f:
        return pq.read_table(f, **kwargs)


def save_npy(uri: str | os.PathLike, array, config: StorageConfig | None = None) -> None:
    """`numpy.save(..., allow_pickle=False)` to a local path or s3:// URI, atomically (the bytes
    np.save writes locally; the name is kept as given, np.save would append `.npy`)."""
    import numpy as np

    with open_write(uri, config) as f:
        np.save(f, array, allow_pickle=False)


def load_npy(uri: str | os.PathLike, config: StorageConfig | None = None):
    """The array saved at a local path or s3:// URI (`numpy.load`, never unpickling)."""
    import numpy as np

    with open_read(uri, config) as f:
        return np.load(f, allow_pickle=False)


# --- listing -----------------------------------------------------------------------------------


def exists(uri: str | os.PathLike, config: StorageConfig | None = None) -> bool:
    """True for an existing file/object, or a directory/prefix that holds at least one object."""
    uri = os.fspath(uri)
    if not is_s3(uri):
        return os.path.exists(_local(uri))
    config = _cfg(config)
    bucket, key = split_s3(uri)
    client = s3_client(config)
    if not key:
        try:
            client.head_bucket(Bucket=bucket)
            return True
        except _client_error() as exc:
            if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise _translate(exc, uri) from exc
    if not key.endswith("/"):
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except _client_error() as exc:
            if _error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise _translate(exc, uri) from exc
    try:
        resp = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
    except _client_error() as exc:
        if _error_code(exc) == "NoSuchBucket":
            return False
        raise _translate(exc, uri) from exc
    return resp.get("KeyCount", 0) > 0


def _iter_keys(bucket: str, prefix: str, config: StorageConfig) -> Iterator[dict]:
    paginator = s3_client(config).get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])
    except _client_error() as exc:
        raise _translate(exc, _s3_uri(bucket, prefix)) from exc


def _s3_under(bucket: str, key: str, config: StorageConfig) -> list[str]:
    """Keys equal to `key` or under `key/` (directory semantics: "out" never lists "out2/x")."""
    key = key.rstrip("/")
    if not key:
        return [o["Key"] for o in _iter_keys(bucket, "", config)]
    return [o["Key"] for o in _iter_keys(bucket, key, config) if o["Key"] == key or o["Key"].startswith(key + "/")]


def list_files(prefix_uri: str | os.PathLike, config: StorageConfig | None = None) -> list[str]:
    """Every file under a directory/prefix (recursive), sorted, as full URIs/paths.

    A file URI lists itself; a missing local directory or an empty prefix lists nothing; a
    missing bucket raises FileNotFoundError.
    """
    uri = os.fspath(prefix_uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return sorted(_s3_uri(bucket, k) for k in _s3_under(bucket, key, _cfg(config)))
    path = _local(uri)
    if os.path.isfile(path):
        return [path]
    out = []
    for root, _dirs, files in os.walk(path):
        out.extend(os.path.join(root, f) for f in files)
    return sorted(out)


def list_children(dir_uri: str | os.PathLike, config: StorageConfig | None = None) -> list[str]:
    """The names directly inside a directory/prefix (files and subdirectories), sorted.

    On S3 this is a delimited listing: one request per 1,000 names however many objects lie
    deeper (an output's thousands of parts cost nothing here). A missing directory or an empty
    prefix has no children.
    """
    uri = os.fspath(dir_uri)
    if not is_s3(uri):
        path = _local(uri)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    names: set[str] = set()
    paginator = s3_client(_cfg(config)).get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
    except _client_error() as exc:
        raise _translate(exc, uri) from exc
    return sorted(n for n in names if n)


def _split_glob(pattern: str) -> list[str]:
    return [s for s in pattern.split("/") if s != ""]


def _match_segments(pat: list[str], parts: list[str]) -> bool:
    """Glob match of path segments: `*`, `?`, `[..]` stay within a segment, `**` spans any."""
    if not pat:
        return not parts
    head = pat[0]
    if head == "**":
        return any(_match_segments(pat[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_segments(pat[1:], parts[1:])


def glob_paths(pattern: str | os.PathLike, config: StorageConfig | None = None) -> list[str]:
    """Files matching a glob (local or s3://), sorted. `*` stays in one path segment; `**` recurses."""
    pattern = os.fspath(pattern)
    if not is_s3(pattern):
        path = _local(pattern)
        return sorted(p for p in _glob.glob(path, recursive=True) if os.path.isfile(p))
    bucket, key_pattern = split_s3(pattern)
    first = min((i for i, ch in enumerate(key_pattern) if ch in _GLOB_CHARS), default=None)
    if first is None:
        return [pattern] if exists(pattern, config) and not key_pattern.endswith("/") else []
    literal = key_pattern[:first]
    pat = _split_glob(key_pattern)
    out = [
        _s3_uri(bucket, o["Key"])
        for o in _iter_keys(bucket, literal, _cfg(config))
        if _match_segments(pat, _split_glob(o["Key"]))
    ]
    return sorted(out)


def _side_file(rel: str) -> bool:
    """A path below a listed directory that readers skip: one of its parts starts with `_` or `.`
    (_SUCCESS, _stats/, _failed/, .tmp files), the convention of Spark, Hadoop and pyarrow."""
    return any(part.startswith(("_", ".")) for part in rel.replace(os.sep, "/").split("/") if part)


def _expand_one(spec: str, suffix: str | None, config: StorageConfig | None) -> list[str]:
    if spec.startswith("@"):
        with open_read(spec[1:], config) as f:
            lines = [ln.strip() for ln in f.read().decode("utf-8").splitlines()]
        return [p for ln in lines if ln and not ln.startswith("#") for p in _expand_one(ln, suffix, config)]
    if any(ch in spec for ch in _GLOB_CHARS):
        return [p for p in glob_paths(spec, config) if suffix is None or p.endswith(suffix)]
    found = list_files(spec, config)
    if not found:
        raise FileNotFoundError(f"not found (or an empty directory): {spec}")
    if is_s3(spec):
        bucket, key = split_s3(spec)
        base = _s3_uri(bucket, key.rstrip("/"))
        rels = [(p, p[len(base):]) for p in found]
    else:
        rels = [(p, os.path.relpath(p, _local(spec))) for p in found]
    # rel "" / ".": the spec is a file, taken as named whatever its name
    return [p for p, rel in rels
            if rel in ("", ".") or not _side_file(rel) and (suffix is None or p.endswith(suffix))]


def expand(specs, suffix: str | None = None, config: StorageConfig | None = None) -> list[str]:
    """Sorted unique data files named by one spec or a sequence of them, local or s3://.

    A spec is a file (taken as named), a directory or prefix (listed recursively, skipping every
    path with a `_`- or `.`-prefixed part below it, as Spark and pyarrow read a dataset: the
    side files of curate and download outputs live there), a glob (`*` within one path segment,
    `**` across) or `@FILE` (one spec a line, `#` comments). `suffix` keeps the listed and
    globbed names ending in it. Local results are absolute paths; s3a:// and s3n:// come back as
    s3://. FileNotFoundError for a file or directory that does not exist and when nothing matches
    at all: a typo must not process nothing.
    """
    specs = [specs] if isinstance(specs, str | os.PathLike) else list(specs)
    out = {os.path.abspath(p) if not is_s3(p) else p
           for s in specs for p in _expand_one(os.fspath(s), suffix, config)}
    if not out:
        what = f" ending in {suffix}" if suffix else ""
        raise FileNotFoundError(f"no files{what} match {[os.fspath(s) for s in specs]}")
    return sorted(out)


def delete_prefix(uri: str | os.PathLike, config: StorageConfig | None = None) -> int:
    """Delete a file/object or everything under a directory/prefix; returns how many files went."""
    uri = os.fspath(uri)
    if is_s3(uri):
        config = _cfg(config)
        bucket, key = split_s3(uri)
        if not key.strip("/"):
            raise ValueError(f"refusing to delete a whole bucket: {uri!r}")
        keys = _s3_under(bucket, key, config)
        client = s3_client(config)
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            resp = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise OSError(f"could not delete {len(resp['Errors'])} objects under {uri}: {first}")
        return len(keys)
    path = _local(uri)
    if os.path.isdir(path) and not os.path.islink(path):
        n = sum(len(files) for _r, _d, files in os.walk(path))
        shutil.rmtree(path)
        return n
    if os.path.lexists(path):
        os.unlink(path)
        return 1
    return 0


# --- downloads -----------------------------------------------------------------------------------


def default_cache_dir() -> str:
    return os.environ.get("WORLDCLIP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "worldclip"
    )


def download_to_local(
    uri: str | os.PathLike, local_path: str | os.PathLike | None = None, config: StorageConfig | None = None
) -> str:
    """A local path holding the file at `uri` (e.g. an automaton for fastText/pyahocorasick).

    A local URI with no `local_path` is returned as is. An S3 object is downloaded once per
    version: the object's ETag and size sit in a `<local_path>.etag` sidecar and a matching
    sidecar skips the download. Default target: `<cache dir>/s3/<bucket>/<key>`. Concurrent
    callers are safe (download to a temp file, then rename).
    """
    uri = os.fspath(uri)
    if not is_s3(uri):
        src = _local(uri)
        if not os.path.isfile(src):
            raise FileNotFoundError(f"no such file: {uri}")
        if local_path is None or os.path.abspath(os.fspath(local_path)) == os.path.abspath(src):
            return src
        dst = os.fspath(local_path)
        st = os.stat(src)
        if os.path.isfile(dst):
            dt = os.stat(dst)
            if dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
                return dst
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        with atomic_local_path(dst) as tmp:
            shutil.copy2(src, tmp)
        return dst
    config = _cfg(config)
    bucket, key = split_s3(uri)
    dst = os.fspath(local_path) if local_path is not None else os.path.join(default_cache_dir(), "s3", bucket, key)
    head = _head(bucket, key, config)
    stamp = f"{head.get('ETag', '')} {head['ContentLength']}"
    sidecar = dst + ".etag"
    if os.path.isfile(dst) and os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as f:
            if f.read() == stamp and os.path.getsize(dst) == int(head["ContentLength"]):
                return dst
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with atomic_local_path(dst) as tmp:
        try:
            s3_client(config).download_file(bucket, key, tmp, Config=_transfer_config(config))
        except _client_error() as exc:
            raise _translate(exc, uri) from exc
    with atomic_local_path(sidecar) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(stamp)
    return dst


# --- atomic publish -----------------------------------------------------------------------------


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{_uuid.uuid4().hex[:8]}"


def is_complete(uri: str | os.PathLike, config: StorageConfig | None = None) -> bool:
    """Whether a published directory is whole: its `_SUCCESS` marker exists."""
    return exists(join(uri, SUCCESS_MARKER), config)


@contextlib.contextmanager
def publish(dest_uri: str | os.PathLike, config: StorageConfig | None = None, run_id: str | None = None):
    """Yield a staging URI to write a directory of outputs into; commit it to `dest_uri` on success.

    Local: staging is a hidden sibling directory `.<name>.staging-<run-id>` (same filesystem),
    committed by rename; an existing dest is renamed aside first and removed after, so dest is
    always either the old or the new complete directory (or briefly absent), never a mix.
    S3: staging is `<parent>/_staging/<run-id>/<name>/`; commit removes dest's `_SUCCESS` (so
    readers see it as incomplete), copies the new objects, deletes stale ones, writes
    `_SUCCESS` last, then deletes the staging prefix.
    On an exception staging is removed and dest is left untouched. `_SUCCESS` is written in
    both cases, so :func:`is_complete` works the same everywhere.
    """
    dest_uri = os.fspath(dest_uri)
    config = _cfg(config)
    run_id = run_id or new_run_id()
    parent, name = _split_parent(dest_uri)
    if is_s3(dest_uri):
        staging = join(parent, STAGING_PREFIX, run_id, name)
        try:
            yield staging
            _commit_s3(staging, dest_uri, config)
        finally:
            try:
                delete_prefix(join(parent, STAGING_PREFIX, run_id), config)
            except Exception as exc:  # never hide the real error; a leftover staging prefix is harmless
                log.warning("could not remove staging %s: %s", staging, exc)
        return
    dest = os.path.join(parent, name)
    staging = os.path.join(parent, f".{name}.staging-{run_id}")
    try:
        yield staging
        _commit_local(staging, dest, run_id)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


RUNS_PREFIX = "_runs"  # publish_versioned: each run's files under <dest>/_runs/<run-id>/
PUBLISHED_KEY = "published"  # publish_versioned: the pointer's field naming the current run's prefix


@contextlib.contextmanager
def publish_versioned(dest_uri: str | os.PathLike, pointer: str, config: StorageConfig | None = None,
                      run_id: str | None = None, keep: int = 2):
    """Like :func:`publish`, for a directory whose readers go through one pointer file (its manifest).

    Local: exactly :func:`publish` (rename). S3 has no rename, and copying a crawl's outputs
    object by object would double the cost of writing them, so there the run writes straight
    under `<dest>/_runs/<run-id>/`, and is made visible by writing `<dest>/<pointer>` (the
    run's own `<pointer>` plus `"published": {"run": id, "prefix": "_runs/<id>"}`; one PUT,
    which S3 makes visible atomically) and then `<dest>/_SUCCESS`. A reader resolves the
    prefix through the pointer (:func:`published_root`), so it sees the old run or the new
    one, never a mix. After publishing, runs other than the newest `keep` are deleted (a
    reader still on the previous run keeps its files); a run that fails deletes its own prefix.
    """
    dest_uri = os.fspath(dest_uri)
    if not is_s3(dest_uri):
        with publish(dest_uri, config, run_id) as staging:
            yield staging
        return
    config = _cfg(config)
    run_id = run_id or new_run_id()
    dest = dest_uri.rstrip("/")
    prefix = f"{RUNS_PREFIX}/{run_id}"
    staging = join(dest, prefix)
    try:
        yield staging
        lease = _HELD_LEASES.get(dest)
        if lease is not None:  # a run whose lease was taken over must not publish over the new holder
            lease.check()
        doc = json.loads(read_bytes(join(staging, pointer), config))
        doc[PUBLISHED_KEY] = {"run": run_id, "prefix": prefix}
        write_bytes(join(dest, pointer), (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)
                                          + "\n").encode("utf-8"), config)
        write_bytes(join(dest, SUCCESS_MARKER), b"", config)
    except BaseException:
        try:
            delete_prefix(staging, config)
        except Exception as exc:  # never hide the real error; a leftover run prefix is collected later
            log.warning("could not remove the failed run %s: %s", staging, exc)
        raise
    try:
        _collect_runs(dest, run_id, keep, config)
    except Exception as exc:  # published already: old runs are removed by the next run
        log.warning("could not remove old runs under %s: %s", dest, exc)


def _collect_runs(dest: str, current: str, keep: int, config: StorageConfig) -> None:
    """Delete the run prefixes under `dest` but the newest `keep` (run ids sort by start time)."""
    ids = sorted(set(list_children(join(dest, RUNS_PREFIX), config)) - {current})
    for old in ids[:max(0, len(ids) - (keep - 1))]:
        delete_prefix(join(dest, RUNS_PREFIX, old), config)


# --- leases: one writer per S3 output --------------------------------------------------------------


class LeaseHeld(RuntimeError):
    """Another live holder has the lease."""


_HELD_LEASES: dict[str, S3Lease] = {}  # output URI -> the lease this process holds on it


class S3Lease:
    """An exclusive, expiring lease on one S3 object (S3's conditional writes, no other service).

    S3 has no locks and no rename, and two runs publishing one output would interleave their
    collection of old runs. The lease is an object created only if absent (`If-None-Match: *`);
    its holder rewrites it every `heartbeat_s` seconds, each time only if it is still the object
    it wrote (`If-Match` on its ETag), so a holder that lost the lease learns it (`lost`). A lease
    not rewritten for `stale_after_s` seconds (a driver killed without cleanup) is taken over by
    a conditional rewrite of exactly that stale object, so two contenders cannot both win.
    Staleness is judged by the server's clock (LastModified against the response's Date), never
    by comparing clocks of different hosts. Release deletes the object only if it is still ours.
    """

    def __init__(self, uri: str, owner: dict, stale_after_s: float = 600.0, heartbeat_s: float | None = 30.0,
                 config: StorageConfig | None = None, guards: str | None = None):
        self.uri, self.owner = os.fspath(uri), dict(owner)
        # the output this lease guards: publish_versioned checks it is still held before publishing
        self.guards = guards.rstrip("/") if guards else None
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.config = _cfg(config)
        self.bucket, self.key = split_s3(self.uri)
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self, beats: int) -> bytes:
        return json.dumps({**self.owner, "heartbeats": beats}, sort_keys=True).encode("utf-8")

    def _put(self, beats: int, **condition) -> str:
        resp = s3_client(self.config).put_object(Bucket=self.bucket, Key=self.key, Body=self._body(beats),
                                                 ContentType="application/json", **condition)
        return resp["ETag"]

    def _holder(self) -> tuple[dict, str, float] | None:
        """(the holder's document, its ETag, seconds since it was last written) or None when absent."""
        client = s3_client(self.config)
        try:
            resp = client.get_object(Bucket=self.bucket, Key=self.key)
        except _client_error() as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _translate(exc, self.uri) from exc
        raw = resp["Body"].read()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        from email.utils import parsedate_to_datetime

        now = parsedate_to_datetime(resp["ResponseMetadata"]["HTTPHeaders"]["date"])
        return (doc if isinstance(doc, dict) else {}), resp["ETag"], (now - resp["LastModified"]).total_seconds()

    def acquire(self) -> S3Lease:
        for _attempt in range(3):
            try:
                self.etag = self._put(0, IfNoneMatch="*")
                break
            except _client_error() as exc:
                if _error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise _translate(exc, self.uri) from exc
            holder = self._holder()
            if holder is None:  # released between our write and our read: try again
                continue
            doc, etag, age = holder
            if age < self.stale_after_s:
                who = ", ".join(f"{k} {doc[k]}" for k in ("run_id", "host", "pid", "started_at") if k in doc)
                raise LeaseHeld(f"{who or 'another run'} (last heard from {age:.0f} s ago; a lease is stale after "
                                f"{self.stale_after_s:.0f} s)")
            try:  # take over exactly the stale object: a contender that got there first wins
                self.etag = self._put(0, IfMatch=etag)
                log.warning("%s: took over a stale lease (%s, silent for %.0f s)", self.uri, doc, age)
                break
            except _client_error() as exc:
                if _error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"):
                    raise _translate(exc, self.uri) from exc
        else:
            raise LeaseHeld(f"{self.uri}: the lease changed hands while it was being acquired")
        if self.heartbeat_s:
            self._thread = threading.Thread(target=self._beat, name="s3-lease", daemon=True)
            self._thread.start()
        if self.guards:
            _HELD_LEASES[self.guards] = self
        return self

    def _beat(self) -> None:
        beats = 0
        while not self._stop.wait(self.heartbeat_s):
            beats += 1
            try:
                self.etag = self._put(beats, IfMatch=self.etag)
            except _client_error() as exc:
                if _error_code(exc) in ("PreconditionFailed", "NoSuchKey", "404"):
                    self.lost = True
                    log.error("%s: the lease was taken over (this run was silent longer than %.0f s)", self.uri,
                              self.stale_after_s)
                    return
                log.warning("%s: lease heartbeat failed (%s); retrying", self.uri, exc)
            except Exception as exc:  # a network error: the next beat retries
                log.warning("%s: lease heartbeat failed (%s); retrying", self.uri, exc)

    def check(self) -> None:
        """Raise LeaseHeld when the lease was lost (call before an irreversible step)."""
        if self.lost:
            raise LeaseHeld(f"{self.uri}: this run lost its lease to another run")

    def release(self) -> None:
        if self.guards and _HELD_LEASES.get(self.guards) is self:
            del _HELD_LEASES[self.guards]
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.etag is None or self.lost:
            return
        try:
            s3_client(self.config).delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except _client_error() as exc:  # taken over meanwhile: the new holder's lease stays
            log.warning("%s: lease not released (%s)", self.uri, _error_code(exc))
        self.etag = None

    def __enter__(self) -> S3Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def published_root(uri: str | os.PathLike, pointer: str, config: StorageConfig | None = None) -> str:
    """Where the files of a directory published by :func:`publish_versioned` are: `uri` itself
    (local, or a directory without a pointer), or the current run's prefix its pointer names."""
    uri = os.fspath(uri)
    if not is_s3(uri):
        return uri
    try:
        doc = json.loads(read_bytes(join(uri, pointer), config))
    except FileNotFoundError:
        return uri
    published = doc.get(PUBLISHED_KEY) if isinstance(doc, dict) else None
    return join(uri, published["prefix"]) if published else uri


def _commit_local(staging: str, dest: str, run_id: str) -> None:
    os.makedirs(staging, exist_ok=True)
    with open(os.path.join(staging, SUCCESS_MARKER), "wb"):
        pass
    if not os.path.lexists(dest):
        os.rename(staging, dest)
        return
    old = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.old-{run_id}")
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(old, dest)  # put the previous output back
        raise
    if os.path.isdir(old) and not os.path.islink(old):
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.unlink(old)


def _commit_s3(staging: str, dest: str, config: StorageConfig) -> None:
    s_bucket, s_key = split_s3(staging)
    d_bucket, d_key = split_s3(dest)
    s_key, d_key = s_key.rstrip("/"), d_key.rstrip("/")
    client = s3_client(config)
    new_rel = [k[len(s_key) + 1 :] for k in _s3_under(s_bucket, s_key, config) if k != s_key]
    new_rel = [r for r in new_rel if r != SUCCESS_MARKER]  # ours is written last, below
    old_keys = set(_s3_under(d_bucket, d_key, config))
    marker = f"{d_key}/{SUCCESS_MARKER}"
    if marker in old_keys:
        client.delete_object(Bucket=d_bucket, Key=marker)
    tconf = _transfer_config(config)

    def copy(rel: str) -> None:
        client.copy({"Bucket": s_bucket, "Key": f"{s_key}/{rel}"}, d_bucket, f"{d_key}/{rel}", Config=tconf)

    # Server-side copies in parallel (Spark outputs have hundreds of parts); list() re-raises errors.
    with ThreadPoolExecutor(max_workers=max(1, min(16, 2 * config.max_concurrency))) as pool:
        list(pool.map(copy, new_rel))
    stale = sorted(old_keys - {f"{d_key}/{r}" for r in new_rel} - {marker})
    for i in range(0, len(stale), 1000):
        client.delete_objects(
            Bucket=d_bucket, Delete={"Objects": [{"Key": k} for k in stale[i : i + 1000]], "Quiet": True}
        )
    client.put_object(Bucket=d_bucket, Key=marker, Body=b"")
