"""What the registry hands out: plain frozen records, and the errors its callers catch.

Records are detached from the database on purpose: a route can keep one after the row is gone,
and nothing here can reach back into a connection.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from easytensor_jupyter.bundle import Manifest

__all__ = [
    "ConflictError",
    "CreateResult",
    "ModelRecord",
    "NotFoundError",
    "TokenRecord",
    "VersionRecord",
    "content_key",
    "now_iso",
    "slug",
]


class NotFoundError(LookupError):
    pass


class ConflictError(RuntimeError):
    pass


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def content_key(manifest: Manifest) -> str:
    """What makes two uploads the same model: files, class, constructor arguments, batching."""
    key = {
        "files": {name: entry.sha256 for name, entry in sorted(manifest.files.items())},
        "class_name": manifest.class_name,
        "init_args": manifest.init_args,
        "init_kwargs": manifest.init_kwargs,
        "batching": manifest.batching.model_dump() if manifest.batching else None,
    }
    return hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()


def slug(name: str) -> str:
    """The readable start of a model id; ids must stay URL-safe whatever the name is."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return text or "model"


@dataclass(frozen=True)
class VersionRecord:
    model_id: str
    version: int
    created_at: str
    manifest: Manifest
    size_bytes: int


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    default_version: int
    created_at: str
    versions: list[VersionRecord]
    scaling: dict[str, Any] | None = None

    def version(self, number: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == number), None)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk: a blob shared by several versions counts once."""
        sizes = {e.sha256: e.size for v in self.versions for e in v.manifest.files.values()}
        return sum(sizes.values())


@dataclass(frozen=True)
class TokenRecord:
    id: str
    model_id: str
    created_at: str
    revoked: bool
    last_used_at: str | None
    label: str | None = None


@dataclass(frozen=True)
class CreateResult:
    model_id: str
    name: str
    version: int
    unchanged: bool
