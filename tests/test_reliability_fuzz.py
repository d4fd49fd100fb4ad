"""Property-based fuzzing (hypothesis) of the two things strangers send: bundles and predict
bodies.

Bundle parsing runs in-process against a real ``BlobStore`` so thousands of inputs are cheap:
any input must end in a ``ReceivedBundle`` or a ``BundleError`` (the server turns that into a
4xx), never another exception, never a hang, and never a temp file left behind. Predict bodies
go over HTTP to the real server: no 5xx, a JSON error shape on every 4xx, and an answer within
seconds.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Any

import pytest
import requests
from bundles import make_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import RunningServer

from easytensor_jupyter.bundle import BundleError, Limits, ReceivedBundle, read_bundle_stream
from easytensor_jupyter.inference.store.blobs import BlobStore, PinningSink

__all__: list[str] = []

TRIED: dict[str, int] = {"bundle": 0, "predict": 0}
_LIMITS = Limits(max_file_bytes=1 << 20)
_MAGIC = {"hang", "exit", "segv", "raise", "object", "env", "print"}


@pytest.fixture(scope="module")
def valid_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_bundle(tmp_path_factory.mktemp("fuzz") / "b", name="fuzz").tar_bytes()


@pytest.fixture(scope="module")
def blob_store(tmp_path_factory: pytest.TempPathFactory) -> BlobStore:
    store = BlobStore(tmp_path_factory.mktemp("fuzzstore"))
    store.prepare()
    return store


def _parse(store: BlobStore, data: bytes) -> ReceivedBundle | BundleError:
    """What the server's reader makes of ``data``; anything but these two is a bug."""
    TRIED["bundle"] += 1
    sink = PinningSink(store)
    started = time.monotonic()
    try:
        return read_bundle_stream(io.BytesIO(data), sink, _LIMITS)
    except BundleError as exc:
        return exc
    finally:
        sink.release()
        assert time.monotonic() - started < 5, "parsing took too long"
        assert list(store.tmp_dir.iterdir()) == [], "a temp file was left behind"


def _tar(members: list[tuple[str, bytes, bool]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, symlink in members:
            info = tarfile.TarInfo(name)
            if symlink:
                info.type = tarfile.SYMTYPE
                info.linkname = data.decode("latin-1")
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_names = st.sampled_from(
    ["manifest.json", "model.py", "weights.safetensors", "../evil", "/abs", "a/../../b", "x"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(blob_store: BlobStore, data: bytes) -> None:
    assert isinstance(_parse(blob_store, data), BundleError)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_bundles_are_refused_or_read_whole(
    blob_store: BlobStore, valid_tar: bytes, data: st.DataObject
) -> None:
    raw = bytearray(valid_tar)
    action = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    else:
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=600))
    outcome = _parse(blob_store, bytes(raw))
    if isinstance(outcome, ReceivedBundle):
        for entry in outcome.manifest.files.values():
            assert blob_store.has(entry.sha256)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    manifest=st.one_of(
        _json, st.fixed_dictionaries({"name": st.text(max_size=10), "files": _json})
    ),
    members=st.lists(st.tuples(_names, st.binary(max_size=64), st.booleans()), max_size=4),
)
def test_structured_garbage_bundles_are_refused(
    blob_store: BlobStore, manifest: Any, members: list[tuple[str, bytes, bool]]
) -> None:
    first = [("manifest.json", json.dumps(manifest).encode(), False)]
    outcome = _parse(blob_store, _tar(first + members))
    assert isinstance(outcome, BundleError)
    assert 400 <= outcome.status < 500


_instance = st.one_of(
    _json.filter(lambda v: not (isinstance(v, str) and v in _MAGIC)),
    st.fixed_dictionaries({"b64": st.text(max_size=40)}),
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=4, max_size=4),
)
_body = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(_instance, max_size=5)}),
    _json,
    st.binary(max_size=512),
    st.text(max_size=200).filter(lambda t: t not in _MAGIC),
)
_content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "text/plain; charset=latin-1",
        "text/plain; charset=bogus",
        "application/octet-stream",
        "image/png",
        "application/xml",
        "",
        "multipart/form-data",
        "application/vnd.api+json",
    ]
)
_ALLOWED = {200, 400, 401, 403, 404, 413, 415, 422}


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_body, content_type=_content_types, legacy=st.booleans())
def test_predict_bodies_never_break_the_server(
    server: RunningServer, tiny_model: dict[str, Any], body: Any, content_type: str, legacy: bool
) -> None:
    TRIED["predict"] += 1
    if isinstance(body, bytes):
        payload = body
    elif isinstance(body, str) and not content_type.startswith("application/json"):
        payload = body.encode()
    else:
        payload = json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    token = tiny_model["query_token"]
    if legacy:
        url, headers["accessToken"] = f"{server.url}/query/", token
    else:
        url = f"{server.url}/v1/models/{tiny_model['id']}/predict"
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    response = requests.post(url, data=payload, headers=headers, timeout=20)
    assert time.monotonic() - started < 10
    assert response.status_code in _ALLOWED, (response.status_code, response.text[:500])
    answer = response.json()
    if response.status_code >= 400:
        assert set(answer) == {"error"} and answer["error"]["code"] and answer["error"]["message"]
    else:
        assert isinstance(answer["predictions"], list)


def test_fuzzing_figures(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    """Runs last in this file: the server is still healthy after every fuzz input above."""
    assert server.predict(tiny_model["id"], ["still fine"]).status_code == 200
    assert server.proc.poll() is None
    print(f"\nfuzz inputs tried: {TRIED}")
    if all(TRIED.values()):
        assert TRIED["bundle"] >= 1000 and TRIED["predict"] >= 200
