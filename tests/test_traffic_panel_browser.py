"""The side panel's traffic section in a real JupyterLab and a real headless browser: the split
and the shadow's agreement, the recent requests and errors, and "compare on recent traffic",
each checked against the inference server itself."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from browser import chromium_page, console_messages, jupyter_lab, require_chromium, screenshot
from bundles import make_bundle
from servers import RunningServer, wait_until
from test_lab_panel_browser import LOAD_MS, PANEL, UI_MS, _open_panel, use_this_build

pytestmark = pytest.mark.browser


def _api(server: RunningServer, method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(
        method, server.url + path, headers=server.admin, timeout=60, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json()


def test_panel_shows_split_shadow_requests_and_compares(
    tmp_path: Path, server: RunningServer
) -> None:
    require_chromium()
    name = f"traffic-panel-{uuid.uuid4().hex[:6]}"
    first = server.upload(make_bundle(tmp_path / "v1", name=name, init_kwargs={"tag": "a"}))
    model_id = first.json()["id"]
    server.upload(
        make_bundle(tmp_path / "v2", name=name, init_kwargs={"tag": "b"}),
        params={"candidate": "true"},
    )
    base = f"/v1/models/{model_id}"
    _api(server, "PUT", f"{base}/request-log", json={"mode": "all"})
    _api(server, "PUT", f"{base}/traffic", json={"split": {"1": 80, "2": 20}, "shadow": 2})
    for text in ["one", "two", "three", "four", "raise"]:
        server.predict(model_id, [text])
    wait_until(
        lambda: (
            (_api(server, "GET", f"{base}/traffic")["shadow_stats"] or {}).get("compared", 0) > 0
        ),
        30,
        "a shadow answer",
    )

    root = tmp_path / "root"
    root.mkdir()
    env = {
        "EASYTENSOR_URL": server.url,
        "EASYTENSOR_API_KEY": server.admin_key,
        "EASYTENSOR_HOME": str(tmp_path / "lab-home"),
        **use_this_build(root),
    }
    with (
        jupyter_lab(root, env=env, extra_args=["--EasyTensor.autostart=False"]) as lab,
        chromium_page(height=1400) as page,
    ):
        try:
            assert lab.api(f"/easytensor/api/models/{model_id}/traffic").status_code == 200
            page.goto(lab.lab_url(), wait_until="domcontentloaded", timeout=LOAD_MS)
            panel = _open_panel(page)
            item = panel.locator(f'.jp-EasyTensor-modelItem[data-model-id="{model_id}"]')
            item.click(timeout=LOAD_MS)
            detail = panel.locator(f'.jp-EasyTensor-detail[data-model-id="{model_id}"]')
            section = detail.locator(".jp-EasyTensor-traffic")
            section.locator("summary").click(timeout=UI_MS)
            split = section.locator(".jp-EasyTensor-split")
            split.wait_for(timeout=UI_MS)
            assert split.inner_text() == "Split: v1 80% \u00b7 v2 20%"
            shadow = section.locator(".jp-EasyTensor-shadow").inner_text()
            stats = _api(server, "GET", f"{base}/traffic")["shadow_stats"]
            assert shadow.startswith("Shadow v2: 0.0% agree"), shadow  # tags a and b differ
            assert f"({stats['compared']} compared" in shadow or "compared" in shadow

            rows = section.locator(".jp-EasyTensor-requests tbody tr")
            assert rows.count() == 5
            errors = section.locator(".jp-EasyTensor-requestError")
            assert errors.count() == 1 and "422 model_error" in errors.inner_text()
            assert '["raise"]' in errors.inner_text()
            summary = section.locator(".jp-EasyTensor-requestSummary").inner_text()
            assert summary == "Last 5 requests, 1 error", summary
            assert section.locator(".jp-EasyTensor-compareA").input_value() == "1"
            assert section.locator(".jp-EasyTensor-compareB").input_value() == "2"

            section.locator(".jp-EasyTensor-compare").click(timeout=UI_MS)
            result = section.locator(".jp-EasyTensor-compareResult")
            result.wait_for(timeout=LOAD_MS)
            # Four logged answers replayed (the error is left out): the tags differ on each.
            assert result.inner_text().startswith("v1 vs v2: 0 of 4 agree (0.0%)")
            assert section.locator(".jp-EasyTensor-differing li").count() == 4
            assert detail.locator(".jp-EasyTensor-error").count() == 0, detail.inner_text()
            section.scroll_into_view_if_needed()
            page.mouse.move(900, 1300)
            path = screenshot(page, "lab_panel_traffic.png", selector=PANEL)
            assert path.stat().st_size > 10_000
        except Exception:
            screenshot(page, "lab_panel_traffic_failure.png")
            print("browser console:\n" + "\n".join(console_messages(page)[-40:]))
            print("jupyter log:\n" + lab.log_tail())
            raise
        finally:
            _api(server, "POST", f"{base}/traffic/rollback")
