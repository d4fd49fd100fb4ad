"""Content-addressed files: ``blobs/ab/abcdef...``, read-only, written atomically.

A blob appears under its final name only after its bytes are fsynced, so a crash leaves at most
a temp file, which ``prepare`` removes. Uploads pin the blobs they receive or rely on, so a
concurrent delete cannot collect a blob that a version is about to refer to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from easytensor_jupyter.inference.store.blob_writer import BlobFileWriter

__all__ = ["BlobStore", "PinningSink", "StoreFull", "is_disk_full", "is_sha256"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StoreFull(Exception):
    """The store's disk (or quota, or file size limit) ran out mid-write; nothing was kept."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"the server's store is out of space ({why}): the upload was not saved and "
            "nothing of it was kept; free some space on the server, then upload again"
        )


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, EDQUOT or EFBIG (RLIMIT_FSIZE): the disk refused, not the data."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.match(value) is not None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        self.lock = threading.Lock()
        self._pins: Counter[str] = Counter()

    def prepare(self) -> None:
        """Create the folders and drop temp files left by a crash."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stray in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                stray.unlink()

    def path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.blob_dir / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return is_sha256(sha256) and self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def writer(self, size: int | None = None) -> BlobFileWriter:
        """A temp file for one blob of ``size`` bytes (if known: large ones skip the page cache)."""
        return BlobFileWriter(self.tmp_dir, self._publish, size)

    def all_hashes(self) -> set[str]:
        return {p.name for p in self.blob_dir.glob("??/*") if is_sha256(p.name)}

    def pin(self, sha256: str) -> None:
        with self.lock:
            self._pins[sha256] += 1

    def unpin(self, sha256: str) -> None:
        with self.lock:
            self._pins[sha256] -= 1
            if self._pins[sha256] <= 0:
                del self._pins[sha256]

    def pin_if_present(self, sha256: str) -> bool:
        with self.lock:
            if not self.has(sha256):
                return False
            self._pins[sha256] += 1
        # Fresh mtime: a server sharing this store sweeps only blobs unused for a while.
        with contextlib.suppress(OSError):
            os.utime(self.path(sha256))
        return True

    def collect(
        self, candidates: Iterable[str], referenced: Callable[[set[str]], set[str]]
    ) -> list[str]:
        """Remove candidates that no version references and no upload has pinned."""
        removed = []
        with self.lock:
            wanted = {c for c in candidates if is_sha256(c) and c not in self._pins}
            for sha in wanted - referenced(wanted):
                with contextlib.suppress(FileNotFoundError):
                    self.path(sha).unlink()
                    removed.append(sha)
        return removed

    def _publish(self, tmp: Path, sha256: str) -> None:
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        with self.lock:
            self._pins[sha256] += 1
            if target.exists():
                tmp.unlink()
                return
            tmp.replace(target)
        _fsync_dir(target.parent)


class PinningSink:
    """The ``bundle.BlobSink`` for one upload: remembers every blob it pinned, to release later."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.pinned: list[str] = []
        self.written: list[str] = []

    def has(self, sha256: str) -> bool:
        if self.store.pin_if_present(sha256):
            self.pinned.append(sha256)
            return True
        return False

    def writer(self, size: int | None = None) -> _TrackingWriter:
        return _TrackingWriter(self, size)

    def release(self) -> None:
        for sha in self.pinned:
            self.store.unpin(sha)
        self.pinned.clear()


class _TrackingWriter:
    def __init__(self, sink: PinningSink, size: int | None) -> None:
        self.sink = sink
        self.inner = sink.store.writer(size)

    def write(self, chunk: bytes) -> None:
        self.inner.write(chunk)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()

    def commit(self, sha256: str) -> None:
        self.inner.commit(sha256)
        self.sink.pinned.append(sha256)
        self.sink.written.append(sha256)

    def abort(self) -> None:
        self.inner.abort()
