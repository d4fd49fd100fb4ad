"""Attacks on a real ``easytensor serve``, each tried as an attacker would, each bounded in time:
bodies that decode to many times their size, bodies in flight at once, a million instances,
huge tar headers, a foreign Host header, and slow or idle sockets. After each, the server is
still up and answers a real query. Memory is the server process's own (VmHWM, reset before each
attack); the figures are printed so a run shows them.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from bundles import Bundle, make_bundle
from servers import RunningServer, start_server, wait_until

__all__: list[str] = []

BOUNDED_ARGS = (
    "--no-standby",
    "--max-upload-mb",
    "512",
    "--header-timeout",
    "2",
    "--body-timeout",
    "2",
    "--idle-timeout",
    "2",
    "--max-connections",
    "64",
    "--allowed-host",
    "models.example",
)
MB = 1 << 20


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("bounded"), *BOUNDED_ARGS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def model(bounded: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    answer = bounded.upload(make_bundle(tmp_path_factory.mktemp("tiny"), name="bounds"))
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert bounded.predict(body["id"], ["warm up"]).status_code == 200
    return body


class Memory:
    """The server's resident memory: now, and the peak since this was made."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.before = self._field("VmRSS")

    def _field(self, name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {name} for {self.pid}")

    def peak_growth(self) -> float:
        return self._field("VmHWM") - self.before

    def growth(self) -> float:
        return self._field("VmRSS") - self.before

    def report(self, label: str) -> str:
        return (
            f"{label}: server RSS {self.before:.0f} MB before, peak +{self.peak_growth():.0f} MB, "
            f"after +{self.growth():.0f} MB"
        )


def _still_answers(server: RunningServer, model_id: str) -> None:
    assert server.proc.poll() is None, server.log()[-2000:]
    response = server.predict(model_id, ["still here"])
    assert response.status_code == 200, response.text


def _post_json_bytes(server: RunningServer, model_id: str, body: bytes) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/models/{model_id}/predict",
        data=body,
        headers={**server.admin, "Content-Type": "application/json"},
        timeout=60,
    )


def _instances(item: bytes, count: int) -> bytes:
    return b'{"instances":[' + b",".join([item] * count) + b"]}"


