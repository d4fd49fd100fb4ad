"""The lab panel's playground streams: a real JupyterLab with this tree's build, its server
extension passing the inference server's stream through, and headless Chromium watching the
answer grow chunk by chunk."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser import chromium_page, console_messages, jupyter_lab, require_chromium, screenshot
from bundles import make_bundle
from servers import RunningServer
from stream_models import TALKER_SOURCE
from test_lab_panel_browser import LOAD_MS, QUERY_MS, UI_MS, _open_panel, use_this_build

pytestmark = pytest.mark.browser


def test_the_playground_shows_chunks_as_they_arrive(tmp_path: Path, server: RunningServer) -> None:
    require_chromium()
    name = f"Streaming panel {uuid.uuid4().hex[:8]}"
    bundle = make_bundle(
        tmp_path / "bundle", name=name, source=TALKER_SOURCE, class_name="Talker", streaming=True
    )
    response = server.upload(bundle)
    assert response.status_code == 201, response.text
    model_id = response.json()["id"]
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
        chromium_page(height=1200) as page,
    ):
        try:
            page.goto(lab.lab_url(), wait_until="domcontentloaded", timeout=LOAD_MS)
            panel = _open_panel(page)
            item = panel.locator(f'.jp-EasyTensor-modelItem[data-model-id="{model_id}"]')
            item.wait_for(timeout=LOAD_MS)
            item.click(timeout=UI_MS)
            detail = panel.locator(f'.jp-EasyTensor-detail[data-model-id="{model_id}"]')
            detail.wait_for(timeout=UI_MS)
            text = "slowly:streamed"
            detail.locator(".jp-EasyTensor-input").fill(text, timeout=UI_MS)
            detail.locator(".jp-EasyTensor-predictButton").click(timeout=UI_MS)
            # Part of the answer is on screen while the query is still running.
            page.wait_for_function(
                """() => {
                    const p = document.querySelector('.jp-EasyTensor-playground');
                    const a = p && p.querySelector('.jp-EasyTensor-answer');
                    return p && p.hasAttribute('data-busy') && a &&
                        a.textContent.length > 1 && a.textContent.length < 6;
                }""",
                timeout=QUERY_MS,
            )
            panel.locator(".jp-EasyTensor-playground:not([data-busy])").wait_for(timeout=QUERY_MS)
            answer = detail.locator(".jp-EasyTensor-answer").inner_text()
            assert answer == "streamed", answer
            status = detail.locator(".jp-EasyTensor-streamStatus")
            words = status.inner_text()
            assert words.startswith("8 chunks · first chunk "), words
            assert "chunks/s" in words and words.endswith("v1"), words
            assert float(status.get_attribute("data-first-ms") or 0) > 100
            assert not detail.locator(".jp-EasyTensor-slot .jp-EasyTensor-error").count()
        except Exception:
            screenshot(page, "lab-stream-failure.png")
            print("\n".join(console_messages(page)))
            raise
