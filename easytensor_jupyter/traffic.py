"""The request log, replay and traffic policies, from a notebook or a script.

``request_log(model)`` gives a model's logged requests (a pandas DataFrame when pandas is
installed), ``compare(model, a=2, b=3)`` replays inputs on two versions on the server, and the
``traffic`` calls set canary splits, shadows, promote and roll back. The CLI and the lab panel's
server extension use the same calls, which take a ``Client``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from easytensor_jupyter.client import Client
from easytensor_jupyter.comparison import Comparison
from easytensor_jupyter.instances import decode_instance, encode_instance

__all__ = [
    "Comparison",
    "compare",
    "fetch_requests",
    "follow_requests",
    "get_log_settings",
    "get_traffic",
    "parse_split",
    "promote",
    "request_log",
    "rollback",
    "run_compare",
    "set_log_settings",
    "set_request_log",
    "set_traffic",
]


def parse_split(text: str) -> dict[str, float]:
    """``2=90,3=10`` as ``{"2": 90.0, "3": 10.0}``; a clear error for anything else."""
    split: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        version, sep, weight = part.partition("=")
        try:
            if not sep or not version.strip().isdigit():
                raise ValueError
            split[str(int(version))] = float(weight)
        except ValueError:
            raise ValueError(
                f"cannot read {part!r} in --split {text!r}: give VERSION=WEIGHT pairs "
                "separated by commas, e.g. 2=90,3=10"
            ) from None
    if not split:
        raise ValueError(f"--split {text!r} names no version: e.g. 2=90,3=10")
    return split


def _path(model_id: str, rest: str) -> str:
    from urllib.parse import quote

    return f"/v1/models/{quote(model_id, safe='')}/{rest}"


def fetch_requests(client: Client, model_id: str, **params: Any) -> dict[str, Any]:
    """One page: ``{"records": [...], "next": id or None}``; params as the admin API takes."""
    query = {k: v for k, v in params.items() if v is not None}
    page: dict[str, Any] = client.request("GET", _path(model_id, "requests"), params=query).json()
    return page


def follow_requests(
    client: Client, model_id: str, *, poll: float = 1.0, **params: Any
) -> Iterator[dict[str, Any]]:
    """Records as they arrive, oldest first, forever (``easytensor logs --follow``)."""
    import time

    last = 0
    first = fetch_requests(client, model_id, limit=params.pop("limit", 20), **params)["records"]
    for record in reversed(first):
        last = max(last, record["id"])
        yield record
    while True:
        time.sleep(poll)
        fresh = [
            r
            for r in fetch_requests(client, model_id, limit=200, **params)["records"]
            if r["id"] > last
        ]
        for record in reversed(fresh):
            last = max(last, record["id"])
            yield record


def get_log_settings(client: Client, model_id: str) -> dict[str, Any]:
    result: dict[str, Any] = client.request("GET", _path(model_id, "request-log")).json()
    return result


def set_log_settings(
    client: Client,
    model_id: str,
    mode: str | None = None,
    *,
    keep: int | None = None,
    keep_mb: float | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if mode is not None:
        body["mode"] = None if mode == "default" else mode
    if keep is not None:
        body["keep"] = keep
    if keep_mb is not None:
        body["keep_mb"] = keep_mb
    result: dict[str, Any] = client.request("PUT", _path(model_id, "request-log"), json=body).json()
    return result


def get_traffic(client: Client, model_id: str) -> dict[str, Any]:
    result: dict[str, Any] = client.request("GET", _path(model_id, "traffic")).json()
    return result


def set_traffic(
    client: Client,
    model_id: str,
    *,
    split: dict[str, float] | str | None = None,
    sticky: bool = False,
    shadow: int | None = None,
) -> dict[str, Any]:
    weights = parse_split(split) if isinstance(split, str) else split
    body = {"split": weights, "sticky": sticky, "shadow": shadow}
    result: dict[str, Any] = client.request("PUT", _path(model_id, "traffic"), json=body).json()
    return result


def promote(client: Client, model_id: str, version: int) -> dict[str, Any]:
    result: dict[str, Any] = client.request(
        "POST", _path(model_id, "traffic/promote"), json={"version": version}
    ).json()
    return result


def rollback(client: Client, model_id: str) -> dict[str, Any]:
    result: dict[str, Any] = client.request("POST", _path(model_id, "traffic/rollback")).json()
    return result


def run_compare(
    client: Client, model_id: str, a: int, b: int, inputs: list[Any] | None, limit: int = 50
) -> dict[str, Any]:
    body: dict[str, Any] = {"a": a, "b": b, "limit": limit}
    if inputs is not None:
        body["inputs"] = encode_instance(list(inputs))
    result: dict[str, Any] = client.request(
        "POST", _path(model_id, "compare"), json=body, timeout=max(client.timeout, 600.0)
    ).json()
    return result


def _client(url: str | None, api_key: str | None) -> Client:
    return Client(url, api_key)


def _model_id(client: Client, model: str) -> str:
    found: str = client.find_model(model)["id"]
    return found


def request_log(
    model: str,
    *,
    version: int | None = None,
    status: str | None = None,
    kind: str = "live",
    since: str | float | None = None,
    until: str | float | None = None,
    limit: int = 100,
    url: str | None = None,
    api_key: str | None = None,
) -> Any:
    """A model's logged requests, newest first: a pandas DataFrame when pandas is installed,
    else a list of dicts (time, version, status, code, latency_ms, token, input, output, ...).

    ``status`` is ``ok``, ``error``, an HTTP status or an error code; ``kind`` is ``live``,
    ``shadow`` or ``all``; ``since``/``until`` take epoch seconds or ISO 8601 times. Bytes
    inputs come back as bytes.
    """
    client = _client(url, api_key)
    try:
        model_id = _model_id(client, model)
        records: list[dict[str, Any]] = []
        before = None
        while len(records) < limit:
            page = fetch_requests(
                client,
                model_id,
                version=version,
                status=status,
                kind=kind,
                since=since,
                until=until,
                before=before,
                limit=min(1000, limit - len(records)),
            )
            records += page["records"]
            before = page["next"]
            if before is None:
                break
    finally:
        client.close()
    for record in records:
        if record.get("input") is not None:
            record["input"] = decode_instance(record["input"], "input")
    try:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return records
    frame = pd.DataFrame.from_records(records)
    if "time" in frame:
        frame["time"] = pd.to_datetime(frame["time"])
    return frame


def set_request_log(
    model: str,
    mode: str,
    *,
    keep: int | None = None,
    keep_mb: float | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Set what ``model``'s request log keeps: ``off``, ``errors``, ``sample:P``, ``all``, or
    ``default`` for the server's setting; ``keep``/``keep_mb`` bound its records and size."""
    client = _client(url, api_key)
    try:
        return set_log_settings(client, _model_id(client, model), mode, keep=keep, keep_mb=keep_mb)
    finally:
        client.close()


def compare(
    model: str,
    a: int,
    b: int,
    inputs: list[Any] | None = None,
    *,
    limit: int = 50,
    url: str | None = None,
    api_key: str | None = None,
) -> Comparison:
    """Run ``inputs`` (default: up to ``limit`` recently logged ones) on versions ``a`` and
    ``b`` on the server; the result has ``agreement``, ``differing`` and ``latency_ms`` per
    version, and shows as a table in a notebook. To compare a version that is only in this
    notebook, deploy it with ``%%easytensor_model ... --candidate`` first: it takes no traffic.
    """
    client = _client(url, api_key)
    try:
        return Comparison(run_compare(client, _model_id(client, model), a, b, inputs, limit))
    finally:
        client.close()
