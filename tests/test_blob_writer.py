"""The blob writer: large blobs past the page cache, small ones buffered, every byte kept."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from easytensor_jupyter.inference.store import blob_writer
from easytensor_jupyter.inference.store.blob_writer import DIRECT_MIN_BYTES, BlobFileWriter
from easytensor_jupyter.inference.store.blobs import BlobStore, is_disk_full

# Odd sizes, so chunks straddle the staging buffer and the tail is not block-aligned.
LARGE = DIRECT_MIN_BYTES + 3 * 1_000_003 + 17
CHUNKS = (1 << 20, 65_537, 4096, 1, 300_001)


def _pieces(size: int, seed: int = 0) -> Iterator[bytes]:
    block = hashlib.sha256(str(seed).encode()).digest() * 40_000
    sent = 0
    i = 0
    while sent < size:
        n = min(CHUNKS[i % len(CHUNKS)], size - sent)
        start = (sent * 7) % (len(block) - n) if n < len(block) else 0
        yield block[start : start + n]
        sent += n
        i += 1


def _receive(store: BlobStore, size: int, seed: int = 0) -> tuple[BlobFileWriter, str]:
    writer = store.writer(size)
    digest = hashlib.sha256()
    for piece in _pieces(size, seed):
        digest.update(piece)
        writer.write(piece)
    assert writer.hexdigest() == digest.hexdigest()
    return writer, digest.hexdigest()


def _store(root: Path) -> BlobStore:
    store = BlobStore(root)
    store.prepare()
    return store


def _check(store: BlobStore, sha: str, size: int) -> None:
    path = store.path(sha)
    assert path.stat().st_size == size
    assert path.stat().st_mode & 0o777 == 0o444
    with path.open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == sha
    assert list(store.tmp_dir.iterdir()) == []


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="O_DIRECT is Linux only")
def test_a_large_blob_is_written_past_the_page_cache(tmp_path: Path) -> None:
    store = _store(tmp_path)
    writer, sha = _receive(store, LARGE)
    assert writer.direct
    assert fcntl.fcntl(writer.fd, fcntl.F_GETFL) & os.O_DIRECT
    writer.commit(sha)
    _check(store, sha, LARGE)


def test_a_small_blob_is_buffered(tmp_path: Path) -> None:
    store = _store(tmp_path)
    size = 5 * 1_000_003
    writer, sha = _receive(store, size)
    assert not writer.direct
    writer.commit(sha)
    _check(store, sha, size)


def test_buffered_bytes_reach_the_file_before_the_end(tmp_path: Path) -> None:
    """A crash mid-upload leaves what came in a temp file, which the next start removes."""
    store = _store(tmp_path)
    writer = store.writer(5 * 1_000_003)
    for piece in itertools.islice(_pieces(5 * 1_000_003), 12):
        writer.write(piece)
    deadline = time.monotonic() + 10
    while writer.tmp.stat().st_size == 0:
        assert time.monotonic() < deadline, "nothing was written before commit"
        time.sleep(0.01)
    writer.abort()
    assert not writer.tmp.exists()


def test_a_blob_of_unknown_size_is_buffered(tmp_path: Path) -> None:
    store = _store(tmp_path)
    writer = store.writer()
    assert not writer.direct
    writer.write(b"abc")
    writer.commit(hashlib.sha256(b"abc").hexdigest())
    _check(store, hashlib.sha256(b"abc").hexdigest(), 3)


def test_a_filesystem_refusing_the_flag_gets_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No filesystem here refuses O_DIRECT (tmpfs takes it too), so the refusal is simulated."""
    real = fcntl.fcntl

    def refuse(fd: int, cmd: int, arg: Any = 0) -> Any:
        if cmd == fcntl.F_SETFL and arg & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, cmd, arg)

    monkeypatch.setattr(blob_writer.fcntl, "fcntl", refuse)
    store = _store(tmp_path)
    writer, sha = _receive(store, LARGE)
    assert not writer.direct
    writer.commit(sha)
    _check(store, sha, LARGE)


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="O_DIRECT is Linux only")
def test_direct_writes_refused_midway_go_on_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem may take the flag and refuse the writes; the second one fails here."""
    real = os.write
    direct_writes = [0]

    def write(fd: int, data: Any) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            direct_writes[0] += 1
            if direct_writes[0] == 2:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data)

    monkeypatch.setattr(blob_writer.os, "write", write)
    store = _store(tmp_path)
    writer, sha = _receive(store, LARGE)
    writer.commit(sha)
    assert direct_writes[0] == 2 and not writer.direct
    _check(store, sha, LARGE)


def test_a_full_disk_is_reported_and_nothing_is_kept(tmpfs: Callable[[str], Path]) -> None:
    store = _store(tmpfs("40m"))
    writer = store.writer(64 << 20)
    digest = hashlib.sha256()
    with pytest.raises(OSError) as raised:
        for piece in _pieces(64 << 20):
            digest.update(piece)
            writer.write(piece)
        writer.commit(digest.hexdigest())
    assert is_disk_full(raised.value)
    writer.abort()
    assert list(store.tmp_dir.iterdir()) == []
    assert store.all_hashes() == set()


def test_abort_removes_the_temp_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    writer, _ = _receive(store, LARGE)
    writer.abort()
    assert list(store.tmp_dir.iterdir()) == []
    assert store.all_hashes() == set()