@pytest.mark.parametrize(
    ("label", "build", "status", "code", "option", "peak_mb"),
    [
        ("16 MB of empty lists", lambda: _instances(b"[]", 16 * MB // 3), 413, "too_many_items",
         "--max-json-items", 120),
        ("8 MB of empty objects", lambda: _instances(b"{}", 8 * MB // 3), 413, "too_large",
         "--max-decoded-mb", 80),
        ("65 levels deep", lambda: _instances(b"[" * 63 + b"]" * 63, 1), 422, "too_deep",
         "--max-json-depth", 50),
        ("1M instances", lambda: _instances(b"[1.0,2.0,3.0,4.0]", 1_000_000), 413,
         "too_many_instances", "--max-instances", 600),
    ],
)  # fmt: skip
def test_bodies_that_decode_too_large_are_refused(
    bounded: RunningServer,
    model: dict[str, Any],
    label: str,
    build: Callable[[], bytes],
    status: int,
    code: str,
    option: str,
    peak_mb: float,
) -> None:
    body = build()
    memory = Memory(bounded.proc.pid)
    started = time.monotonic()
    response = _post_json_bytes(bounded, model["id"], body)
    elapsed = time.monotonic() - started
    del body
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == code and option in error["message"], error
    time.sleep(1.5)  # the server hands freed memory back a second after a large body
    print(f"\n{memory.report(label)}, answered {status} in {elapsed:.2f} s")
    assert memory.peak_growth() < peak_mb
    assert memory.growth() < 40
    _still_answers(bounded, model["id"])


def test_a_large_batch_is_answered_and_its_memory_returned(
    bounded: RunningServer, model: dict[str, Any]
) -> None:
    body = _instances(b"[1.0,2.0,3.0,4.0]", 100_000)
    memory = Memory(bounded.proc.pid)
    response = _post_json_bytes(bounded, model["id"], body)
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["predictions"]) == 100_000
    del response
    time.sleep(1.5)
    print(f"\n{memory.report('100k instances answered')}")
    assert memory.growth() < 60


def _tar_with_header(kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo("././@LongLink")
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT) + b"x" * size + b"\0" * (-size % 512)


@pytest.mark.parametrize(
    ("kind", "words"), [(tarfile.XHDTYPE, "PAX"), (tarfile.GNUTYPE_LONGNAME, "GNU long name")]
)
def test_huge_tar_headers_are_refused_unread(
    bounded: RunningServer, model: dict[str, Any], kind: bytes, words: str
) -> None:
    data = _tar_with_header(kind, 64 * MB)
    memory = Memory(bounded.proc.pid)
    response = requests.post(
        f"{bounded.url}/v1/models",
        data=data,
        headers={**bounded.admin, "Content-Type": "application/x-tar"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_bundle" and words in error["message"]
    print(f"\n{memory.report(f'64 MB {words} header')}")
    assert memory.peak_growth() < 30
    _still_answers(bounded, model["id"])


def _with_host(server: RunningServer, path: str, host: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", headers={**server.admin, "Host": host}, timeout=10)


def test_foreign_host_headers_are_refused(bounded: RunningServer, model: dict[str, Any]) -> None:
    port = urlsplit(bounded.url).port
    for path in ("/metrics", "/openapi.json", "/health", "/v1/models"):
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}", "10.9.8.7"):
            response = _with_host(bounded, path, host)
            assert response.status_code == 400, (path, host, response.text)
            error = response.json()["error"]
            assert error["code"] == "host_not_allowed" and "--allowed-host" in error["message"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "models.example"):
            assert _with_host(bounded, path, host).status_code == 200, (path, host)
    predict = requests.post(
        f"{bounded.url}/v1/models/{model['id']}/predict",
        json={"instances": ["x"]},
        headers={"Authorization": f"Bearer {model['query_token']}", "Host": "evil.example"},
        timeout=10,
    )
    assert predict.status_code == 400 and predict.json()["error"]["code"] == "host_not_allowed"
    _still_answers(bounded, model["id"])


def _address(server: RunningServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _closed(sock: socket.socket, wait: float) -> bool:
    """True once the server has closed its end (EOF or reset), reading whatever it sent."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def _timed_query(server: RunningServer, model: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = requests.post(
        f"{server.url}/v1/models/{model['id']}/predict",
        json={"instances": ["real query"]},
        headers={"Authorization": f"Bearer {model['query_token']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return (time.perf_counter() - started) * 1000


def test_slowloris_sockets_are_closed_and_real_queries_keep_their_latency(
    bounded: RunningServer, model: dict[str, Any]
) -> None:
    quiet = [_timed_query(bounded, model) for _ in range(10)]
    address = _address(bounded)
    slow: list[socket.socket] = []
    stop = threading.Event()
    opened = time.monotonic()
    for i in range(200):
        sock = socket.create_connection(address, timeout=5)
        if i % 2:
            sock.sendall(b"POST /v1/models/x/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
        slow.append(sock)

    def trickle() -> None:
        while not stop.wait(0.3):
            for sock in slow[1::2]:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    dripper = threading.Thread(target=trickle, daemon=True)
    dripper.start()
    try:
        attacked = []
        while time.monotonic() - opened < 3.0:
            attacked.append(_timed_query(bounded, model))
            time.sleep(0.05)
        deadline = opened + 2 + 4
        still_open = [s for s in slow if not _closed(s, max(0.01, deadline - time.monotonic()))]
    finally:
        stop.set()
        dripper.join(5)
        for sock in slow:
            sock.close()
    print(
        f"\nreal query latency: {statistics.median(quiet):.1f} ms median before; during 200 "
        f"slow sockets {statistics.median(attacked):.1f} ms median, {max(attacked):.1f} ms max "
        f"over {len(attacked)} queries; slow sockets left open after 6 s: {len(still_open)}"
    )
    assert still_open == []
    assert max(attacked) < 1000 + 5 * max(quiet)
    _still_answers(bounded, model["id"])


def _raw(server: RunningServer, data: bytes) -> socket.socket:
    sock = socket.create_connection(_address(server), timeout=5)
    sock.sendall(data)
    return sock


def _read_all(sock: socket.socket, wait: float) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.settimeout(wait)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        raise AssertionError(f"the server kept the socket open past {wait} s") from None
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - started


def test_stalled_bodies_idle_sockets_and_huge_headers_are_cut_off(
    bounded: RunningServer, model: dict[str, Any]
) -> None:
    path = f"/v1/models/{model['id']}/predict"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {model['query_token']}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    answer, took = _read_all(_raw(bounded, head + b'{"instances'), 6)
    assert answer.startswith(b"HTTP/1.1 408") and b"--body-timeout" in answer, answer
    assert 1.5 < took < 5

    unauthorised = head.replace(model["query_token"].encode(), b"wrong")
    sock = _raw(bounded, unauthorised + b"{")
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 401")
    started = time.monotonic()
    for _ in range(20):  # keep trickling the refused body: the server stops listening anyway
        try:
            sock.send(b" ")
        except OSError:
            break
        if _closed(sock, 0.5):
            break
    assert time.monotonic() - started < 5
    sock.close()

    idle = _raw(bounded, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer, took = _read_all(idle, 6)
    assert answer.startswith(b"HTTP/1.1 200") and took < 4

    huge = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (200 << 10)
    answer, _ = _read_all(_raw(bounded, huge), 6)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    _still_answers(bounded, model["id"])


def test_a_response_nobody_reads_is_dropped(bounded: RunningServer, model: dict[str, Any]) -> None:
    """The model echoes a 24 MB text; the client sends the query and stops reading. The server
    drops the connection once writing has stalled for --body-timeout (2 s) instead of holding
    the answer for ever."""
    text = b"a" * (24 * MB)
    head = (
        f"POST /v1/models/{model['id']}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {model['query_token']}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(text)}\r\n\r\n"
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.connect(_address(bounded))
    sock.sendall(head + text)
    sock.settimeout(60)
    assert sock.recv(1, socket.MSG_PEEK) == b"H"  # the answer has begun; nothing is read
    time.sleep(2 + 2)
    received, _ = _read_all(sock, 10)
    sock.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received) < len(text), "the whole answer was still there to read"
    _still_answers(bounded, model["id"])


def test_budget_and_busy_connections(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    """Bodies in flight share a budget (the rest wait their turn), a body larger than all of it
    is refused; when every connection has a request in progress a new one is told so; and
    ``--allowed-host '*'`` warns at start."""
    server = spawn_server(
        "--no-standby", "--max-inflight-mb", "100", "--max-connections", "6", "--allowed-host", "*"
    )
    assert "DNS rebinding" in server.log()
    assert requests.get(f"{server.url}/health", headers={"Host": "any.example"}).ok
    upload = server.upload(bundle_factory(name="budget"))
    assert upload.status_code == 201, upload.text
    model_id = upload.json()["id"]
    assert server.predict(model_id, ["warm up"]).status_code == 200
    url = f"{server.url}/v1/models/{model_id}/predict"
    octets = {**server.admin, "Content-Type": "application/octet-stream"}

    big = b"\x01" * (20 * MB)  # raw bodies count three times: one fits in 100 MB at a time
    memory = Memory(server.proc.pid)

    def send_big(_: int) -> int:
        return requests.post(url, data=big, headers=octets, timeout=60).status_code

    with ThreadPoolExecutor(5) as pool:
        statuses = list(pool.map(send_big, range(5)))
    print(f"\n{memory.report('5 x 20 MB bodies at once, 100 MB budget')}; answers {statuses}")
    assert set(statuses) <= {200, 503} and 200 in statuses
    assert memory.peak_growth() < 100 + 60
    too_big = requests.post(url, data=b"\x01" * (40 * MB), headers=octets, timeout=60)
    assert too_big.status_code == 413 and "--max-inflight-mb" in too_big.text

    head = (
        f"POST /v1/models/{model_id}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.admin_key}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    busy = [_raw(server, head + b"{") for _ in range(6)]
    try:
        time.sleep(0.5)
        refused = requests.get(f"{server.url}/health", timeout=10)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "too_many_connections"
    finally:
        for sock in busy:
            sock.close()
    wait_until(lambda: requests.get(f"{server.url}/health", timeout=10).ok, 10, "a free slot")
    assert server.predict(model_id, ["after"]).status_code == 200
