"""The bundle contract: manifest validation, the tar stream writer and the checking reader."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from bundles import Bundle, raw_tar
from pydantic import ValidationError

from easytensor_jupyter.bundle import (
    BundleError,
    FileEntry,
    Limits,
    Manifest,
    read_bundle_stream,
    read_manifest_dir,
)


class DirSink:
    """A BlobSink that keeps blobs as files named by hash in a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.aborted = 0

    def has(self, sha256: str) -> bool:
        return (self.root / sha256).exists()

    def writer(self) -> DirWriter:
        return DirWriter(self)


class DirWriter:
    def __init__(self, sink: DirSink) -> None:
        self.sink = sink
        self.buffer = io.BytesIO()

    def write(self, chunk: bytes) -> None:
        self.buffer.write(chunk)

    def commit(self, sha256: str) -> None:
        (self.sink.root / sha256).write_bytes(self.buffer.getvalue())

    def abort(self) -> None:
        self.sink.aborted += 1


def _read(data: bytes, sink: DirSink, limits: Limits | None = None) -> object:
    return read_bundle_stream(io.BytesIO(data), sink, limits)


def test_round_trip(bundle_factory: Callable[..., Bundle], tmp_path: Path) -> None:
    bundle = bundle_factory(name="round trip")
    sink = DirSink(tmp_path / "sink")
    received = read_bundle_stream(io.BytesIO(bundle.tar_bytes()), sink)
    assert received.manifest == bundle.manifest
    assert sorted(received.received) == ["model.py", "weights.safetensors"]
    assert received.reused == []
    for name, entry in bundle.manifest.files.items():
        assert (sink.root / entry.sha256).read_bytes() == bundle.files[name].read_bytes()
    assert received.bytes_received == sum(e.size for e in bundle.manifest.files.values())

    skip = frozenset(e.sha256 for e in bundle.manifest.files.values())
    again = read_bundle_stream(io.BytesIO(bundle.tar_bytes(skip)), sink)
    assert again.received == [] and sorted(again.reused) == ["model.py", "weights.safetensors"]


def test_stream_is_chunked(bundle_factory: Callable[..., Bundle]) -> None:
    bundle = bundle_factory(name="chunks", init_kwargs={"n_in": 600, "n_out": 600})
    chunks = list(bundle.stream())
    assert max(len(c) for c in chunks) <= 1 << 20
    assert len(b"".join(chunks)) % 512 == 0


@pytest.mark.parametrize(
    ("build", "code", "words"),
    [
        (lambda m, p: b"garbage" * 200, "bad_bundle", "not a tar"),
        (lambda m, p: raw_tar([("model.py", None, p)]), "bad_bundle", "first bundle member"),
        (
            lambda m, p: raw_tar([("manifest.json", None, m), ("../x.py", None, b"")]),
            "bad_bundle",
            "not listed",
        ),
        (
            lambda m, p: raw_tar([("manifest.json", None, m), ("/abs/model.py", None, b"")]),
            "bad_bundle",
            "not listed",
        ),
        (
            lambda m, p: raw_tar([("manifest.json", None, m), ("model.py", b"/etc/passwd", b"")]),
            "bad_bundle",
            "symlink",
        ),
        (
            lambda m, p: raw_tar(
                [("manifest.json", None, m), ("model.py", None, p), ("model.py", None, p)]
            ),
            "bad_bundle",
            "twice",
        ),
        (
            lambda m, p: raw_tar([("manifest.json", None, m), ("model.py", None, p + b"!")]),
            "hash_mismatch",
            "bytes but the manifest says",
        ),
        (
            lambda m, p: raw_tar([("manifest.json", None, m), ("model.py", None, p[:-1] + b"!")]),
            "hash_mismatch",
            "sha256",
        ),
        (
            lambda m, p: raw_tar([("manifest.json", None, m), ("model.py", None, p)]),
            "missing_files",
            "weights.safetensors",
        ),
        (
            lambda m, p: raw_tar([("manifest.json", None, b'{"name": "x"}')]),
            "bad_manifest",
            "class_name",
        ),
        (lambda m, p: b"", "bad_bundle", ""),
    ],
)
def test_bad_streams(
    bundle_factory: Callable[..., Bundle],
    tmp_path: Path,
    build: Callable[[bytes, bytes], bytes],
    code: str,
    words: str,
) -> None:
    bundle = bundle_factory(name="bad", seed=7)
    manifest = (bundle.directory / "manifest.json").read_bytes()
    model_py = bundle.files["model.py"].read_bytes()
    sink = DirSink(tmp_path / "sink")
    with pytest.raises(BundleError) as info:
        _read(build(manifest, model_py), sink)
    assert info.value.code == code and words in str(info.value)
    committed = (sink.root / bundle.manifest.files["model.py"].sha256).exists()
    assert committed == (code == "missing_files" or words == "twice")


def test_truncated_stream(bundle_factory: Callable[..., Bundle], tmp_path: Path) -> None:
    data = bundle_factory(name="cut").tar_bytes()
    sink = DirSink(tmp_path / "sink")
    with pytest.raises(BundleError, match="truncated"):
        _read(data[: len(data) // 2], sink)
    assert sink.aborted == 1


def test_file_limit(bundle_factory: Callable[..., Bundle], tmp_path: Path) -> None:
    data = bundle_factory(name="limit").tar_bytes()
    with pytest.raises(BundleError) as info:
        _read(data, DirSink(tmp_path / "sink"), Limits(max_file_bytes=10))
    assert info.value.status == 413


def test_manifest_rules() -> None:
    entry = FileEntry(sha256="0" * 64, size=1)
    base = {
        "name": "m",
        "class_name": "M",
        "files": {"model.py": entry, "weights.safetensors": entry},
    }
    assert Manifest(**base).format_version == 1
    with pytest.raises(ValidationError, match="unknown files"):
        Manifest(**{**base, "files": {**base["files"], "../evil": entry}})
    with pytest.raises(ValidationError, match="missing required files"):
        Manifest(**{**base, "files": {"model.py": entry}})
    with pytest.raises(ValidationError, match="format_version"):
        Manifest(**{**base, "format_version": 2})
    with pytest.raises(ValidationError):
        Manifest(**{**base, "class_name": "not a name"})
    with pytest.raises(BundleError) as info:
        Manifest.parse_bytes(b"[]")
    assert info.value.code == "bad_manifest" and info.value.status == 422


def test_read_manifest_dir(bundle_factory: Callable[..., Bundle]) -> None:
    bundle = bundle_factory(name="dir")
    assert read_manifest_dir(bundle.directory) == bundle.manifest
    path = bundle.files["model.py"]
    path.write_text(path.read_text() + "# changed\n")
    with pytest.raises(BundleError, match="does not match"):
        read_manifest_dir(bundle.directory)
    path.unlink()
    with pytest.raises(BundleError, match="missing"):
        read_manifest_dir(bundle.directory)
    assert hashlib.sha256(b"").hexdigest()
