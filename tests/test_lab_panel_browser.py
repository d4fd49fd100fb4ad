"""The EasyTensor side panel in a real JupyterLab, driven by a real (headless) browser.

Unit tests of the TypeScript mock the REST API and the server extension's tests mock the browser;
only this test proves the three pieces agree: the prebuilt lab extension, the jupyter_server
extension and the real inference server. The quickstart classifier is uploaded twice (v1, v2)
with the seed API, then the test does what a user would in the panel: find the model, query it,
roll back to v1 and provoke errors, and checks each step against the inference server itself.
"""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from browser import (
    chromium_page,
    console_messages,
    jupyter_lab,
    require_chromium,
    screenshot,
)
from servers import RunningServer

import easytensor
import easytensor_jupyter

pytestmark = pytest.mark.browser

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart"
# The seed-0 (v1) and seed-1 (v2) weights label this one differently (Sci/Tec vs World), so the
# answer shows which version ran; the latency line names the version either way.
HEADLINE = "Rocket launch delayed by storm"
SAMPLE = "Liverpool win the cup final"
PANEL_ID = "easytensor-models"
PANEL = f"#{PANEL_ID}"
# Generous but bounded: the first query starts a worker process that imports torch.
LOAD_MS = 90_000
QUERY_MS = 60_000
UI_MS = 15_000


@pytest.fixture
def quickstart_train() -> Iterator[Callable[..., Any]]:
    """The quickstart's seeded ``train``, so this process can rebuild the uploaded weights."""
    sys.path.insert(0, str(QUICKSTART))
    try:
        train: Callable[..., Any] = importlib.import_module("train").train
        yield train
    finally:
        sys.path.remove(str(QUICKSTART))


def _upload_two_versions(server: RunningServer, name: str, v1: Any, v2: Any) -> str:
    """Upload ``v1`` then ``v2`` under one name with the seed API; the newest becomes default."""
    easytensor.set_base_url(server.url)
    easytensor.set_api_key(server.admin_key)
    try:
        ids = [
            easytensor.pytorch.upload_model(
                name, model, str(QUICKSTART / "model.py"), sample=SAMPLE, quiet=True
            )[0]
            for model in (v1, v2)
        ]
    finally:
        easytensor.set_base_url(None)
        easytensor.set_api_key(None)
    assert ids[0] == ids[1], ids
    return ids[0]


