"""The fast paths keep the contract: the prediction fast path answers every error with the JSON
shape and auth rules of the FastAPI routes, coalesced worker frames answer each request with its
own result, and ``--workers 2`` spreads a model's load over two processes."""

from __future__ import annotations

import struct
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
import requests
from bundles import Bundle
from servers import RunningServer

from easytensor_jupyter.inference.runtime.protocol import decode_body, encode_request, predict_frame

PID_SOURCE = textwrap.dedent(
    """
    import time
    import uuid

    import torch
    from torch import nn

    # In its own PID namespace every worker is pid 2: tell the processes apart another way.
    PROCESS = uuid.uuid4().hex


    class Pid(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def predict_single(self, x):
            time.sleep(0.05)
            return {"pid": PROCESS, "x": x}
    """
)


def _post(server: RunningServer, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{server.url}{path}", timeout=60, **kwargs)


def _error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert set(error) == {"code", "message", "detail"}
    return error


def test_predict_frames_carry_many_requests() -> None:
    requests_packed = [encode_request(i, [i, b"\x00", {"k": "v"}]) for i in range(40)]
    frame = predict_frame(requests_packed)
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    message = decode_body(frame[4:])
    assert message["t"] == "predict"
    assert message["requests"] == [
        {"id": i, "instances": [i, b"\x00", {"k": "v"}]} for i in range(40)
    ]
    assert msgpack.unpackb(frame[4:], raw=False)["requests"][39]["id"] == 39


def test_fast_path_keeps_auth_rules(
    server: RunningServer, tiny_model: dict[str, Any], bundle_factory: Callable[..., Bundle]
) -> None:
    model_id, token = tiny_model["id"], tiny_model["query_token"]
    path = f"/v1/models/{model_id}/predict"
    body = {"instances": ["hi"]}
    missing = _post(server, path, json=body)
    _error(missing, 401, "missing_credentials")
    assert missing.headers["www-authenticate"] == "Bearer"
    _error(
        _post(server, path, json=body, headers={"Authorization": "Bearer et_q_nope"}),
        401,
        "invalid_token",
    )
    _error(
        _post(server, path, json=body, headers={"Authorization": "Bearer wrong"}),
        401,
        "invalid_credentials",
    )
    other = server.upload(bundle_factory(name=f"other {model_id}"))
    assert other.status_code == 201, other.text
    other_token = other.json()["query_token"]
    _error(
        _post(server, path, json=body, headers={"Authorization": f"Bearer {other_token}"}),
        403,
        "wrong_model",
    )
    _error(_post(server, "/query/", json=body, headers=server.admin), 403, "query_token_required")
    ok = _post(server, path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"][0]["text"] == "hi"
    legacy = _post(server, "/query/", json=body, headers={"accessToken": token})
    assert legacy.status_code == 200 and legacy.json()["model_id"] == model_id


def test_fast_path_keeps_error_shapes(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    path = f"/v1/models/{model_id}/predict"
    admin = server.admin
    bad_json = _post(
        server, path, data=b"{nope", headers={**admin, "Content-Type": "application/json"}
    )
    _error(bad_json, 400, "bad_json")
    _error(_post(server, path, json={"instances": []}, headers=admin), 422, "invalid_instances")
    _error(_post(server, path, json=[1], headers=admin), 422, "invalid_instances")
    _error(
        _post(server, path, data=b"x", headers={**admin, "Content-Type": "application/xml"}),
        415,
        "unsupported_media_type",
    )
    _error(
        _post(server, "/v1/models/nope/predict", json={"instances": [1]}, headers=admin),
        404,
        "not_found",
    )
    _error(
        _post(server, f"{path}?version=99", json={"instances": [1]}, headers=admin),
        404,
        "not_found",
    )
    # Query strings the fast path does not know go through FastAPI's validation.
    invalid = _post(server, f"{path}?version=abc", json={"instances": [1]}, headers=admin)
    assert invalid.status_code == 422 and "error" in invalid.json()
    _error(_post(server, path, json={"instances": ["raise"]}, headers=admin), 422, "model_error")
    text = _post(server, path, data="plain", headers={**admin, "Content-Type": "text/plain"})
    assert text.status_code == 200 and text.json()["predictions"][0]["text"] == "plain"
    ok = _post(server, f"{path}?version=1", json={"instances": [[1, 2, 3, 4]]}, headers=admin)
    assert ok.status_code == 200 and ok.json()["version"] == 1
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'route="/v1/models/{model_id}/predict"' in metrics


def test_fast_path_keeps_the_body_limit(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--max-body-mb", "0.01")
    upload = server.upload(bundle_factory(name="limited"))
    assert upload.status_code == 201, upload.text
    path = f"/v1/models/{upload.json()['id']}/predict"
    big = {"instances": ["x" * 20_000]}
    error = _error(_post(server, path, json=big, headers=server.admin), 413, "too_large")
    assert error["detail"]["limit_bytes"] < 20_000

    def chunks() -> Any:
        yield b'{"instances": ["'
        for _ in range(10):
            yield b"y" * 2000
        yield b'"]}'

    chunked = _post(
        server, path, data=chunks(), headers={**server.admin, "Content-Type": "application/json"}
    )
    _error(chunked, 413, "too_large")


def test_many_concurrent_requests_each_get_their_own_answer(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    texts = [f"request {i}" for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: server.predict(model_id, [t, t + "!"]), texts))
    for text, response in zip(texts, answers, strict=True):
        assert response.status_code == 200, response.text
        first, second = response.json()["predictions"]
        assert first["text"] == text and second["text"] == text + "!"


def test_two_workers_share_the_load(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--workers", "2")
    upload = server.upload(
        bundle_factory(name="pids", source=PID_SOURCE, class_name="Pid", sample=1)
    )
    assert upload.status_code == 201, upload.text
    model_id = upload.json()["id"]
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: server.predict(model_id, [i]), range(8)))
        for i, response in enumerate(answers):
            assert response.status_code == 200, response.text
            prediction = response.json()["predictions"][0]
            assert prediction["x"] == i
            seen.add(prediction["pid"])
    assert len(seen) == 2, seen
