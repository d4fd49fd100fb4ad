"""Query tokens kept for reuse, so deploying the same model again does not mint another one.

One token per model and origin (a notebook, ``easytensor deploy``): kept in memory for the
kernel's life and in ``$EASYTENSOR_HOME/query_tokens.json`` (mode 0600, the same user only) for
the next kernel. A kept token is reused only while the server still lists it as active, so a
revoked one is replaced, never offered again. Anything shown in a notebook shows ``mask(token)``.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from easytensor_jupyter import config

__all__ = [
    "KeptToken",
    "TokenKeeper",
    "cli_label",
    "mask",
    "notebook_origin",
    "notebook_token",
    "tokens_path",
]

FILE_NAME = "query_tokens.json"


def tokens_path(base: Path | None = None) -> Path:
    return (base or config.home()) / FILE_NAME


def mask(token: str) -> str:
    """Enough to tell tokens apart (``et_q_AbCd…wXyZ``), nowhere near enough to use one."""
    prefix = "et_q_" if token.startswith("et_q_") else ""
    body = token[len(prefix) :]
    if len(body) < 12:
        return prefix + "\u2026"
    return f"{prefix}{body[:4]}\u2026{body[-4:]}"


def notebook_origin(notebook: str | None) -> str:
    return f"notebook:{notebook}" if notebook else "notebook"


def cli_label(command: str) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"CLI: {command} ({user}@{socket.gethostname()})"


class _TokenApi(Protocol):
    def list_tokens(self, model_id: str) -> list[dict[str, Any]]: ...

    def create_token(self, model_id: str, label: str | None = None) -> dict[str, str]: ...


@dataclass(frozen=True)
class KeptToken:
    model_id: str
    origin: str
    token_id: str
    token: str
    label: str
    server: str = ""
    model_name: str = ""
    saved_at: str = ""

    @property
    def masked(self) -> str:
        return mask(self.token)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenKeeper:
    """Kept tokens of one ``EASYTENSOR_HOME`` (read when used, so a changed home is followed)."""

    def __init__(self, base: Path | None = None) -> None:
        self._base = base
        self._memory: dict[tuple[str, str], KeptToken] = {}

    @property
    def path(self) -> Path:
        return tokens_path(self._base)

    def get(self, model_id: str, origin: str) -> KeptToken | None:
        kept = self._memory.get((model_id, origin))
        if kept is not None:
            return kept
        return next((t for t in self._read() if (t.model_id, t.origin) == (model_id, origin)), None)

    def for_model(self, model: str) -> list[KeptToken]:
        """Kept tokens of a model (by id or name), the most recently saved first."""
        found = [t for t in self._read() if model in (t.model_id, t.model_name)]
        return sorted(found, key=lambda t: t.saved_at, reverse=True)

    def put(self, kept: KeptToken) -> KeptToken:
        kept = replace(kept, saved_at=_now())
        self._memory[(kept.model_id, kept.origin)] = kept
        with self._locked():
            others = [
                t for t in self._read() if (t.model_id, t.origin) != (kept.model_id, kept.origin)
            ]
            self._write([*others, kept])
        return kept

    def obtain(
        self,
        client: _TokenApi,
        model_id: str,
        *,
        origin: str,
        label: str,
        server: str = "",
        model_name: str = "",
    ) -> tuple[KeptToken, bool]:
        """The kept token when the server still lists it as active, else a new labelled one.

        Returns ``(token, reused)``.
        """
        kept = self.get(model_id, origin)
        if kept is not None:
            listed = {t["id"]: t for t in client.list_tokens(model_id)}
            entry = listed.get(kept.token_id)
            if entry is not None and not entry.get("revoked"):
                if (kept.server, kept.model_name) != (server, model_name):
                    kept = self.put(replace(kept, server=server, model_name=model_name))
                self._memory[(model_id, origin)] = kept
                return kept, True
        created = client.create_token(model_id, label)
        fresh = KeptToken(
            model_id=model_id,
            origin=origin,
            token_id=created["id"],
            token=created["token"],
            label=label,
            server=server,
            model_name=model_name,
        )
        return self.put(fresh), False

    def _read(self) -> list[KeptToken]:
        try:
            raw: Any = json.loads(self.path.read_text(encoding="utf-8"))
            return [KeptToken(**entry) for entry in raw.get("tokens", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, AttributeError):
            # A damaged file only costs new tokens; it is rewritten on the next save.
            return []

    def _write(self, tokens: list[KeptToken]) -> None:
        payload = {"tokens": [asdict(t) for t in tokens]}
        config.write_private_file(self.path, json.dumps(payload, indent=1) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{FILE_NAME}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _where(shell: Any) -> tuple[str | None, int | None]:
    """The notebook (Jupyter and VS Code say which) and the number of the running cell."""
    notebook = os.environ.get("JPY_SESSION_NAME") or shell.user_ns.get("__vsc_ipynb_file__")
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    # The running cell is the last one stored; execution_count may already be the next one.
    cell = len(history) - 1 if history else None
    return (str(notebook) if notebook else None), cell


def notebook_token(
    keeper: TokenKeeper, client: Any, result: Any, shell: Any
) -> tuple[str | None, bool]:
    """A notebook's token for a model just deployed: ``(secret, reused)``, labelled with the
    notebook and the cell that deployed it.

    The upload already succeeded, so a failure here is said and not raised.
    """
    from easytensor_jupyter.errors import EasyTensorError

    notebook, cell = _where(shell)
    shown = Path(notebook).name if notebook else "(unnamed)"
    label = f"notebook {shown}, cell {cell}" if cell else f"notebook {shown}"
    try:
        kept, reused = keeper.obtain(
            client,
            result.id,
            origin=notebook_origin(notebook),
            label=label,
            server=client.url,
            model_name=result.name,
        )
    except EasyTensorError as exc:
        print(f"Deployed, but no query token could be made: {exc}")
        return None, False
    return kept.token, reused