def _server_model(server: RunningServer, model_id: str) -> dict[str, Any]:
    """The model as the inference server itself describes it (not through Jupyter)."""
    response = requests.get(f"{server.url}/v1/models/{model_id}", headers=server.admin, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _server_tokens(server: RunningServer, model_id: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{server.url}/v1/models/{model_id}/tokens", headers=server.admin, timeout=10
    )
    assert response.status_code == 200, response.text
    tokens: list[dict[str, Any]] = response.json()["tokens"]
    return tokens


def _requests(summary: str) -> int:
    match = re.match(r"(\d+) requests?,", summary)
    assert match, summary
    return int(match.group(1))


def use_this_build(root: Path) -> dict[str, str]:
    """Serve the lab extension built from this tree (``jlpm build``), not an older copy that
    the environment may hold: Jupyter takes the first it finds. Returns the environment that
    puts the lab's own data folder (where the build is linked) ahead of the environment's."""
    built = Path(easytensor_jupyter.__file__).resolve().parent / "labextension"
    if not (built / "package.json").exists():
        return {}
    data = root.parent / f"{root.name}-jupyter-state" / "data" / "labextensions"
    data.mkdir(parents=True, exist_ok=True)
    (data / "easytensor-jupyter").symlink_to(built, target_is_directory=True)
    return {"JUPYTER_PREFER_ENV_PATH": "0"}


def _open_panel(page: Any) -> Any:
    """Show the side panel by its tab in the left side bar, unless the layout restorer already did."""
    tab = page.locator(f'.jp-SideBar .lm-TabBar-tab[data-id="{PANEL_ID}"]')
    tab.wait_for(state="visible", timeout=LOAD_MS)
    assert tab.get_attribute("title") == "EasyTensor models"
    panel = page.locator(PANEL)
    if not panel.is_visible():
        tab.click(timeout=UI_MS)
    panel.wait_for(state="visible", timeout=UI_MS)
    return panel


def _predict(panel: Any, text: str) -> None:
    """Type into the playground, press Predict, and wait until the query is over."""
    panel.locator(".jp-EasyTensor-input").fill(text, timeout=UI_MS)
    button = panel.locator(".jp-EasyTensor-predictButton")
    button.click(timeout=UI_MS)
    panel.locator(".jp-EasyTensor-playground:not([data-busy])").wait_for(timeout=QUERY_MS)
    assert button.is_enabled()


def test_side_panel_lists_queries_and_rolls_back(
    tmp_path: Path, server: RunningServer, quickstart_train: Callable[..., Any]
) -> None:
    require_chromium()
    v1, v2 = quickstart_train(seed=0), quickstart_train(seed=1)
    name = f"News panel {uuid.uuid4().hex[:8]}"
    model_id = _upload_two_versions(server, name, v1, v2)
    assert _server_model(server, model_id)["default_version"] == 2

    root = tmp_path / "root"
    root.mkdir()
    env = {
        "EASYTENSOR_URL": server.url,
        "EASYTENSOR_API_KEY": server.admin_key,
        "EASYTENSOR_HOME": str(tmp_path / "lab-home"),
    }
    extra = ["--EasyTensor.autostart=False"]
    env.update(use_this_build(root))
    with jupyter_lab(root, env=env, extra_args=extra) as lab, chromium_page(height=1200) as page:
        try:
            # The server extension answers before any browser is involved: a clearer failure.
            listed = lab.api("/easytensor/api/models")
            assert listed.status_code == 200, listed.text
            assert model_id in listed.text, listed.text

            page.goto(lab.lab_url(), wait_until="domcontentloaded", timeout=LOAD_MS)
            panel = _open_panel(page)
            page.locator(f'{PANEL}[data-state="ready"]:not([data-loading])').wait_for(
                timeout=LOAD_MS
            )
            status = panel.locator(".jp-EasyTensor-status")
            assert server.url in status.inner_text(), status.inner_text()
            assert "jp-mod-warn" not in (status.get_attribute("class") or "")

            item = panel.locator(f'.jp-EasyTensor-modelItem[data-model-id="{model_id}"]')
            item.wait_for(timeout=UI_MS)
            assert item.locator(".jp-EasyTensor-modelName").inner_text() == name
            meta = item.locator(".jp-EasyTensor-modelMeta")
            assert meta.inner_text().startswith("v2 \u00b7 2 versions"), meta.inner_text()

            item.click(timeout=UI_MS)
            detail = panel.locator(f'.jp-EasyTensor-detail[data-model-id="{model_id}"]')
            detail.wait_for(timeout=UI_MS)
            assert "jp-mod-selected" in (item.get_attribute("class") or "")
            assert model_id in detail.locator(".jp-EasyTensor-endpoint").inner_text()
            scaling = detail.locator(".jp-EasyTensor-scaling").inner_text()
            assert scaling.startswith("Scaling: 1 replica (fixed)"), scaling
            assert scaling.endswith("local"), scaling
            # A text model opens the playground in Text mode, querying the default version.
            assert detail.locator(".jp-EasyTensor-mode").input_value() == "text"
            assert detail.locator(".jp-EasyTensor-versionSelect").input_value() == ""

            # At the panel's default width the whole curl command is readable: it wraps.
            curl = detail.locator(".jp-EasyTensor-curl")
            assert curl.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "curl is cut off"
            assert detail.locator(".jp-EasyTensor-curlBox .jp-EasyTensor-copy").is_visible()
            # Delete sits at the very end, nowhere near the name.
            header = detail.locator(".jp-EasyTensor-detailHeader")
            assert header.locator(".jp-EasyTensor-delete").count() == 0
            remove = detail.locator(".jp-EasyTensor-dangerZone .jp-EasyTensor-delete")
            versions_box = detail.locator(".jp-EasyTensor-versionList").bounding_box()
            remove_box = remove.bounding_box()
            assert versions_box and remove_box and remove_box["y"] > versions_box["y"]

            summary = detail.locator(".jp-EasyTensor-summary > span:not(.jp-EasyTensor-badge)")
            before = _requests(summary.inner_text())
            _predict(detail, HEADLINE)
            assert detail.locator(".jp-EasyTensor-error").count() == 0, detail.inner_text()
            answer = detail.locator(".jp-EasyTensor-answer")
            assert answer.inner_text().strip() == v2.predict_single(HEADLINE)
            # The request count moves without pressing Refresh.
            counted = re.compile(rf"^{before + 1} requests?,")
            summary.filter(has_text=counted).wait_for(timeout=UI_MS)
            latency = detail.locator(".jp-EasyTensor-latency")
            assert re.fullmatch(
                r"Round trip [\d.]+ (ms|s) \u00b7 model [\d.]+ (ms|s) \u00b7 v2",
                latency.inner_text().strip(),
            ), latency.inner_text()
            assert float(latency.get_attribute("data-ms") or "nan") > 0
            assert HEADLINE in detail.locator(".jp-EasyTensor-curl").inner_text()

            # Rollback: v1 answers the endpoint again.
            v1_item = detail.locator('.jp-EasyTensor-versionItem[data-version="1"]')
            v1_item.locator(".jp-EasyTensor-setDefault").click(timeout=UI_MS)
            detail.locator('.jp-EasyTensor-versionItem.jp-mod-default[data-version="1"]').wait_for(
                timeout=UI_MS
            )
            assert _server_model(server, model_id)["default_version"] == 1
            assert detail.locator(".jp-EasyTensor-error").count() == 0, detail.inner_text()
            assert v1_item.locator(".jp-EasyTensor-setDefault").is_disabled()
            v2_item = detail.locator('.jp-EasyTensor-versionItem[data-version="2"]')
            assert "jp-mod-default" not in (v2_item.get_attribute("class") or "")
            assert v2_item.locator(".jp-EasyTensor-setDefault").is_enabled()
            assert meta.inner_text().startswith("v1 \u00b7 2 versions"), meta.inner_text()
            default_option = detail.locator(".jp-EasyTensor-versionSelect option[value='']")
            assert default_option.inner_text() == "default (v1)"

            _predict(detail, HEADLINE)
            assert answer.inner_text().strip() == v1.predict_single(HEADLINE)
            assert latency.inner_text().strip().endswith("\u00b7 v1"), latency.inner_text()
            # Park the mouse off the panel so the picture shows buttons at rest, not hovered.
            page.mouse.move(900, 900)
            panel.scroll_into_view_if_needed()
            path = screenshot(page, "lab_panel.png")
            assert path.stat().st_size > 10_000

            # Tokens: where each was made; one made here, then revoked after the dialog.
            tokens = detail.locator(".jp-EasyTensor-tokens")
            tokens.locator("summary").click(timeout=UI_MS)
            labels = tokens.locator(".jp-EasyTensor-tokenLabel")
            labels.first.wait_for(timeout=UI_MS)
            assert {"upload of v1", "upload of v2"} <= set(labels.all_inner_texts())
            tokens.locator(".jp-EasyTensor-newToken").click(timeout=UI_MS)
            made = tokens.locator(".jp-EasyTensor-tokenItem", has_text="JupyterLab side panel")
            made.wait_for(timeout=UI_MS)
            assert "never used" in made.inner_text()
            secret = tokens.locator(".jp-EasyTensor-tokenSecret").inner_text()
            token_id = made.get_attribute("data-token-id")
            listed = {t["id"]: t for t in _server_tokens(server, model_id)}
            assert listed[token_id]["label"] == "JupyterLab side panel"
            assert secret.startswith("export EASYTENSOR_TOKEN=et_q_")
            remove.scroll_into_view_if_needed()
            page.mouse.move(900, 900)
            screenshot(page, "lab_panel_tokens.png")
            made.locator(".jp-EasyTensor-revokeToken").click(timeout=UI_MS)
            page.locator(".jp-Dialog").get_by_role("button", name="Revoke").click(timeout=UI_MS)
            tokens.locator(
                f'.jp-EasyTensor-tokenItem.jp-mod-revoked[data-token-id="{token_id}"]'
            ).wait_for(timeout=UI_MS)
            assert {t["id"]: t for t in _server_tokens(server, model_id)}[token_id]["revoked"]

            # Errors: bad JSON never leaves the browser; a model's exception comes back as a 422.
            detail.locator(".jp-EasyTensor-mode").select_option("json", timeout=UI_MS)
            _predict(detail, '{"headline": ')
            message = detail.locator(".jp-EasyTensor-errorMessage")
            message.wait_for(timeout=UI_MS)
            assert message.inner_text().startswith("The input is not valid JSON"), (
                message.inner_text()
            )

            _predict(detail, '{"headline": "not a string"}')
            text = message.inner_text()
            assert text.startswith("Prediction failed: Error 422"), text
            assert "(model_error)" in text, text
            assert "[object Object]" not in detail.locator(".jp-EasyTensor-error").inner_text()
            assert detail.locator(".jp-EasyTensor-answer").count() == 0
            detail.locator(".jp-EasyTensor-errorDetail summary").click(timeout=UI_MS)
            details = detail.locator(".jp-EasyTensor-errorDetail pre").inner_text()
            assert "lower" in text + details, details  # the model's own AttributeError
            assert "\\n" not in details and "predict_single" in details, details  # readable lines
            detail.locator(".jp-EasyTensor-error").scroll_into_view_if_needed()
            screenshot(page, "lab_panel_error.png")
        except Exception:
            screenshot(page, "lab_panel_failure.png")
            print("browser console:\n" + "\n".join(console_messages(page)[-40:]))
            print("jupyter log:\n" + lab.log_tail())
            raise
