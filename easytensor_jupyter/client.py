"""HTTP client for the inference server's v1 API, over ``requests``.

Every server error arrives as ``EasyTensorError`` carrying the server's code and message, so the
magics, widgets and CLI can show the same plain text the server wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from easytensor_jupyter import config
from easytensor_jupyter.bundle import (
    MANIFEST_NAME,
    Manifest,
    bundle_stream_size,
    iter_bundle_stream,
)
from easytensor_jupyter.instances import encode_instance

__all__ = ["Client", "EasyTensorError", "Prediction", "UploadResult"]

RETRY_STATUSES = frozenset({502, 503})
ProgressFactory = Callable[[int, str], Any]


class EasyTensorError(Exception):
    """A failed call: ``status`` is the HTTP status (0 when the server could not be reached)."""

    def __init__(
        self, message: str, *, status: int = 0, code: str = "error", detail: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (HTTP {self.status}, {self.code})" if self.status else base

    @property
    def traceback_tail(self) -> str | None:
        if isinstance(self.detail, Mapping):
            tail = self.detail.get("traceback")
            return str(tail) if tail else None
        return None


@dataclass(frozen=True)
class UploadResult:
    id: str
    name: str
    version: int
    query_token: str | None
    unchanged: bool = False
    received: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    version: int | None
    latency_ms: float


class _SizedStream:
    """An iterable body with a length, so requests sends Content-Length instead of chunking."""

    def __init__(self, chunks: Iterator[bytes], size: int, progress: Any | None) -> None:
        self._chunks = chunks
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._progress is not None:
                self._progress.update(len(chunk))
            yield chunk


class Client:
    """One server, one admin key (optional for query-only use), one connection pool."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.25,
    ) -> None:
        resolved = config.resolve_url(url)
        if resolved is None:
            raise EasyTensorError(
                "No EasyTensor server is configured: set EASYTENSOR_URL, pass url=..., "
                "or call easytensor_jupyter.embedded.ensure_server() to start one on this machine."
            )
        self.url = resolved
        self.api_key = config.resolve_api_key(api_key)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()

    @classmethod
    def connect(
        cls, url: str | None = None, api_key: str | None = None, *, autostart: bool = True
    ) -> Client:
        """Use the configured server, or start (or join) the embedded one when none is configured."""
        if config.resolve_url(url) is None and autostart:
            from easytensor_jupyter.embedded import ensure_server

            url = ensure_server().url
        return cls(url, api_key)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        self.session.close()

    def endpoint(self, model_id: str) -> str:
        return f"{self.url}/v1/models/{model_id}/predict"

    def _headers(self, token: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        secret = token or self.api_key
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """Send one call, retrying connection errors and 502/503 (honouring Retry-After)."""
        attempts = self.retries + 1 if retry else 1
        last_exc: Exception | None = None
        for attempt in range(attempts):
            try:
                response = self.session.request(
                    method,
                    self.url + path,
                    json=json,
                    data=data,
                    headers=self._headers(token, headers),
                    params=params,
                    timeout=timeout or self.timeout,
                )
            except requests.ConnectionError as exc:
                last_exc = exc
                if attempt + 1 < attempts:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                raise EasyTensorError(
                    f"Cannot reach the EasyTensor server at {self.url}: is it running? "
                    "(start one with `easytensor serve`, or set EASYTENSOR_URL)"
                ) from exc
            except requests.Timeout as exc:
                raise EasyTensorError(
                    f"The server at {self.url} did not answer {method} {path} within {timeout or self.timeout:g} s",
                    code="client_timeout",
                ) from exc
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(_retry_after(response, self.backoff * 2**attempt))
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response
        raise EasyTensorError(f"{method} {path} failed") from last_exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    # -- models -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/health", retry=False, timeout=5)
        return result

    def list_models(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = self._json("GET", "/v1/models")["models"]
        return models

    def get_model(self, model_id: str) -> dict[str, Any]:
        model: dict[str, Any] = self._json("GET", f"/v1/models/{model_id}")
        return model

    def find_model(self, name_or_id: str) -> dict[str, Any]:
        """A model by id, or by its exact name when no id matches."""
        for model in self.list_models():
            if name_or_id in (model["id"], model["name"]):
                return model
        raise EasyTensorError(
            f"No model with id or name {name_or_id!r} on {self.url}", status=404, code="not_found"
        )

    def delete_model(self, model_id: str) -> None:
        self.request("DELETE", f"/v1/models/{model_id}")

    def delete_version(self, model_id: str, version: int) -> None:
        self.request("DELETE", f"/v1/models/{model_id}/versions/{version}")

    def versions(self, model_id: str) -> list[dict[str, Any]]:
        versions: list[dict[str, Any]] = self.get_model(model_id)["versions"]
        return versions

    def set_default(self, model_id: str, version: int) -> dict[str, Any]:
        model: dict[str, Any] = self._json(
            "PUT", f"/v1/models/{model_id}/default", json={"version": version}
        )
        return model

    def set_scaling(
        self,
        model_id: str,
        *,
        replicas: int | None = None,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        target_ongoing_requests: float | None = None,
    ) -> dict[str, Any]:
        """A fixed ``replicas`` count, or autoscaling bounds (Ray backend only); returns the model.

        Only the autoscaling values given are sent, so the server's defaults and range checks
        stay the single source of truth; mixing the two forms fails here, before any request.
        """
        autoscaling = {
            key: value
            for key, value in (
                ("min_replicas", min_replicas),
                ("max_replicas", max_replicas),
                ("target_ongoing_requests", target_ongoing_requests),
            )
            if value is not None
        }
        if replicas is not None and autoscaling:
            raise ValueError(
                "set_scaling takes replicas (a fixed count) or autoscaling arguments, not both: "
                f"got replicas with {', '.join(autoscaling)}"
            )
        if replicas is None and not autoscaling:
            raise ValueError(
                "set_scaling needs replicas=N for a fixed count, or max_replicas=N (with optional "
                "min_replicas and target_ongoing_requests) for autoscaling"
            )
        body: dict[str, Any] = (
            {"replicas": replicas} if replicas is not None else {"autoscaling": autoscaling}
        )
        model: dict[str, Any] = self._json("PUT", f"/v1/models/{model_id}/scaling", json=body)
        return model

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, model_id: str) -> dict[str, str]:
        token: dict[str, str] = self._json("POST", f"/v1/models/{model_id}/tokens")
        return token

    def list_tokens(self, model_id: str) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = self._json("GET", f"/v1/models/{model_id}/tokens")["tokens"]
        return tokens

    def revoke_token(self, model_id: str, token_id: str) -> None:
        self.request("DELETE", f"/v1/models/{model_id}/tokens/{token_id}")

    # -- predict ------------------------------------------------------------------------------
    def predict(
        self,
        model_id: str,
        instances: list[Any],
        *,
        token: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> Prediction:
        """Query with JSON instances; bytes inside them travel as ``{"b64": ...}``."""
        body = {"instances": encode_instance(list(instances))}
        return self._predict(model_id, token, version, timeout, json=body)

    def predict_raw(
        self,
        model_id: str,
        body: bytes | str,
        content_type: str,
        *,
        token: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> Prediction:
        """Query with one raw instance: text/plain becomes a str, other types become bytes."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self._predict(
            model_id, token, version, timeout, data=data, headers={"Content-Type": content_type}
        )

    def _predict(
        self,
        model_id: str,
        token: str | None,
        version: int | None,
        timeout: float | None,
        **kwargs: Any,
    ) -> Prediction:
        params = {"version": version} if version is not None else None
        started = time.perf_counter()
        response = self.request(
            "POST",
            f"/v1/models/{model_id}/predict",
            token=token,
            params=params,
            timeout=timeout,
            **kwargs,
        )
        latency = (time.perf_counter() - started) * 1000
        payload = response.json()
        return Prediction(payload["predictions"], payload.get("version"), latency)

    # -- upload -------------------------------------------------------------------------------
    def missing_blobs(self, hashes: list[str]) -> set[str]:
        missing: list[str] = self._json("POST", "/v1/blobs/missing", json={"sha256": hashes})[
            "missing"
        ]
        return set(missing)

    def upload_bundle(
        self,
        directory: Path,
        *,
        create_token: bool = True,
        force: bool = False,
        progress: ProgressFactory | None = None,
    ) -> UploadResult:
        """Stream a bundle directory; files the server already has are not sent again."""
        manifest = Manifest.parse_bytes((directory / MANIFEST_NAME).read_bytes())
        hashes = [entry.sha256 for entry in manifest.files.values()]
        present = frozenset(set(hashes) - self.missing_blobs(hashes))
        size = bundle_stream_size(manifest, present)
        files = {name: directory / name for name in manifest.files}
        bar = progress(size, f"Uploading {manifest.name}") if progress else None
        try:
            body = _SizedStream(iter_bundle_stream(manifest, files, present), size, bar)
            response = self.request(
                "POST",
                "/v1/models",
                data=body,
                headers={"Content-Type": "application/x-tar"},
                params={"create_token": str(create_token).lower(), "force": str(force).lower()},
                timeout=max(self.timeout, 600.0),
                retry=False,
            )
        finally:
            if bar is not None:
                bar.close()
        payload = response.json()
        return UploadResult(
            id=payload["id"],
            name=payload["name"],
            version=payload["version"],
            query_token=payload.get("query_token"),
            unchanged=bool(payload.get("unchanged", False)),
            received=list(payload.get("received", [])),
            reused=list(payload.get("reused", [])),
        )


def _retry_after(response: requests.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", default)), 10.0)
    except ValueError:
        return default


def _error_from(response: requests.Response) -> EasyTensorError:
    try:
        error = response.json()["error"]
        return EasyTensorError(
            str(error.get("message", response.reason)),
            status=response.status_code,
            code=str(error.get("code", "error")),
            detail=error.get("detail"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:300] or response.reason
        return EasyTensorError(text, status=response.status_code, code="http_error")
