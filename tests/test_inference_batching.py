"""Server-side batching: concurrent requests reach ``predict_batch`` together, each gets its own
answer, a bad instance fails only its own request, and the settings show in the model JSON."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from bundles import Bundle
from servers import RunningServer

from easytensor_jupyter.bundle import Batching

# predict_batch fails as a whole when one input is bad; the worker then falls back to
# predict_single per instance, so only the bad instance's request sees the error.
PICKY_SOURCE = textwrap.dedent(
    """
    import time

    import torch
    from torch import nn


    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def predict_single(self, x):
            if x == "bad":
                raise ValueError("bad input")
            return {"value": x, "batch": 1}

        def predict_batch(self, xs):
            time.sleep(0.05)
            if "bad" in xs:
                raise ValueError("a bad input in the batch")
            return [{"value": x, "batch": len(xs)} for x in xs]
    """
)


def _upload(server: RunningServer, bundle: Bundle) -> dict[str, Any]:
    response = server.upload(bundle)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _together(server: RunningServer, model_id: str, values: list[Any]) -> list[requests.Response]:
    with ThreadPoolExecutor(len(values)) as pool:
        return list(pool.map(lambda v: server.predict(model_id, [v]), values))


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    batching = Batching(max_batch_size=4, max_wait_ms=300)
    bundle = bundle_factory(
        name=unique_name, source=PICKY_SOURCE, class_name="Picky", sample=1, batching=batching
    )
    model_id = _upload(server, bundle)["id"]
    values = list(range(10))
    answers = _together(server, model_id, values)
    sizes = []
    for value, response in zip(values, answers, strict=True):
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        assert prediction["value"] == value
        sizes.append(prediction["batch"])
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 4, sizes


def test_an_error_inside_a_batch_stays_with_its_request(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    batching = Batching(max_batch_size=8, max_wait_ms=300)
    bundle = bundle_factory(
        name=unique_name, source=PICKY_SOURCE, class_name="Picky", sample=1, batching=batching
    )
    model_id = _upload(server, bundle)["id"]
    values: list[Any] = [1, 2, "bad", 3, 4]
    answers = _together(server, model_id, values)
    for value, response in zip(values, answers, strict=True):
        if value == "bad":
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "model_error"
            assert "bad input" in error["message"]
            assert error["detail"]["index"] == 0
        else:
            assert response.status_code == 200, response.text
            assert response.json()["predictions"][0]["value"] == value


def test_batching_settings_show_in_the_model_json(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    batching = Batching(max_batch_size=12, max_wait_ms=7.5)
    bundle = bundle_factory(
        name=unique_name, source=PICKY_SOURCE, class_name="Picky", sample=1, batching=batching
    )
    model_id = _upload(server, bundle)["id"]
    shown = requests.get(f"{server.url}/v1/models/{model_id}", headers=server.admin, timeout=30)
    assert shown.status_code == 200, shown.text
    (version,) = shown.json()["versions"]
    assert version["batching"] == {"max_batch_size": 12, "max_wait_ms": 7.5}
