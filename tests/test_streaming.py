"""Streamed predictions end to end: a real server, real sandboxed workers, ``predict_stream``
over server-sent events and NDJSON, errors, both timeouts, a client that goes away, batched
streams, ``Client.stream`` and ``easytensor query --stream``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from bundles import TINY_SOURCE, make_bundle
from servers import RunningServer, start_server, wait_until
from stream_models import BATCH_SOURCE, TALKER_SOURCE

from easytensor_jupyter.bundle import Batching
from easytensor_jupyter.client import Client
from easytensor_jupyter.errors import EasyTensorError


@pytest.fixture(scope="module")
def streamer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("stream-home")
    running = start_server(home, "--stream-chunk-timeout", "1.5", "--stream-timeout", "2")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def upload(streamer: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    made: dict[str, str] = {}

    def up(name: str, source: str = TALKER_SOURCE, cls: str = "Talker", **kw: Any) -> str:
        if name not in made:
            folder = tmp_path_factory.mktemp("bundle")
            bundle = make_bundle(folder, name=name, source=source, class_name=cls, **kw)
            response = streamer.upload(bundle)
            assert response.status_code == 201, response.text
            made[name] = response.json()["id"]
        return made[name]

    return up


def _post(
    server: RunningServer, model_id: str, body: Any, accept: str | None = None, **kw: Any
) -> requests.Response:
    headers = {**server.admin, **({"Accept": accept} if accept else {})}
    return requests.post(
        f"{server.url}/v1/models/{model_id}/predict",
        json=body,
        headers=headers,
        timeout=30,
        stream=True,
        **kw,
    )


def _sse(response: requests.Response) -> list[tuple[str, Any]]:
    """(event, data) pairs; the event of a plain ``data:`` line is "message"."""
    events, event, data = [], "message", None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            events.append((event, data))
            event, data = "message", None
    return events


def test_server_sent_events_carry_each_chunk_then_the_version_and_timings(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    model_id = upload("talker")
    response = _post(streamer, model_id, {"instances": ["hello"]}, "text/event-stream")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response)
    assert events[:-1] == [("message", c) for c in "hello"]
    kind, done = events[-1]
    assert kind == "done"
    assert done["version"] == 1 and done["model_id"] == model_id and done["chunks"] == 5
    assert done["first_chunk_ms"] > 0 and done["latency_ms"] >= done["first_chunk_ms"]
    # ?stream=true is the same answer; tensors inside chunks arrive as lists.
    query = _post(streamer, model_id, {"instances": [{"n": 2}]}, params={"stream": "true"})
    assert [data for _, data in _sse(query)][:2] == [{"n": 0, "t": [0]}, {"n": 1, "t": [1]}]
    # Without asking to stream the model answers as before.
    assert streamer.predict(model_id, ["x"]).json()["predictions"] == [{"steps": 0, "closed": 0}]


def test_ndjson_has_one_line_per_chunk_and_a_final_line(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    response = _post(streamer, upload("talker"), {"instances": ["ab"]}, "application/x-ndjson")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[:2] == [{"chunk": "a"}, {"chunk": "b"}]
    assert lines[2]["done"] is True and lines[2]["version"] == 1 and lines[2]["chunks"] == 2


def test_a_model_error_mid_stream_is_an_error_event_after_the_chunks_before_it(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    events = _sse(_post(streamer, upload("talker"), {"instances": ["boom"]}, "text/event-stream"))
    assert events[0] == ("message", "a")
    kind, body = events[1]
    assert kind == "error" and len(events) == 2
    assert body["error"]["code"] == "model_error"
    assert "ValueError: boom after one chunk" in body["error"]["message"]
    assert "predict_stream" in body["error"]["detail"]["traceback"]


def test_a_client_that_goes_away_stops_the_generator_in_the_worker(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    model_id = upload("talker forever")
    response = _post(streamer, model_id, {"instances": ["forever"]}, "text/event-stream")
    lines = response.iter_lines()
    got = [next(lines) for _ in range(6)]
    assert got.count(b'data: "tick"') == 3
    response.close()
    wait_until(
        lambda: streamer.predict(model_id, ["?"]).json()["predictions"][0]["closed"] == 1,
        10,
        "the generator's finally",
    )
    steps = streamer.predict(model_id, ["?"]).json()["predictions"][0]["steps"]
    time.sleep(0.3)
    assert streamer.predict(model_id, ["?"]).json()["predictions"][0]["steps"] == steps
    assert steps < 60
    assert f"stream closed after {steps} chunks" in streamer.log()


def test_the_total_timeout_stops_the_stream_and_the_worker_lives_on(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    model_id = upload("talker slow")
    events = _sse(_post(streamer, model_id, {"instances": ["slow"]}, "text/event-stream"))
    kind, body = events[-1]
    assert kind == "error" and body["error"]["code"] == "stream_timeout"
    assert "--stream-timeout" in body["error"]["message"]
    assert 3 <= len(events) - 1 <= 7
    assert streamer.predict(model_id, ["?"]).status_code == 200


def test_a_chunk_past_its_timeout_restarts_the_stuck_worker(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    model_id = upload("talker stuck")
    events = _sse(_post(streamer, model_id, {"instances": ["stuck"]}, "text/event-stream"))
    assert events[0] == ("message", "a")
    kind, body = events[1]
    assert kind == "error" and body["error"]["code"] == "timeout"
    assert "--stream-chunk-timeout" in body["error"]["message"]
    assert streamer.predict(model_id, ["?"]).json()["predictions"] == [{"steps": 0, "closed": 0}]


def test_refusals_come_before_the_stream_with_the_usual_error_body(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    plain = upload("plain", source=TINY_SOURCE, cls="Tiny")
    response = _post(streamer, plain, {"instances": ["hi"]}, "text/event-stream")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "stream_unsupported"
    assert "define predict_stream(self, input)" in error["message"]
    talker = upload("talker")
    two = _post(streamer, talker, {"instances": ["a", "b"]}, "text/event-stream")
    assert two.status_code == 422 and two.json()["error"]["code"] == "one_input_per_stream"
    bad = _post(streamer, talker, {"instances": ["a"]}, params={"stream": "maybe"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_stream_parameter"
    missing = _post(streamer, "no-such-model", {"instances": ["a"]}, "text/event-stream")
    assert missing.status_code == 404


def test_concurrent_streams_are_stepped_together_by_predict_stream_batch(
    streamer: RunningServer, upload: Callable[..., str]
) -> None:
    batching = Batching(max_batch_size=4, max_wait_ms=300)
    model_id = upload("echoes", source=BATCH_SOURCE, cls="Echoes", batching=batching)
    client = Client(streamer.url, streamer.admin_key)
    inputs = ["abc", "de", "fghi"]

    def run(text: str) -> list[Any]:
        return list(client.stream(model_id, text))

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, inputs))
    for text, chunks in zip(inputs, results, strict=True):
        assert [c["c"] for c in chunks] == list(text)
    assert max(c["batch"] for chunks in results for c in chunks) > 1


def test_client_stream_and_the_cli_print_chunks_as_they_arrive(
    streamer: RunningServer, upload: Callable[..., str], tmp_path: Path
) -> None:
    model_id = upload("talker")
    client = Client(streamer.url, streamer.admin_key)
    stream = client.stream(model_id, "stream me")
    assert "".join(stream) == "stream me" == stream.joined()
    assert stream.info is not None and stream.info["version"] == 1
    assert stream.first_chunk_s is not None
    with pytest.raises(EasyTensorError) as failed:
        list(client.stream(model_id, "boom"))
    assert failed.value.code == "model_error"
    env = {"EASYTENSOR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "easytensor_jupyter.cli", "query", model_id, "--stream"]
    command += ["--text", "hey", "--url", streamer.url, "--api-key", streamer.admin_key]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hey\n"
    assert "3 chunks, v1, first chunk" in done.stderr
