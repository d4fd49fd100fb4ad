"""The Jupyter side of every call to the inference server.

``Client`` is blocking (requests), so each call runs on an executor thread and Jupyter's event
loop keeps serving kernels and files while a prediction is slow. Predictions, the playground's
hot path, go out on tornado's own HTTP client instead: no thread hop, about a millisecond less
per query. The admin key stays here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from tornado.web import HTTPError

from easytensor_jupyter import config, embedded
from easytensor_jupyter._version import __version__
from easytensor_jupyter.client import Client, EasyTensorError

__all__ = ["ProxyError", "Upstream", "model_path"]

T = TypeVar("T")

_MAX_ANSWER = 1 << 30

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


class ProxyError(HTTPError):
    """An error answer in the inference server's own shape: ``{"error": {code, message, detail}}``.

    The message travels as a log argument, not the format string, so a ``%`` in a model's
    traceback cannot break tornado's logging.
    """

    def __init__(self, status: int, message: str, code: str | None = None, detail: Any = None):
        super().__init__(status, "%s", message)
        self.code = code or _CODE_BY_STATUS.get(status, "error")
        self.message = message
        self.detail = detail

    @classmethod
    def from_client(cls, exc: EasyTensorError, url: str | None) -> ProxyError:
        if exc.status:
            return cls(exc.status, str(exc.args[0]) if exc.args else str(exc), exc.code, exc.detail)
        if exc.code == "client_timeout":
            return cls(504, str(exc), "upstream_timeout", {"url": url})
        return cls(502, str(exc), "upstream_unreachable", {"url": url})


def model_path(model_id: str, *rest: str) -> str:
    """``/v1/models/<id>/...`` with each part escaped, since ids come from the browser."""
    parts = [quote(model_id, safe=""), *(quote(part, safe="") for part in rest)]
    return "/v1/models/" + "/".join(parts)


class Upstream:
    """One inference server: configured, or the embedded one of this ``EASYTENSOR_HOME``.

    In embedded mode the address is read again on every call from the server's info file, so a
    server restarted by a kernel is followed without restarting Jupyter.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        log: logging.Logger | None = None,
        timeout: float = 120.0,
    ) -> None:
        configured = url or os.environ.get("EASYTENSOR_URL") or None
        self.configured_url = configured.rstrip("/") if configured else None
        self.api_key = api_key
        self.timeout = timeout
        self.log = log or logging.getLogger(__name__)
        self.starting = False
        self.start_error: str | None = None
        self._local = threading.local()
        self._http: SimpleAsyncHTTPClient | None = None

    @property
    def embedded(self) -> bool:
        return self.configured_url is None

    # -- embedded server ----------------------------------------------------------------------
    def start_in_background(self) -> threading.Thread:
        """Start or join the embedded server without holding up Jupyter's start-up."""
        self.starting = True
        thread = threading.Thread(
            target=self._start_embedded, name="easytensor-autostart", daemon=True
        )
        thread.start()
        return thread

    def _start_embedded(self) -> None:
        try:
            info = embedded.ensure_server(owner_pid=os.getpid(), owner="Jupyter")
        except Exception as exc:
            self.start_error = f"Could not start the embedded EasyTensor server: {exc}"
            self.log.error("EasyTensor: %s", self.start_error)
        else:
            os.environ["EASYTENSOR_URL"] = info.url
            owner = "this Jupyter server" if info.owner_pid == os.getpid() else "another process"
            self.log.info(
                "EasyTensor: embedded inference server at %s (owned by %s)", info.url, owner
            )
        finally:
            self.starting = False

    def url(self) -> str | None:
        if self.configured_url:
            return self.configured_url
        info = config.read_server_info()
        if info is None:
            return None
        if os.environ.get("EASYTENSOR_URL") not in (None, info.url):
            # The embedded server moved (a kernel restarted it): new kernels should follow.
            os.environ["EASYTENSOR_URL"] = info.url
        return info.url

    def _missing_server(self) -> ProxyError:
        if self.starting:
            return ProxyError(
                503,
                "The embedded EasyTensor server is still starting; try again shortly.",
                "starting",
            )
        message = self.start_error or (
            "No EasyTensor inference server is running for this Jupyter. Start one with "
            "`easytensor serve` or `%easytensor_server start`, or set c.EasyTensor.url / EASYTENSOR_URL."
        )
        return ProxyError(502, message, "not_connected", {"embedded": True})

    # -- calls --------------------------------------------------------------------------------
    def _client(self, url: str) -> Client:
        key = config.resolve_api_key(self.api_key)
        cached: tuple[str, str | None, Client] | None = getattr(self._local, "client", None)
        if cached is not None and cached[:2] == (url, key):
            return cached[2]
        if cached is not None:
            cached[2].close()
        client = Client(url, key, timeout=self.timeout, retries=1, backoff=0.2)
        self._local.client = (url, key, client)
        return client

    def _run(self, fn: Callable[[Client], T]) -> T:
        url = self.url()
        if url is None:
            raise self._missing_server()
        try:
            return fn(self._client(url))
        except EasyTensorError as exc:
            raise ProxyError.from_client(exc, url) from exc
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise ProxyError(
                502,
                f"The EasyTensor server at {url} sent an unreadable answer: {exc}",
                "bad_gateway",
            ) from exc

    async def call(self, fn: Callable[[Client], T]) -> T:
        """Run ``fn(client)`` off the event loop; failures arrive as ``ProxyError``."""
        return await asyncio.get_running_loop().run_in_executor(None, self._run, fn)

    # -- routes that need more than one client method ---------------------------------------
    async def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "url": None,
            "connected": False,
            "embedded": self.embedded,
            "version": None,
            "extension_version": __version__,
            "error": None,
        }

        def probe(client: Client) -> dict[str, Any]:
            answer["url"] = client.url
            return client.health()

        try:
            health = await self.call(probe)
        except ProxyError as exc:
            answer["error"] = exc.message
            answer["url"] = answer["url"] or self.configured_url
            return answer
        answer["connected"] = True
        answer["version"] = health.get("version") if isinstance(health, dict) else None
        return answer

    async def predict(
        self, model_id: str, body: bytes, content_type: str, version: int | None
    ) -> dict[str, Any]:
        """Pass the body through untouched so the server applies its own content-type rules;
        like ``Client``, one retry when the server can't be reached or answers 502/503."""
        url = self.url()
        if url is None:
            raise self._missing_server()
        target = url + model_path(model_id, "predict")
        if version is not None:
            target += f"?version={version}"
        headers = {"Content-Type": content_type}
        key = config.resolve_api_key(self.api_key)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = HTTPRequest(
            target,
            method="POST",
            body=body,
            headers=headers,
            connect_timeout=min(10.0, self.timeout),
            request_timeout=self.timeout,
        )
        if self._http is None:
            self._http = SimpleAsyncHTTPClient(
                force_instance=True,
                max_clients=64,
                max_body_size=_MAX_ANSWER,
                resolver=_LiteralFirstResolver(),
            )
        started = time.perf_counter()
        for attempt in range(2):
            try:
                response = await self._http.fetch(request, raise_error=False)
            except HTTPClientError as exc:  # 599: tornado's own timeout
                raise ProxyError(
                    504,
                    f"The server at {url} did not answer POST {model_path(model_id, 'predict')} "
                    f"within {self.timeout:g} s",
                    "upstream_timeout",
                    {"url": url},
                ) from exc
            except OSError as exc:
                if attempt == 0:
                    await asyncio.sleep(0.2)
                    continue
                raise ProxyError(
                    502,
                    f"Cannot reach the EasyTensor server at {url}: is it running? Start one with "
                    "`easytensor serve` or `%easytensor_server start`.",
                    "upstream_unreachable",
                    {"url": url},
                ) from exc
            if response.code in (502, 503) and attempt == 0:
                await asyncio.sleep(0.2)
                continue
            break
        latency_ms = (time.perf_counter() - started) * 1000
        if response.code >= 400:
            raise _error_answer(response.code, response.body, response.reason)
        payload = _json_body(response.body, url)
        try:
            return {
                "predictions": payload["predictions"],
                "model_id": payload.get("model_id", model_id),
                "version": payload.get("version"),
                "latency_ms": round(latency_ms, 3),
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProxyError(
                502,
                f"The EasyTensor server at {url} sent an unreadable answer: {exc}",
                "bad_gateway",
            ) from exc


class _LiteralFirstResolver(Resolver):
    """The server's address is nearly always an IP literal (127.0.0.1): answer those at once
    instead of sending each lookup to a thread, as tornado's default resolver does."""

    def initialize(self) -> None:
        self._names = DefaultLoopResolver()

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            found: list[tuple[int, Any]] = await self._names.resolve(host, port, family)
            return found
        if address.version == 6:
            return [(socket.AF_INET6, (str(address), port, 0, 0))]
        return [(socket.AF_INET, (str(address), port))]


def _error_answer(status: int, body: bytes, reason: str) -> ProxyError:
    """The server's own error (code, message, detail), or its text when it is not JSON."""
    try:
        error = orjson.loads(body)["error"]
        return ProxyError(
            status, str(error.get("message") or reason), error.get("code"), error.get("detail")
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return ProxyError(status, body[:300].decode(errors="replace").strip() or reason)


def _json_body(body: bytes, url: str) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise ProxyError(
            502, f"The EasyTensor server at {url} sent an unreadable answer: {exc}", "bad_gateway"
        ) from exc
