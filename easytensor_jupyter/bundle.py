"""The model bundle: the one contract between client and server.

A bundle is ``manifest.json`` plus a few files with fixed names (model, weights, constants,
state, shipped local modules). On the wire it is a
tar stream whose first member is the manifest; a file whose hash the server already has may be
left out. Fixed names make path traversal and symlinks impossible to express rather than
something to filter, and hashing while streaming means neither side holds a whole file.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from easytensor_jupyter.tarstream import TarStreamError, TarStreamReader

__all__ = [
    "CONSTANTS_FILE",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_FILE",
    "MODULES_FILE",
    "STATE_FILES",
    "WEIGHTS_FILE",
    "Batching",
    "BlobSink",
    "BlobWriter",
    "BundleError",
    "FileEntry",
    "Limits",
    "Manifest",
    "ReceivedBundle",
    "Sample",
    "bundle_stream_size",
    "file_entry",
    "iter_bundle_stream",
    "joined_chunks",
    "read_bundle_stream",
    "read_manifest_dir",
    "sha256_file",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.py"
WEIGHTS_FILE = "weights.safetensors"
CONSTANTS_FILE = "constants.safetensors"
STATE_FILES = ("state.json", "state.safetensors", "state.skops")
MODULES_FILE = "modules.zip"
BUNDLE_FILES = (MODEL_FILE, WEIGHTS_FILE, CONSTANTS_FILE, *STATE_FILES, MODULES_FILE)
REQUIRED_FILES = (MODEL_FILE, WEIGHTS_FILE)
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE

InputKind = Literal["text", "bytes", "image", "json", "unknown"]


class BundleError(ValueError):
    """A bundle that is malformed or does not match its manifest; ``code`` is the API error code."""

    def __init__(self, message: str, code: str = "bad_bundle", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Sample(BaseModel):
    """A sample input (JSON; bytes as ``{"b64": ...}``) and the live model's answer to it."""

    model_config = ConfigDict(extra="forbid")
    input: Any
    output: Any = None
    stream_output: Any = None
    """For a streaming model, its stream of the sample joined (``joined_chunks``)."""


class Batching(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(default=16, ge=1, le=4096)
    max_wait_ms: float = Field(default=2.0, ge=0, le=10_000)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=200)
    class_name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    init_args: list[Any] = Field(default_factory=list)
    init_kwargs: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]
    torch_version: str | None = None
    python_version: str | None = None
    requirements: list[str] = Field(default_factory=list)
    sample: Sample | None = None
    input_kind: InputKind = "unknown"
    batching: Batching | None = None
    streaming: bool = False
    provenance: dict[str, Any] = Field(default_factory=dict)
    created_by: str | None = None
    fingerprint: dict[str, Any] | None = None
    """Hashes per method, helper, tensor and data file (``fingerprint.py``); versions uploaded
    before it was recorded have none."""

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(
                f"format_version {value} is not supported (this server reads {FORMAT_VERSION})"
            )
        return value

    @field_validator("files")
    @classmethod
    def _known_files(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        unknown = sorted(set(value) - set(BUNDLE_FILES))
        if unknown:
            raise ValueError(f"unknown files {unknown}; a bundle holds only {list(BUNDLE_FILES)}")
        missing = [name for name in REQUIRED_FILES if name not in value]
        if missing:
            raise ValueError(f"missing required files {missing}")
        return value

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode("utf-8")

    @classmethod
    def parse_bytes(cls, raw: bytes) -> Manifest:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
                for err in exc.errors()
            )
            raise BundleError(
                f"manifest.json is invalid: {problems}", "bad_manifest", 422
            ) from None


def joined_chunks(chunks: list[Any]) -> Any:
    """What a stream amounts to: its strings concatenated, else the list of its chunks."""
    if chunks and all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    return list(chunks)


class Limits(BaseModel):
    max_manifest_bytes: int = 4 << 20
    max_file_bytes: int = 64 << 30


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size)


def read_manifest_dir(directory: Path) -> Manifest:
    """Read a bundle directory's manifest and check every listed file against its hash."""
    manifest = Manifest.parse_bytes((directory / MANIFEST_NAME).read_bytes())
    for name, entry in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{name} is listed in the manifest but missing from {directory}")
        actual = file_entry(path)
        if actual != entry:
            raise BundleError(f"{name} does not match its manifest hash", "hash_mismatch", 422)
    return manifest


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def bundle_stream_size(manifest: Manifest, skip_hashes: frozenset[str] = frozenset()) -> int:
    """The exact byte length of ``iter_bundle_stream``'s output, for a Content-Length header."""
    raw = len(manifest.to_json_bytes())
    total = len(_header(MANIFEST_NAME, raw)) + raw + len(_padding(raw))
    for name, entry in manifest.files.items():
        if entry.sha256 not in skip_hashes:
            total += len(_header(name, entry.size)) + entry.size + len(_padding(entry.size))
    return total + 2 * BLOCK


