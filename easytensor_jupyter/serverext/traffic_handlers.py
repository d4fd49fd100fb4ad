"""Lab panel routes for a model's traffic: recent requests, the split and shadow, and a replay
of recent traffic on two versions. Jupyter's login guards them; the admin key stays here."""

from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join

from easytensor_jupyter import traffic
from easytensor_jupyter.serverext.handlers import API_PREFIX, _Base, _q
from easytensor_jupyter.serverext.proxy import ProxyError

__all__ = ["traffic_route_table"]

_FILTERS = ("version", "status", "kind", "limit", "before")


class RequestsHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        params = {k: self.get_query_argument(k, None) for k in _FILTERS}
        self.reply(
            await self.upstream.call(lambda c: traffic.fetch_requests(c, _q(model_id), **params))
        )


class TrafficHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, model_id: str) -> None:
        self.reply(await self.upstream.call(lambda c: traffic.get_traffic(c, _q(model_id))))


class CompareHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self, model_id: str) -> None:
        body: Any = self.json_body()
        versions = [body.get(k) if isinstance(body, dict) else None for k in ("a", "b")]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in versions):
            raise ProxyError(400, 'Send {"a": <version>, "b": <version>} to compare two versions.')
        limit = body.get("limit", 50)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ProxyError(400, "limit must be a whole number of logged inputs to replay")
        a, b = int(body["a"]), int(body["b"])
        self.reply(
            await self.upstream.call(
                lambda c: traffic.run_compare(c, _q(model_id), a, b, None, int(limit))
            )
        )


_MODEL = r"(?P<model_id>[^/]+)"
_ROUTES: list[tuple[str, type[_Base]]] = [
    (f"models/{_MODEL}/requests", RequestsHandler),
    (f"models/{_MODEL}/traffic", TrafficHandler),
    (f"models/{_MODEL}/compare", CompareHandler),
]


def traffic_route_table(base_url: str) -> list[tuple[str, type[_Base]]]:
    return [(url_path_join(base_url, *API_PREFIX, path), handler) for path, handler in _ROUTES]
