"""Uploads: content-addressed storage, re-uploads, limits, and every way a bundle can be wrong."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from bundles import TINY_SOURCE, Bundle, raw_tar
from servers import RunningServer


def _blobs(server: RunningServer) -> set[str]:
    return {p.name for p in (server.store / "blobs").glob("??/*")}


def _names(server: RunningServer) -> set[str]:
    models = requests.get(f"{server.url}/v1/models", headers=server.admin).json()["models"]
    return {m["name"] for m in models}


def _post_tar(server: RunningServer, data: bytes) -> requests.Response:
    headers = {**server.admin, "Content-Type": "application/x-tar"}
    return requests.post(f"{server.url}/v1/models", data=data, headers=headers, timeout=60)


def _raw_http(
    server: RunningServer, head: str, body_parts: list[bytes]
) -> tuple[int, dict[str, Any], float]:
    """Send a request by hand and read the answer; returns (status, JSON body, seconds)."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        for part in body_parts:
            sock.sendall(part)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b"}}" in chunks[-1]:
                break
        elapsed = time.monotonic() - started
    raw = b"".join(chunks)
    header, _, body = raw.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in header.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, json.loads(body), elapsed


def test_identical_blobs_are_stored_once_and_can_be_skipped(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    source = TINY_SOURCE + f"\n# {unique_name}\n"
    first = bundle_factory(name=unique_name + " a", source=source)
    second = bundle_factory(name=unique_name + " b", source=source)
    hashes = sorted(e.sha256 for e in first.manifest.files.values())
    assert hashes == sorted(e.sha256 for e in second.manifest.files.values())
    missing_url = f"{server.url}/v1/blobs/missing"
    assert requests.post(missing_url, json={"sha256": hashes}, headers=server.admin).json() == {
        "missing": [h for h in hashes if h not in _blobs(server)]
    }

    assert server.upload(first).status_code == 201
    assert server.upload(second).status_code == 201
    stored = list((server.store / "blobs").glob("??/*"))
    assert all(sum(p.name == h for p in stored) == 1 for h in hashes)
    assert requests.post(missing_url, json={"sha256": hashes}, headers=server.admin).json() == {
        "missing": []
    }

    third = bundle_factory(name=unique_name + " c", source=source)
    skipped = server.upload(third, skip=frozenset(hashes))
    assert skipped.status_code == 201, skipped.text
    assert skipped.json()["received"] == []
    assert sorted(skipped.json()["reused"]) == ["model.py", "weights.safetensors"]
    assert server.predict(skipped.json()["id"], ["x"]).status_code == 200


def test_unchanged_reupload_and_force(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    bundle = bundle_factory(name=unique_name)
    first = server.upload(bundle).json()
    again = server.upload(bundle_factory(name=unique_name), params={"create_token": "false"})
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["unchanged"] and body["version"] == 1 and body["id"] == first["id"]
    assert body["query_token"] is None
    forced = server.upload(bundle, params={"force": "true"})
    assert forced.status_code == 201 and forced.json()["version"] == 2
    changed = server.upload(bundle_factory(name=unique_name, init_kwargs={"tag": "new"}))
    assert changed.status_code == 201 and changed.json()["version"] == 3


def test_declared_body_over_the_limit_is_refused_unread(server: RunningServer) -> None:
    parts = urlsplit(server.url)
    head = (
        f"POST /v1/models HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {server.admin_key}\r\nContent-Type: application/x-tar\r\n"
        f"Content-Length: {10 << 30}\r\n\r\n"
    )
    status, body, elapsed = _raw_http(server, head, [b"\0" * 1024])
    assert status == 413 and body["error"]["code"] == "too_large"
    assert elapsed < 5


def test_chunked_body_is_cut_at_the_limit(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    big = bundle_factory(name=unique_name, init_kwargs={"n_in": 1000, "n_out": 1200})
    data = big.tar_bytes()
    assert len(data) > 4.2 * (1 << 20)
    data = data[: int(4.2 * (1 << 20))]
    parts = urlsplit(server.url)
    head = (
        f"POST /v1/models HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {server.admin_key}\r\nContent-Type: application/x-tar\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    step = 256 << 10
    chunks = [
        b"%x\r\n%s\r\n" % (len(data[i : i + step]), data[i : i + step])
        for i in range(0, len(data), step)
    ]
    before = _blobs(server)
    status, body, _ = _raw_http(server, head, chunks)
    assert status == 413 and body["error"]["code"] == "too_large"
    assert unique_name not in _names(server)
    assert _blobs(server) <= before | {big.manifest.files["model.py"].sha256}


def test_broken_bundles_are_refused_and_leave_nothing(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    source = TINY_SOURCE + f"\n# {unique_name}\n"
    bundle = bundle_factory(name=unique_name, source=source, seed=int(unique_name[-8:], 16))
    manifest = (bundle.directory / "manifest.json").read_bytes()
    model_py = (bundle.directory / "model.py").read_bytes()
    good = bundle.tar_bytes()
    before = _blobs(server)

    cases: list[tuple[bytes, int, str, str]] = [
        (b"this is not a tar file at all" * 100, 400, "bad_bundle", "not a tar"),
        (good[: len(good) // 2 + 100], 400, "bad_bundle", "truncated"),
        (
            raw_tar([("manifest.json", None, manifest), ("../evil.py", None, b"x")]),
            400,
            "bad_bundle",
            "not listed",
        ),
        (
            raw_tar([("manifest.json", None, manifest), ("model.py", b"/etc/passwd", b"")]),
            400,
            "bad_bundle",
            "symlink",
        ),
        (raw_tar([("model.py", None, model_py)]), 400, "bad_bundle", "first bundle member"),
        (raw_tar([("manifest.json", None, b"{not json")]), 422, "bad_manifest", "manifest.json"),
        (
            raw_tar([("manifest.json", None, manifest), ("model.py", None, model_py[:-1] + b"#")]),
            422,
            "hash_mismatch",
            "model.py",
        ),
        (
            raw_tar([("manifest.json", None, manifest), ("model.py", None, model_py)]),
            422,
            "missing_files",
            "weights.safetensors",
        ),
    ]
    for data, status, code, words in cases:
        response = _post_tar(server, data)
        assert response.status_code == status, (code, response.text)
        error = response.json()["error"]
        assert error["code"] == code and words in error["message"], error

    assert unique_name not in _names(server)
    assert _blobs(server) == before
    assert not list((server.store / "tmp").iterdir())


def test_load_errors_are_422_and_create_nothing(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    syntax = bundle_factory(name=unique_name)
    syntax.replace_file("model.py", (TINY_SOURCE + "\ndef broken(:\n").encode())
    error = server.upload(syntax).json()["error"]
    assert error["code"] == "load_error" and error["detail"]["stage"] == "import"
    assert "SyntaxError" in error["message"]

    mis_shaped = bundle_factory(name=unique_name, init_kwargs={"n_in": 4})
    mis_shaped.manifest.init_kwargs = {"n_in": 5}
    response = server.upload(mis_shaped)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["detail"]["stage"] == "weights"
    assert "mis-shaped keys: linear.weight" in error["message"]

    wrong_class = bundle_factory(name=unique_name)
    wrong_class.manifest.class_name = "Nope"
    error = server.upload(wrong_class).json()["error"]
    assert error["code"] == "load_error" and error["detail"]["stage"] == "class"
    assert unique_name not in _names(server)


def test_concurrent_uploads_of_one_name_get_consecutive_versions(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    bundles = [bundle_factory(name=unique_name, init_kwargs={"tag": f"t{i}"}) for i in range(2)]
    results: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda b=b: results.append(server.upload(b))) for b in bundles
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [201, 201], [r.text for r in results]
    assert sorted(r.json()["version"] for r in results) == [1, 2]
    assert len({r.json()["id"] for r in results}) == 1
    model = requests.get(
        f"{server.url}/v1/models/{results[0].json()['id']}", headers=server.admin
    ).json()
    assert [v["version"] for v in model["versions"]] == [1, 2]


def test_unsupported_upload_type(server: RunningServer, tmp_path: Path) -> None:
    headers = {**server.admin, "Content-Type": "application/zip"}
    response = requests.post(f"{server.url}/v1/models", data=b"PK", headers=headers)
    assert (
        response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    )