def iter_bundle_stream(
    manifest: Manifest, files: Mapping[str, Path], skip_hashes: frozenset[str] = frozenset()
) -> Iterator[bytes]:
    """Yield the bundle as tar chunks, reading each file in 1 MiB pieces.

    Files whose hash is in ``skip_hashes`` (the server already has them) are left out.
    """
    raw = manifest.to_json_bytes()
    yield _header(MANIFEST_NAME, len(raw)) + raw + _padding(len(raw))
    for name, entry in manifest.files.items():
        if entry.sha256 in skip_hashes:
            continue
        path = files[name]
        yield _header(name, entry.size)
        sent = 0
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                sent += len(chunk)
                yield chunk
        if sent != entry.size:
            raise BundleError(f"{path} changed size while it was being sent")
        yield _padding(sent)
    yield b"\0" * (2 * BLOCK)


class BlobWriter(Protocol):
    """One file being stored; it hashes what it writes (the store does so in large blocks)."""

    def write(self, chunk: bytes) -> None: ...
    def hexdigest(self) -> str: ...
    def commit(self, sha256: str) -> None: ...
    def abort(self) -> None: ...


class BlobSink(Protocol):
    """Where received files go; the store implements it with content-addressed files."""

    def has(self, sha256: str) -> bool: ...
    def writer(self, size: int | None = None) -> BlobWriter: ...


class ReceivedBundle(BaseModel):
    manifest: Manifest
    received: list[str]
    reused: list[str]
    bytes_received: int


def read_bundle_stream(
    stream: IO[bytes], sink: BlobSink, limits: Limits | None = None
) -> ReceivedBundle:
    """Read a tar bundle from ``stream`` into ``sink``, checking every file against the manifest.

    Raises BundleError and leaves nothing committed for a file that fails its check. Files
    committed before a later failure are plain content-addressed blobs that no version refers to.
    Every tar header and name is bounded (``tarstream``), so no header costs more than 64 KiB.
    """
    limits = limits or Limits()
    tar = TarStreamReader(stream)
    manifest: Manifest | None = None
    received: list[str] = []
    total = 0
    try:
        while (member := tar.next()) is not None:
            name = member.name
            if not member.isreg():
                raise BundleError(
                    f"bundle member {name!r} is a {member.describe()}; only plain files are allowed"
                )
            if manifest is None:
                if name != MANIFEST_NAME:
                    raise BundleError(
                        f"the first bundle member must be {MANIFEST_NAME}, not {name!r}"
                    )
                if member.size > limits.max_manifest_bytes:
                    raise BundleError("manifest.json is too large", "too_large", 413)
                manifest = Manifest.parse_bytes(tar.read_all())
                continue
            if name not in manifest.files:
                raise BundleError(
                    f"bundle member {name!r} is not listed in manifest.json (unsafe or unknown path)"
                )
            if name in received:
                raise BundleError(f"bundle member {name!r} appears twice")
            entry = manifest.files[name]
            if member.size != entry.size:
                raise BundleError(
                    f"{name} is {member.size} bytes but the manifest says {entry.size}",
                    "hash_mismatch",
                    422,
                )
            if member.size > limits.max_file_bytes:
                raise BundleError(f"{name} is larger than the limit", "too_large", 413)
            total += _copy_checked(tar, name, entry, sink)
            received.append(name)
    except TarStreamError as exc:
        raise BundleError(str(exc)) from None
    if manifest is None:
        raise BundleError("the bundle is empty: it has no manifest.json")
    reused = [n for n in manifest.files if n not in received]
    absent = [n for n in reused if not sink.has(manifest.files[n].sha256)]
    if absent:
        raise BundleError(
            f"the bundle is missing {absent} and the server does not have them",
            "missing_files",
            422,
        )
    return ReceivedBundle(manifest=manifest, received=received, reused=reused, bytes_received=total)


def _copy_checked(fh: TarStreamReader, name: str, entry: FileEntry, sink: BlobSink) -> int:
    writer = sink.writer(entry.size)
    size = 0
    try:
        while chunk := fh.read(CHUNK):
            writer.write(chunk)
            size += len(chunk)
        if size != entry.size:
            raise BundleError(f"{name} is truncated: got {size} of {entry.size} bytes")
        if writer.hexdigest() != entry.sha256:
            raise BundleError(
                f"{name} does not match its sha256 in manifest.json", "hash_mismatch", 422
            )
        writer.commit(entry.sha256)
    except BaseException:
        writer.abort()
        raise
    return size
