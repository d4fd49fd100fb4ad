"""Who is calling: the admin key, or a query token that belongs to one model.

Query tokens are stored only as their sha256, so the database never holds a usable secret;
the lookup is by hash, which leaks nothing about the token through timing, and the admin key is
compared with ``hmac.compare_digest``. ``last_used_at`` is kept in memory and written in batches,
so a prediction never waits on a disk write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from easytensor_jupyter.inference.api.errors import APIError
from easytensor_jupyter.inference.store import Store, now_iso

__all__ = [
    "TOKEN_PREFIX",
    "UNKNOWN_CREDENTIAL",
    "Authenticator",
    "Principal",
    "hash_token",
    "new_query_token",
]

TOKEN_PREFIX = "et_q_"
_BEARER = "bearer "
# One wording whatever the route (/v1 or /query/) and header: a wrong secret is a wrong secret.
UNKNOWN_CREDENTIAL = (
    "unknown key or token: it is neither this server's admin key nor one of its query tokens"
)


def new_query_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "query"]
    model_id: str | None = None
    token_id: str | None = None
    label: str | None = None

    def may_query(self, model_id: str) -> bool:
        return self.kind == "admin" or self.model_id == model_id


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header and header[: len(_BEARER)].lower() == _BEARER:
        value = header[len(_BEARER) :].strip()
        if value:
            return value
    token = request.headers.get("accesstoken")
    return token.strip() if token and token.strip() else None


class Authenticator:
    def __init__(self, admin_key: str, store: Store) -> None:
        self._admin = admin_key.encode("utf-8")
        self._store = store
        self.last_used: dict[str, str] = {}
        self._second = (0, "")

    def authenticate(self, request: Request) -> Principal:
        credential = _credential(request)
        if credential is None:
            raise APIError(
                401,
                "missing_credentials",
                "send a key or token as 'Authorization: Bearer ...' (or a query token as 'accessToken')",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if hmac.compare_digest(credential.encode("utf-8"), self._admin):
            return Principal("admin")
        message, code = UNKNOWN_CREDENTIAL, "invalid_credentials"
        if credential.startswith(TOKEN_PREFIX):
            record = self._store.token_by_hash(hash_token(credential))
            if record is not None and not record.revoked:
                self.last_used[record.id] = self._now()
                return Principal("query", record.model_id, record.id, record.label)
            if record is not None:
                message, code = "this query token was revoked", "token_revoked"
            else:
                code = "invalid_token"
        raise APIError(401, code, message, headers={"WWW-Authenticate": "Bearer"})

    def _now(self) -> str:
        """``now_iso()``, formatted once per second rather than once per query."""
        second = int(time.time())
        if self._second[0] != second:
            self._second = (second, now_iso())
        return self._second[1]

    def require_admin(self, request: Request) -> Principal:
        principal = self.authenticate(request)
        if principal.kind != "admin":
            raise APIError(
                403,
                "admin_required",
                "this needs the admin key; a query token can only make predictions",
            )
        return principal

    def flush_last_used(self) -> None:
        pending, self.last_used = self.last_used, {}
        self._store.touch_tokens(pending)
