"""schemathesis against the server's own ``/openapi.json``: every operation, positive and
negative inputs, with the admin key. No answer may be a 5xx, and every answer must match the
status codes, content types and body schemas that the description promises.

The server is a fresh one with a model in it, so deletes and uploads that schemathesis makes up
touch nothing another test relies on.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from bundles import make_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from servers import RunningServer, start_server

__all__: list[str] = []

CALLS: list[int] = []


def _valid_tar() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return make_bundle(Path(folder) / "b", name="schema upload").tar_bytes()


# Bodies schemathesis cannot derive from a JSON schema: a real bundle now and then, else bytes.
schemathesis.openapi.media_type(
    "application/x-tar", st.one_of(st.just(_valid_tar()), st.binary(max_size=4096))
)
schemathesis.openapi.media_type("image/*", st.binary(max_size=1024))


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root: Path = tmp_path_factory.mktemp("schema")
    running = start_server(root / "home", "--predict-timeout", "5", "--max-body-mb", "2")
    try:
        upload = running.upload(make_bundle(root / "bundle", name="schema target"))
        assert upload.status_code == 201, upload.text
        yield running
    finally:
        running.stop()
        if CALLS:
            print(f"\nschemathesis: {len(CALLS)} calls, statuses {sorted(set(CALLS))}")


@pytest.fixture(scope="module")
def api_schema(schema_server: RunningServer) -> Any:
    return schemathesis.openapi.from_url(f"{schema_server.url}/openapi.json")


def _run_operation(operation: Any, mode: Any, headers: dict[str, str]) -> list[str]:
    """Up to ``EXAMPLES`` generated calls of one operation; returns the failures seen."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        try:
            response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
            CALLS.append(response.status_code)
        except (AssertionError, checks.FailureGroup) as exc:
            failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
    return failures


EXAMPLES = 20
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def test_every_operation_answers_to_its_schema(
    api_schema: Any, schema_server: RunningServer
) -> None:
    failures: list[str] = []
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _run_operation(operation, mode, schema_server.admin)
    assert len(labels) >= 12, labels
    assert len(CALLS) >= 10 * len(labels)
    assert 500 not in CALLS
    assert not failures, "\n\n".join(failures[:10])
