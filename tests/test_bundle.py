"""The bundle contract: manifest validation, the tar stream writer and the checking reader."""

from __future__ import annotations

import hashlib
import io
import tarfile
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
    ReceivedBundle,
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

    def writer(self, size: int | None = None) -> DirWriter:
        return DirWriter(self)


class DirWriter:
    def __init__(self, sink: DirSink) -> None:
        self.sink = sink
        self.buffer = io.BytesIO()

    def write(self, chunk: bytes) -> None:
        self.buffer.write(chunk)

    def hexdigest(self) -> str:
        return hashlib.sha256(self.buffer.getvalue()).hexdigest()

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


class CountingStream(io.RawIOBase):
    """A stream that says how many bytes the reader took from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = io.BytesIO(data)
        self.taken = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self.data.read(size)
        self.taken += len(chunk)
        return chunk


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return str(length).encode() + body


def _member(header: bytes, data: bytes) -> bytes:
    return header + data + b"\0" * (-len(data) % 512)


@pytest.mark.parametrize(
    ("kind", "words"),
    [(tarfile.XHDTYPE, "PAX"), (tarfile.XGLTYPE, "PAX global"), (tarfile.GNUTYPE_LONGNAME, "GNU")],
)
def test_a_huge_extended_header_is_refused_unread(tmp_path: Path, kind: bytes, words: str) -> None:
    size = 150 << 20
    stream = CountingStream(_header("././@LongLink", kind, size) + b"x" * (1 << 20))
    with pytest.raises(BundleError) as info:
        read_bundle_stream(stream, DirSink(tmp_path / "sink"))  # type: ignore[arg-type]
    assert info.value.code == "bad_bundle" and info.value.status == 400
    assert words in str(info.value) and "65536" in str(info.value)
    assert stream.taken == 512


def test_long_names_and_header_chains_are_refused(tmp_path: Path) -> None:
    long_path = _pax_record("path", "m" * 300)
    cases = [
        (_member(_header("pax", tarfile.XHDTYPE, len(long_path)), long_path), "over 256 bytes"),
        (_member(_header("L", tarfile.GNUTYPE_LONGNAME, 300), b"n" * 300), "over 256 bytes"),
        (
            b"".join(_member(_header("g", tarfile.XGLTYPE, 5), b"xxxxx") for _ in range(9)),
            "more than 8 extended",
        ),
        (_member(_header("pax", tarfile.XHDTYPE, 9), b"99 path=x"), "malformed"),
    ]
    for data, words in cases:
        with pytest.raises(BundleError, match=words) as info:
            _read(data + _header("model.py", tarfile.REGTYPE, 0) + b"\0" * 1024, DirSink(tmp_path))
        assert info.value.code == "bad_bundle"


def test_pax_and_gnu_names_still_read(
    bundle_factory: Callable[..., Bundle], tmp_path: Path
) -> None:
    """A bundle written by another tar tool: names from a PAX path record and a GNU long name,
    and a PAX size that overrides the header's."""
    bundle = bundle_factory(name="other tools")
    manifest = (bundle.directory / "manifest.json").read_bytes()
    parts = []
    for name, data in [
        ("manifest.json", manifest),
        *((n, p.read_bytes()) for n, p in bundle.files.items()),
    ]:
        if name == "model.py":
            parts.append(
                _member(
                    _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, len(name)), name.encode()
                )
            )
            parts.append(_member(_header("ignored", tarfile.REGTYPE, len(data)), data))
        else:
            records = _pax_record("path", name) + _pax_record("size", str(len(data)))
            parts.append(_member(_header("PaxHeader", tarfile.XHDTYPE, len(records)), records))
            parts.append(_member(_header("ignored", tarfile.REGTYPE, 0), data))
    received = _read(b"".join(parts) + b"\0" * 1024, DirSink(tmp_path / "sink"))
    assert isinstance(received, ReceivedBundle)
    assert sorted(received.received) == ["model.py", "weights.safetensors"]
