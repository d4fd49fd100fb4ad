"""The HTTP API end to end: a real server, real workers, the session's server shared."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import requests
from bundles import Bundle
from servers import RunningServer


def _error(response: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "detail"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def test_health_docs_and_openapi(server: RunningServer) -> None:
    health = requests.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["version"]
    assert {"models", "workers"} <= set(health)
    assert "swagger" in requests.get(f"{server.url}/docs").text.lower()
    spec = requests.get(f"{server.url}/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/models", "/v1/models/{model_id}/predict", "/query/", "/health"} <= set(paths)
    predict_body = paths["/v1/models/{model_id}/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/plain", "application/octet-stream"} <= set(predict_body)
    assert "application/x-tar" in paths["/v1/models"]["post"]["requestBody"]["content"]


def test_upload_list_describe_and_predict(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    up = server.upload(bundle_factory(name=unique_name))
    assert up.status_code == 201, up.text
    body = up.json()
    assert body["name"] == unique_name and body["version"] == 1 and not body["unchanged"]
    assert body["id"].startswith("test-model-") and len(body["id"].rsplit("-", 1)[1]) == 6
    assert body["query_token"].startswith("et_q_")
    assert sorted(body["received"]) == ["model.py", "weights.safetensors"]
    model_id, token = body["id"], body["query_token"]

    listed = requests.get(f"{server.url}/v1/models", headers=server.admin).json()["models"]
    assert model_id in [m["id"] for m in listed]
    model = requests.get(f"{server.url}/v1/models/{model_id}", headers=server.admin).json()
    assert model["default_version"] == 1 and model["status"] == "ready"
    assert model["endpoint"] == f"{server.url}/v1/models/{model_id}/predict"
    version = model["versions"][0]
    assert version["class_name"] == "Tiny" and version["status"] == "ready"
    assert version["input_kind"] == "text" and version["sample"]["input"] == "hello"
    assert version["size_bytes"] == model["size_bytes"] > 0

    raw = b"\x89PNG\r\n\x1a\n-image-bytes"
    instances = ["hi", [1, 2, 3, 4], {"a": 1}, {"b64": base64.b64encode(raw).decode()}]
    answer = server.predict(model_id, instances, token)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["model_id"] == model_id and out["version"] == 1 and out["latency_ms"] >= 0
    text, vector, echo, data = out["predictions"]
    assert text == {"text": "hi", "length": 2, "tag": "base"}
    assert len(vector) == 2 and all(isinstance(v, float) for v in vector)
    assert echo == {"echo": {"a": 1}}
    assert data == {"bytes": len(raw), "head": list(raw[:4])}

    url = f"{server.url}/v1/models/{model_id}/predict"
    auth = {"Authorization": f"Bearer {token}"}
    for content_type, payload, expected in [
        (
            "text/plain; charset=utf-8",
            "héllo".encode(),
            {"text": "héllo", "length": 5, "tag": "base"},
        ),
        ("application/octet-stream", b"\x00\x01\x02", {"bytes": 3, "head": [0, 1, 2]}),
        ("image/png", raw, {"bytes": len(raw), "head": list(raw[:4])}),
    ]:
        r = requests.post(url, data=payload, headers={**auth, "Content-Type": content_type})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == [expected]

    legacy = requests.post(
        f"{server.url}/query/", json={"instances": ["old"]}, headers={"accessToken": token}
    )
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["predictions"][0]["text"] == "old"
    assert legacy.json()["model_id"] == model_id

    stats = requests.get(f"{server.url}/v1/models/{model_id}", headers=server.admin).json()["stats"]
    assert stats["requests"] == 5 and stats["errors"] == 0 and stats["last_latency_ms"] > 0


def test_versions_default_and_delete(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    first = server.upload(bundle_factory(name=unique_name, init_kwargs={"tag": "one"})).json()
    second = server.upload(bundle_factory(name=unique_name, init_kwargs={"tag": "two"})).json()
    model_id = first["id"]
    assert second["id"] == model_id and second["version"] == 2
    models_url = f"{server.url}/v1/models/{model_id}"

    def tag(version: int | None = None) -> str:
        params = {"version": version} if version else None
        r = server.predict(model_id, ["x"], params=params)
        assert r.status_code == 200, r.text
        result: str = r.json()["predictions"][0]["tag"]
        return result

    assert tag() == "two" and tag(1) == "one" and tag(2) == "two"
    _error(server.predict(model_id, ["x"], params={"version": 9}), 404, "not_found")

    rolled = requests.put(f"{models_url}/default", json={"version": 1}, headers=server.admin)
    assert rolled.status_code == 200 and rolled.json()["default_version"] == 1
    assert tag() == "one"
    _error(requests.put(f"{models_url}/default", json={"version": 7}, headers=server.admin), 404)

    _error(requests.delete(f"{models_url}/versions/1", headers=server.admin), 409, "conflict")
    assert requests.delete(f"{models_url}/versions/2", headers=server.admin).status_code == 204
    model = requests.get(models_url, headers=server.admin).json()
    assert [v["version"] for v in model["versions"]] == [1]
    third = server.upload(bundle_factory(name=unique_name, init_kwargs={"tag": "three"})).json()
    assert third["version"] == 3, "version numbers are never reused"

    assert requests.put(f"{models_url}/default", json={"version": 3}, headers=server.admin).ok
    assert requests.delete(f"{models_url}/versions/1", headers=server.admin).status_code == 204
    assert requests.delete(f"{models_url}/versions/3", headers=server.admin).status_code == 204
    _error(requests.get(models_url, headers=server.admin), 404, "not_found")


def test_tokens_create_list_use_revoke(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    tokens_url = f"{server.url}/v1/models/{model_id}/tokens"
    created = requests.post(tokens_url, headers=server.admin)
    assert created.status_code == 201
    token_id, token = created.json()["id"], created.json()["token"]
    assert token.startswith("et_q_")
    assert server.predict(model_id, ["x"], token).status_code == 200

    listed = requests.get(tokens_url, headers=server.admin).json()["tokens"]
    assert len(listed) == 2
    assert all(set(t) == {"id", "created_at", "revoked", "last_used_at", "label"} for t in listed)
    mine = next(t for t in listed if t["id"] == token_id)
    assert not mine["revoked"] and mine["last_used_at"]
    assert token not in str(listed)

    assert requests.delete(f"{tokens_url}/{token_id}", headers=server.admin).status_code == 204
    _error(server.predict(model_id, ["x"], token), 401, "token_revoked")
    assert server.predict(model_id, ["x"], tiny_model["query_token"]).status_code == 200
    listed = requests.get(tokens_url, headers=server.admin).json()["tokens"]
    assert next(t for t in listed if t["id"] == token_id)["revoked"]
    _error(requests.delete(f"{tokens_url}/tok_nope", headers=server.admin), 404)
    _error(requests.post(f"{server.url}/v1/models/nope-000000/tokens", headers=server.admin), 404)


def test_credentials(
    server: RunningServer,
    tiny_model: dict[str, Any],
    bundle_factory: Callable[..., Bundle],
    unique_name: str,
) -> None:
    model_id, token = tiny_model["id"], tiny_model["query_token"]
    as_token = {"Authorization": f"Bearer {token}"}
    models = f"{server.url}/v1/models"

    error = _error(requests.get(models), 401, "missing_credentials")
    assert "Bearer" in error["message"]
    _error(requests.get(models, headers={"Authorization": "Bearer wrong"}), 401)
    _error(requests.get(models, headers={"Authorization": "Bearer et_q_unknown"}), 401)
    _error(requests.post(f"{models}/{model_id}/predict", json={"instances": [1]}), 401)

    _error(requests.get(models, headers=as_token), 403, "admin_required")
    _error(requests.delete(f"{models}/{model_id}", headers=as_token), 403, "admin_required")
    upload = server.upload(bundle_factory(name=unique_name + " x"), headers=as_token)
    _error(upload, 403, "admin_required")

    other = server.upload(bundle_factory(name=unique_name + " other")).json()
    _error(server.predict(other["id"], ["x"], token), 403, "wrong_model")
    _error(server.predict("no-such-model-000000", ["x"]), 404, "not_found")
    _error(requests.get(f"{models}/no-such-model-000000", headers=server.admin), 404)
    _error(
        requests.post(f"{server.url}/query/", json={"instances": ["x"]}, headers=server.admin), 403
    )
    assert server.predict(model_id, ["x"], server.admin_key).status_code == 200


def test_bad_request_bodies(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    url = f"{server.url}/v1/models/{model_id}/predict"
    json_headers = {**server.admin, "Content-Type": "application/json"}
    _error(requests.post(url, data=b'{"instances": [', headers=json_headers), 400, "bad_json")
    for body in [{}, {"instances": "x"}, {"instances": []}, [1, 2]]:
        _error(requests.post(url, json=body, headers=server.admin), 422, "invalid_instances")
    for depth in (63, 600, 2000):
        deep = b'{"instances": [' + b"[" * depth + b"1" + b"]" * depth + b"]}"
        error = _error(requests.post(url, data=deep, headers=json_headers), 422, "too_deep")
        assert "--max-json-depth" in error["message"]
    bad_b64 = {"instances": [{"b64": "!!!"}]}
    _error(requests.post(url, json=bad_b64, headers=server.admin), 422, "invalid_instances")
    xml = {**server.admin, "Content-Type": "application/xml"}
    _error(requests.post(url, data=b"<a/>", headers=xml), 415, "unsupported_media_type")
    latin = {**server.admin, "Content-Type": "text/plain; charset=nope"}
    _error(requests.post(url, data=b"x", headers=latin), 400)

    default_url = f"{server.url}/v1/models/{model_id}/default"
    _error(requests.put(default_url, data=b"{", headers=json_headers), 400, "bad_json")
    error = _error(requests.put(default_url, json={"version": "x"}, headers=server.admin), 422)
    assert error["code"] == "invalid_request" and "version" in error["message"]
    _error(
        requests.post(
            f"{server.url}/v1/blobs/missing", json={"sha256": ["x"]}, headers=server.admin
        ),
        422,
    )
    _error(requests.get(f"{server.url}/no/such/route"), 404, "not_found")
    _error(requests.delete(f"{server.url}/health"), 405, "method_not_allowed")
    upload_json = {**server.admin, "Content-Type": "application/json"}
    _error(requests.post(f"{server.url}/v1/models", data=b"{}", headers=upload_json), 415)


def test_model_errors_are_422(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    error = _error(server.predict(model_id, ["fine", "raise"]), 422, "model_error")
    assert "boom: cannot handle this input" in error["message"]
    assert error["detail"]["index"] == 1 and error["detail"]["exception"] == "ValueError"
    assert "ValueError" in error["detail"]["traceback"]
    error = _error(server.predict(model_id, ["object"]), 422, "output_not_json")
    assert "object" in error["message"]
    assert server.predict(model_id, ["fine"]).status_code == 200


def test_metrics_move(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]

    def sample(text: str, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

    before = requests.get(f"{server.url}/metrics").text
    for _ in range(3):
        assert server.predict(model_id, ["x"]).status_code == 200
    after = requests.get(f"{server.url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    route = 'easytensor_http_requests_total{method="POST",route="/v1/models/{model_id}/predict",status="200"}'
    assert sample(after.text, route) >= sample(before, route) + 3
    count = f'easytensor_predict_latency_seconds_count{{model="{model_id}"}}'
    assert sample(after.text, count) == 3
    assert sample(after.text, 'easytensor_uploads_total{result="created"}') >= 1
    assert sample(after.text, "easytensor_upload_bytes_received_total") > 0


def test_delete_model_drops_tokens_and_files(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    bundle = bundle_factory(name=unique_name, source=_unique_source(unique_name))
    body = server.upload(bundle).json()
    blob = bundle.manifest.files["model.py"].sha256
    blob_path = server.store / "blobs" / blob[:2] / blob
    assert blob_path.is_file() and oct(blob_path.stat().st_mode & 0o777) == "0o444"
    assert server.predict(body["id"], ["x"], body["query_token"]).status_code == 200

    assert (
        requests.delete(f"{server.url}/v1/models/{body['id']}", headers=server.admin).status_code
        == 204
    )
    assert not blob_path.exists()
    _error(server.predict(body["id"], ["x"], body["query_token"]), 401, "invalid_token")
    _error(requests.get(f"{server.url}/v1/models/{body['id']}", headers=server.admin), 404)
    _error(requests.delete(f"{server.url}/v1/models/{body['id']}", headers=server.admin), 404)


def _unique_source(tag: str) -> str:
    from bundles import TINY_SOURCE

    return TINY_SOURCE + f"\n# {tag}\n"
