"""Random access to the samples of uncompressed tar shards (the WebDataset layout).

A shard is read once, front to back, to list its samples: members are grouped into
samples by WebDataset's rule (``dir/key.ext``: the key is everything before the first dot
of the file name) and, for each member, the offset and size of its data are kept. After
that, one image is one positioned read (``os.pread``) from a file handle each process
keeps open, so DataLoader workers and DDP ranks read any sample without re-reading a
shard, and shared storage serves a few large files instead of millions of small ones.

Shards named by URL (``https://``, ``s3://``, ``pipe:...``: whatever ``webdataset.gopen``
opens) are first copied to a local cache, once per machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from webdataset.cache import check_tar_format, download
from webdataset.tariterators import base_plus_ext

from .config import is_url

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
CACHE_ENV = "CASCADE_SHARD_CACHE"
_MAX_OPEN = 128


@dataclass(frozen=True, slots=True)
class TarMember:
    """Where a sample's image lies inside an uncompressed tar shard on local disk."""

    path: str      # the local file (a downloaded copy for shards named by URL)
    offset: int    # of the member's data, in bytes
    size: int
    ext: str       # the member's extension (jpg, png, webp, ...)
    shard: str = ""   # the shard as data.root names it (a URL, or the same local path)


class ShardError(OSError):
    """A shard that cannot be fetched or read as an uncompressed tar file; the message says why."""


@dataclass
class Sample:
    """One sample of a shard: its key and, per extension, where its bytes are and the bytes.
    ``repeated`` names extensions stored twice under the key (the later copy is in ``parts``)."""

    key: str
    parts: dict[str, tuple[TarMember, bytes]] = field(default_factory=dict)
    repeated: list[str] = field(default_factory=list)


# ---- fetching --------------------------------------------------------------------------------------
def default_cache_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(os.path.expanduser(configured))
    env = os.environ.get(CACHE_ENV)
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "cascade" / "shards"


def cache_name(url: str) -> str:
    """A file name for ``url`` in the cache: unique per URL, readable by its last component."""
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1].split()[-1])[-80:]
    return f"{digest}-{tail or 'shard'}"


def local_copy(url: str, cache_dir: str | os.PathLike[str]) -> str:
    """The local file of shard ``url``: itself when local, else a cached download.

    Every process of a node may ask at once: a file lock lets one download while the others
    wait, and the copy appears under its final name only when complete.
    """
    if not is_url(url):
        return url
    if url.startswith("file:"):
        return urlparse(url).path
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / cache_name(url)
    if dest.is_file():
        return str(dest)
    with _file_lock(dest.with_name(dest.name + ".lock")):
        if not dest.is_file():
            try:
                download(url, str(dest))
            except Exception as exc:  # noqa: BLE001 - any fetch failure is reported the same way
                for tmp in cache.glob(f"{dest.name}.temp*"):
                    tmp.unlink(missing_ok=True)
                raise ShardError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
            if not check_tar_format(str(dest)):
                dest.unlink(missing_ok=True)
                raise ShardError(f"{url} did not download as a tar file")
    return str(dest)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent downloads are then possible but still atomic
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---- listing ---------------------------------------------------------------------------------------
def _split_name(name: str) -> tuple[str | None, str | None]:
    return base_plus_ext(name)


def iter_samples(path: str, skipped: list[str] | None = None, shard: str | None = None) -> Iterator[Sample]:
    """The samples of the shard at local ``path`` (named ``shard`` in data.root), in order, with their bytes.

    Members without an extension and WebDataset's ``__meta__`` entries are not samples:
    their names go to ``skipped``. Raises ShardError for a compressed, truncated or
    non-tar file (after yielding the samples read before the damage).
    """
    with open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            raise ShardError("compressed shard (gzip): samples cannot be read at random; store shards as plain "
                             ".tar (images are compressed already)")
        fh.seek(0)
        current: Sample | None = None
        try:
            with tarfile.open(fileobj=fh, mode="r|") as tar:
                for info in tar:
                    if not info.isreg():
                        continue
                    key, ext = _split_name(info.name)
                    base = os.path.basename(info.name)
                    if key is None or ext is None or (base.startswith("__") and base.endswith("__")):
                        if skipped is not None:
                            skipped.append(info.name)
                        continue
                    member_file = tar.extractfile(info)
                    data = member_file.read() if member_file is not None else b""
                    if current is None or current.key != key:
                        if current is not None:
                            yield current
                        current = Sample(key)
                    ext = ext.lower()
                    if ext in current.parts:
                        current.repeated.append(ext)
                    current.parts[ext] = (TarMember(path, info.offset_data, info.size, ext, shard or path), data)
        except tarfile.TarError as exc:
            raise ShardError(f"not a readable tar file: {exc}") from None
        if current is not None:
            yield current


# ---- reading ---------------------------------------------------------------------------------------
_handles: OrderedDict[str, int] = OrderedDict()
_handles_lock = threading.Lock()


def _forget_handles() -> None:
    # A forked DataLoader worker opens its own descriptors (pread needs no shared position,
    # but the lock may have been held by another thread of the parent at fork time).
    global _handles_lock
    for fd in _handles.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _handles.clear()
    _handles_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_handles)


def _handle(path: str) -> int:
    with _handles_lock:
        fd = _handles.get(path)
        if fd is not None:
            _handles.move_to_end(path)
            return fd
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        _handles[path] = fd
        while len(_handles) > _MAX_OPEN:
            _, old = _handles.popitem(last=False)
            os.close(old)
        return fd


def read_member(member: TarMember, key: str = "") -> bytes:
    """The bytes of ``member`` (one positioned read); OSError naming the shard if it is shorter now."""
    try:
        fd = _handle(member.path)
        if hasattr(os, "pread"):
            chunks, done = [], 0
            while done < member.size:
                chunk = os.pread(fd, member.size - done, member.offset + done)
                if not chunk:
                    break
                chunks.append(chunk)
                done += len(chunk)
            data = b"".join(chunks)
        else:
            with open(member.path, "rb") as fh:
                fh.seek(member.offset)
                data = fh.read(member.size)
    except OSError as exc:
        raise OSError(f"{key or member.path}: cannot read shard {member.path}: {exc}") from None
    if len(data) != member.size:
        raise OSError(f"{key or member.path}: shard {member.path} ends after {len(data)} of {member.size} bytes at "
                      f"offset {member.offset}; it changed since the scan, load the data again")
    return data
