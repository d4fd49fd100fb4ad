"""HTTP client for the inference server's v1 API, over ``requests``.

Failures arrive as ``EasyTensorError`` (``errors.py``) with the server's own code and message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from easytensor_jupyter import config, servers
from easytensor_jupyter.bundle import (
    MANIFEST_NAME,
    Manifest,
    bundle_stream_size,
    iter_bundle_stream,
)
from easytensor_jupyter.errors import EasyTensorError, error_from, retry_after
from easytensor_jupyter.instances import encode_instance
from easytensor_jupyter.stream_client import ChunkStream

__all__ = ["NO_SERVER", "Client", "EasyTensorError", "Prediction", "UploadResult", "resolve_server"]

RETRY_STATUSES = frozenset({502, 503})
ProgressFactory = Callable[[int, str], Any]


@dataclass(frozen=True)
class UploadResult:
    id: str
    name: str
    version: int
    query_token: str | None
    unchanged: bool = False
    received: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, Any] | None = None


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


NO_SERVER = (
    "No EasyTensor server is running on this machine and none is configured. Start one with "
    "`easytensor serve` (or easytensor_jupyter.embedded.ensure_server()), or point at one with "
    "url=... or EASYTENSOR_URL."
)


def resolve_server(
    url: str | None = None,
    *,
    choose: servers.Chooser | None = None,
    advice: str = "Choose one with url=... or EASYTENSOR_URL.",
) -> servers.Resolved | None:
    """Which server to use; several running here and no ``choose`` is an ``EasyTensorError``."""
    try:
        return servers.resolve(url, choose=choose, advice=advice)
    except servers.SeveralServers as exc:
        urls = [r.url for r in exc.records]
        raise EasyTensorError(str(exc), code="several_servers", detail={"servers": urls}) from None


class Client:
    """One server, one admin key (optional for query-only use), one connection pool.

    With no ``url`` and no ``EASYTENSOR_URL``, the one server running on this machine is used;
    ``server`` then holds its record (who started it, when), so callers can say which it is.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.25,
    ) -> None:
        resolved = resolve_server(url)
        if resolved is None:
            raise EasyTensorError(NO_SERVER, code="no_server")
        self.url = resolved.url
        self.source = resolved.source
        self.server = resolved.record
        self.api_key = config.resolve_api_key(api_key)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()

    @classmethod
    def connect(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        *,
        autostart: bool = True,
        announce: Callable[[str], None] | None = None,
    ) -> Client:
        """Use the configured server, else the one running here, else start the embedded one.

        ``announce`` hears which server was picked when nobody named one.
        """
        resolved = resolve_server(url)
        if resolved is None and autostart:
            from easytensor_jupyter.embedded import ensure_server

            info = ensure_server()
            client = cls(info.url, api_key)
            if announce is not None:
                announce(f"Started the embedded EasyTensor server at {info.url}")
            return client
        client = cls(resolved.url if resolved else None, api_key)
        if resolved is not None:
            client.source, client.server = resolved.source, resolved.record
        if client.server is not None and announce is not None:
            announce(f"Using the EasyTensor server at {client.server.describe()}")
        return client

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        self.session.close()

    def _where(self) -> str:
        if self.source == "environment":
            return " (from EASYTENSOR_URL)"
        if self.server is not None:
            return f" (recorded by {self.server.owner}, pid {self.server.pid})"
        return ""

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
        stream: bool = False,
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
                    stream=stream,
                )
            except requests.ConnectionError as exc:
                last_exc = exc
                if attempt + 1 < attempts:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                raise EasyTensorError(
                    f"Cannot reach the EasyTensor server at {self.url}{self._where()}: is it "
                    "running? Start one with `easytensor serve`, or point at another with --url "
                    "or EASYTENSOR_URL (`easytensor server` lists those running here).",
                    code="unreachable",
                ) from exc
            except requests.Timeout as exc:
                raise EasyTensorError(
                    f"The server at {self.url} did not answer {method} {path} within {timeout or self.timeout:g} s",
                    code="client_timeout",
                ) from exc
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(retry_after(response, self.backoff * 2**attempt))
                continue
            if response.status_code >= 400:
                raise error_from(response)
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

    def diff_versions(self, model_id: str, old: int, new: int) -> dict[str, Any]:
        """What changed from version ``old`` to ``new`` (``version_diff.diff_versions``)."""
        diff: dict[str, Any] = self._json(
            "GET", f"/v1/models/{model_id}/diff", params={"from": old, "to": new}
        )
        return diff

    def version_fingerprint(self, model_id: str, version: int) -> dict[str, Any]:
        found: dict[str, Any] = self._json(
            "GET", f"/v1/models/{model_id}/versions/{version}/fingerprint"
        )
        return found

    def version_tensors(self, model_id: str, version: int, names: list[str]) -> dict[str, Any]:
        """The named weight tensors of a version (those it has), read with safetensors."""
        from safetensors.torch import load

        response = self.request(
            "POST", f"/v1/models/{model_id}/versions/{version}/tensors", json={"names": names}
        )
        return dict(load(response.content))

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
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        resources: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """A fixed ``replicas`` count, or autoscaling bounds (Ray backend only), and what each
        replica needs from a node (Ray backend only); returns the model.

        Only the values given are sent, so the server's defaults and range checks stay the
        single source of truth, and what is not given keeps its current value (the count, or
        each need); mixing the two count forms fails here, before any request.
        """
        needs = {
            key: value
            for key, value in (
                ("num_cpus", num_cpus),
                ("num_gpus", num_gpus),
                ("resources", resources),
            )
            if value is not None
        }
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
        if replicas is None and not autoscaling and not needs:
            raise ValueError(
                "set_scaling needs replicas=N for a fixed count, or max_replicas=N (with optional "
                "min_replicas and target_ongoing_requests) for autoscaling, or num_cpus, "
                "num_gpus or resources for what each replica needs"
            )
        body: dict[str, Any] = dict(needs)
        if replicas is not None:
            body["replicas"] = replicas
        elif autoscaling:
            body["autoscaling"] = autoscaling
        model: dict[str, Any] = self._json("PUT", f"/v1/models/{model_id}/scaling", json=body)
        return model

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, model_id: str, label: str | None = None) -> dict[str, str]:
        """A new query token; ``label`` says where it was made (shown when listing tokens)."""
        body = {"label": label} if label else None
        token: dict[str, str] = self._json("POST", f"/v1/models/{model_id}/tokens", json=body)
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

    def stream(
        self,
        model_id: str,
        input: Any,
        *,
        token: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> ChunkStream:
        """The chunks of the model's ``predict_stream(input)`` as they come; the iterator's
        ``info`` holds the version and timings once it is done. ``timeout`` bounds each wait."""
        params = {"version": version} if version is not None else None
        started = time.perf_counter()
        response = self.request(
            "POST",
            f"/v1/models/{model_id}/predict",
            token=token,
            params=params,
            timeout=timeout,
            json={"instances": encode_instance([input])},
            headers={"Accept": "application/x-ndjson"},
            stream=True,
        )
        return ChunkStream(response, started)

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
        candidate: bool = False,
    ) -> UploadResult:
        """Stream a bundle directory; files the server already has are not sent again.

        A ``candidate`` version leaves the model's default where it is, so it takes no traffic.
        """
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
                params={
                    "create_token": str(create_token).lower(),
                    "force": str(force).lower(),
                    **({"candidate": "true"} if candidate else {}),
                },
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
            warnings=list(payload.get("warnings", [])),
            environment=payload.get("environment"),
        )
