"""REST routes for the lab panel under ``<base_url>/easytensor/api/``.

Every route needs Jupyter's own login; the browser never sees the inference server's admin key.
Errors keep the inference server's shape and status so the panel shows the server's own words.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from easytensor_jupyter.client import Client
from easytensor_jupyter.serverext.proxy import ProxyError, Upstream
from easytensor_jupyter.serverext.streaming import NDJSON, pass_stream

__all__ = ["API_PREFIX", "PANEL_LABEL", "UPSTREAM_SETTING", "route_table"]

API_PREFIX = ("easytensor", "api")
UPSTREAM_SETTING = "easytensor_upstream"
_RAW_TYPES = ("text/plain", "application/octet-stream")
PANEL_LABEL = "JupyterLab side panel"


def _q(model_id: str) -> str:
    return quote(model_id, safe="")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown HTTP Error"


class _Base(APIHandler):
    auth_resource = "easytensor"

    @property
    def upstream(self) -> Upstream:
        upstream: Upstream = self.settings[UPSTREAM_SETTING]
        return upstream

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ProxyError):
            error = {"code": exc.code, "message": exc.message, "detail": exc.detail}
        else:
            message = _reason(status_code)
            if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            elif exc is not None and not isinstance(exc, tornado.web.HTTPError):
                message = "Internal error in the EasyTensor Jupyter extension"
            code = ProxyError(status_code, message).code
            error = {"code": code, "message": message, "detail": None}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": error}))

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        if status == 204:
            self.finish()
        else:
            self.finish(json.dumps(payload))

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise ProxyError(400, f"The request body is not valid JSON: {exc}") from exc


class StatusHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.upstream.status())


class ModelsHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"models": await self.upstream.call(Client.list_models)})


class ModelHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        self.reply(await self.upstream.call(lambda c: c.get_model(_q(model_id))))

    @tornado.web.authenticated
    @authorized
    async def delete(self, model_id: str) -> None:
        await self.upstream.call(lambda c: c.delete_model(_q(model_id)))
        self.reply(None, 204)


class VersionHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def delete(self, model_id: str, version: str) -> None:
        await self.upstream.call(lambda c: c.delete_version(_q(model_id), int(version)))
        self.reply(None, 204)


class DefaultVersionHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def put(self, model_id: str) -> None:
        body = self.json_body()
        version = body.get("version") if isinstance(body, dict) else None
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProxyError(400, 'Send {"version": <number>} to choose the default version.')
        self.reply(await self.upstream.call(lambda c: c.set_default(_q(model_id), version)))


class PredictHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self, model_id: str) -> None:
        raw_version = self.get_query_argument("version", None)
        version: int | None = None
        if raw_version not in (None, ""):
            if not raw_version.isdigit():
                raise ProxyError(400, f"version must be a whole number, not {raw_version!r}")
            version = int(raw_version)
        content_type = self.request.headers.get("Content-Type", "application/json")
        media = content_type.split(";", 1)[0].strip().lower()
        if (
            media != "application/json"
            and media not in _RAW_TYPES
            and not media.startswith("image/")
        ):
            raise ProxyError(
                415,
                f"Unsupported Content-Type {media!r}: send application/json "
                '({"instances": [...]}), text/plain, application/octet-stream or image/*.',
            )
        if NDJSON in self.request.headers.get("Accept", ""):
            body = self.request.body
            await pass_stream(self, self.upstream, model_id, body, content_type, version)
            return
        self.reply(await self.upstream.predict(model_id, self.request.body, content_type, version))


class TokensHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        self.reply({"tokens": await self.upstream.call(lambda c: c.list_tokens(_q(model_id)))})

    @tornado.web.authenticated
    @authorized
    async def post(self, model_id: str) -> None:
        made = await self.upstream.call(lambda c: c.create_token(_q(model_id), PANEL_LABEL))
        self.reply(made, 201)


class TokenHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def delete(self, model_id: str, token_id: str) -> None:
        await self.upstream.call(lambda c: c.revoke_token(_q(model_id), _q(token_id)))
        self.reply(None, 204)


class DiffHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        try:
            old, new = int(self.get_query_argument("from")), int(self.get_query_argument("to"))
        except (tornado.web.MissingArgumentError, ValueError):
            raise ProxyError(400, "Give two version numbers: ?from=N&to=M") from None
        self.reply(await self.upstream.call(lambda c: c.diff_versions(_q(model_id), old, new)))


_MODEL = r"(?P<model_id>[^/]+)"
_ROUTES: list[tuple[str, type[_Base]]] = [
    ("status", StatusHandler),
    ("models", ModelsHandler),
    (f"models/{_MODEL}", ModelHandler),
    (f"models/{_MODEL}/versions/(?P<version>[0-9]+)", VersionHandler),
    (f"models/{_MODEL}/default", DefaultVersionHandler),
    (f"models/{_MODEL}/diff", DiffHandler),
    (f"models/{_MODEL}/predict", PredictHandler),
    (f"models/{_MODEL}/tokens", TokensHandler),
    (f"models/{_MODEL}/tokens/(?P<token_id>[^/]+)", TokenHandler),
]


def route_table(base_url: str) -> list[tuple[str, type[_Base]]]:
    """Absolute URL patterns for ``web_app.add_handlers``."""
    return [(url_path_join(base_url, *API_PREFIX, path), handler) for path, handler in _ROUTES]
