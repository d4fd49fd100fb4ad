"""Where things live, and which server and key to use.

Explicit arguments beat environment variables, which beat files under ``EASYTENSOR_HOME``.
The admin key file, the embedded server's info file and the server records (``servers.py``) are
how a client on the same machine finds a local server without being told.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PORT",
    "ServerInfo",
    "admin_key_path",
    "default_store",
    "ensure_admin_key",
    "home",
    "pid_alive",
    "read_admin_key",
    "read_server_info",
    "remove_server_info",
    "resolve_api_key",
    "resolve_url",
    "server_info_path",
    "write_private_file",
    "write_server_info",
]

DEFAULT_PORT = 8765
ADMIN_KEY_PREFIX = "et_admin_"


def home() -> Path:
    raw = os.environ.get("EASYTENSOR_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".easytensor"


def default_store(base: Path | None = None) -> Path:
    return (base or home()) / "store"


def admin_key_path(base: Path | None = None) -> Path:
    return (base or home()) / "admin_key"


def server_info_path(base: Path | None = None) -> Path:
    return (base or home()) / "server.json"


def write_private_file(path: Path, text: str) -> None:
    """Write atomically with mode 0600 from the first byte, so no reader sees it world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_admin_key(base: Path | None = None) -> str | None:
    try:
        return admin_key_path(base).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def ensure_admin_key(base: Path | None = None) -> tuple[str, bool]:
    """Return ``(key, created)``; the key comes from the environment, the key file, or is new."""
    env_key = os.environ.get("EASYTENSOR_API_KEY")
    if env_key:
        return env_key, False
    existing = read_admin_key(base)
    if existing:
        return existing, False
    key = ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)
    write_private_file(admin_key_path(base), key + "\n")
    return key, True


@dataclass(frozen=True)
class ServerInfo:
    url: str
    pid: int
    store: str
    owner_pid: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def write_server_info(info: ServerInfo, base: Path | None = None) -> None:
    write_private_file(server_info_path(base), info.to_json())


def read_server_info(base: Path | None = None) -> ServerInfo | None:
    """The embedded server's info, or None if there is none or its process is gone."""
    path = server_info_path(base)
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        info = ServerInfo(**raw)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if not pid_alive(info.pid):
        return None
    return info


def remove_server_info(pid: int, base: Path | None = None) -> None:
    """Remove the info file only if it still describes ``pid`` (another server may have replaced it)."""
    path = server_info_path(base)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return
    if raw.get("pid") == pid:
        path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def resolve_url(explicit: str | None = None) -> str | None:
    """The server URL from the argument, ``EASYTENSOR_URL``, or the one server running here.

    Several running servers raise ``servers.SeveralServers``: guessing could send a model to the
    wrong one.
    """
    from easytensor_jupyter import servers

    resolved = servers.resolve(explicit)
    return resolved.url if resolved else None


def resolve_api_key(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit
    return os.environ.get("EASYTENSOR_API_KEY") or read_admin_key()
