"""Sustained load on 127.0.0.1: many connections over three models, good and bad queries mixed.

Every request has the one answer it should get (200 for a good query, 401/403/404/400/422 for
each kind of bad one); anything else, or no answer, counts as an error. The server's own request
counter must grow by exactly the number of requests sent (none lost), and its resident memory
must end within 10% of where it stood after warm-up. The five-minute run is marked ``slow``;
CI runs the same code for 20 seconds.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from bundles import Bundle
from servers import RunningServer

from easytensor_jupyter.inference.backends.local.watchdog import rss_bytes

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    sent: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    counted_by_server: int = 0


def _predict_total(server: RunningServer) -> int:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    pattern = re.compile(
        r'^easytensor_http_requests_total\{[^}]*route="(/v1/models/\{model_id\}/predict|/query/)"'
        r"[^}]*\} ([0-9.e+]+)$"
    )
    return int(sum(float(m.group(2)) for line in text.splitlines() if (m := pattern.match(line))))


def _requests(server: RunningServer, models: list[dict[str, Any]]) -> list[Callable[..., Any]]:
    """Kinds of query, each with the status it must get: ``(method, url, kwargs, expected)``."""
    base = server.url

    def pick(rng: random.Random) -> tuple[str, dict[str, Any], int]:
        model = rng.choice(models)
        other = rng.choice([m for m in models if m is not model])
        url = f"{base}/v1/models/{model['id']}/predict"
        auth = {"Authorization": f"Bearer {model['query_token']}"}
        roll = rng.random()
        if roll < 0.45:
            body = {"instances": [f"text {rng.random()}", [rng.random() for _ in range(4)]]}
            return url, {"json": body, "headers": auth}, 200
        if roll < 0.55:
            legacy = {"accessToken": model["query_token"]}
            return f"{base}/query/", {"json": {"instances": ["legacy"]}, "headers": legacy}, 200
        if roll < 0.62:
            octet = {**auth, "Content-Type": "application/octet-stream"}
            return url, {"data": rng.randbytes(256), "headers": octet}, 200
        if roll < 0.70:
            return url, {"json": {"instances": ["raise"]}, "headers": auth}, 422
        if roll < 0.76:
            return url, {"json": {"instances": []}, "headers": auth}, 422
        if roll < 0.82:
            bad_json = {**auth, "Content-Type": "application/json"}
            return url, {"data": b'{"instances": [', "headers": bad_json}, 400
        if roll < 0.88:
            wrong = {"Authorization": f"Bearer {other['query_token']}"}
            return url, {"json": {"instances": ["x"]}, "headers": wrong}, 403
        if roll < 0.94:
            forged = {"Authorization": "Bearer et_q_forged"}
            return url, {"json": {"instances": ["x"]}, "headers": forged}, 401
        missing = f"{base}/v1/models/no-such-model/predict"
        return missing, {"json": {"instances": ["x"]}, "headers": auth}, 403

    return [pick]


def run_load(
    server: RunningServer,
    models: list[dict[str, Any]],
    *,
    seconds: float,
    connections: int,
    warmup: float,
) -> LoadResult:
    """Drive ``connections`` threads for ``seconds``; RSS baseline taken after ``warmup``."""
    (pick,) = _requests(server, models)
    result = LoadResult()
    lock = threading.Lock()
    before = _predict_total(server)
    stop_at = time.monotonic() + seconds
    samples: list[float] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while time.monotonic() < stop_at:
            url, kwargs, expected = pick(rng)
            with lock:
                result.sent += 1
            try:
                response = session.post(url, timeout=30, **kwargs)
            except requests.RequestException as exc:
                with lock:
                    result.unexpected.append(f"no answer from {url}: {exc}")
                continue
            with lock:
                result.answered += 1
                result.statuses[response.status_code] += 1
                if response.status_code != expected:
                    result.unexpected.append(
                        f"{url}: {response.status_code} not {expected}: {response.text[:200]}"
                    )
        session.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    result.rss_start_mb = (rss_bytes(server.proc.pid) or 0) / (1 << 20)
    while time.monotonic() < stop_at:
        samples.append((rss_bytes(server.proc.pid) or 0) / (1 << 20))
        time.sleep(1.0)
    for thread in threads:
        thread.join(60)
    result.rss_end_mb = (rss_bytes(server.proc.pid) or 0) / (1 << 20)
    result.rss_max_mb = max([*samples, result.rss_end_mb])
    result.counted_by_server = _predict_total(server) - before
    return result


@pytest.fixture
def three_models(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> tuple[RunningServer, list[dict[str, Any]]]:
    server = spawn_server("--predict-timeout", "20")
    models = []
    for index in range(3):
        response = server.upload(bundle_factory(name=f"load {index}", seed=index))
        assert response.status_code == 201, response.text
        models.append(response.json())
    for model in models:
        assert server.predict(model["id"], ["warm"]).status_code == 200
    return server, models


def _check(result: LoadResult, label: str) -> None:
    print(
        f"\n{label}: sent {result.sent}, answered {result.answered}, "
        f"server counted {result.counted_by_server}, statuses {dict(sorted(result.statuses.items()))}, "
        f"unexpected {len(result.unexpected)}, RSS {result.rss_start_mb:.1f} -> "
        f"{result.rss_end_mb:.1f} MB (max {result.rss_max_mb:.1f})"
    )
    assert result.unexpected == [], result.unexpected[:5]
    assert result.answered == result.sent
    assert result.counted_by_server == result.sent
    assert result.statuses[200] > result.sent * 0.4
    assert {400, 401, 403, 422} <= set(result.statuses)
    assert result.rss_end_mb <= result.rss_start_mb * 1.10, "server memory grew by over 10%"


def test_load_short(three_models: tuple[RunningServer, list[dict[str, Any]]]) -> None:
    server, models = three_models
    result = run_load(server, models, seconds=20, connections=32, warmup=6)
    assert result.sent > 500
    _check(result, "load 20 s x 32 connections")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_load_five_minutes(three_models: tuple[RunningServer, list[dict[str, Any]]]) -> None:
    server, models = three_models
    result = run_load(server, models, seconds=300, connections=64, warmup=30)
    assert result.sent > 10_000
    _check(result, "load 300 s x 64 connections")
