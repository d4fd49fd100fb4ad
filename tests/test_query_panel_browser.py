"""The query panel in a real JupyterLab, driven by a real browser.

A notebook trains the quickstart classifier, uploads it to the real inference server and shows
the panel; the test runs it from the Run menu, types a headline, clicks Predict and compares the
answer on the page with the same seeded model trained here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser import (
    chromium_page,
    console_messages,
    jupyter_lab,
    open_in_lab,
    require_chromium,
    run_all_cells,
    screenshot,
    write_notebook,
)

pytestmark = pytest.mark.browser

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart"
HEADLINE = "Central bank holds interest rates as inflation cools"
SAMPLE = "Liverpool win the cup final"


@pytest.fixture
def quickstart_train() -> Iterator[Any]:
    sys.path.insert(0, str(QUICKSTART))
    try:
        yield importlib.import_module("train").train
    finally:
        sys.path.remove(str(QUICKSTART))


def _notebook(root: Path, model_name: str) -> str:
    for name in ("model.py", "train.py"):
        shutil.copy(QUICKSTART / name, root / name)
    write_notebook(
        root / "query_panel.ipynb",
        [
            ("markdown", "# Query panel demo"),
            "import easytensor\nimport easytensor_jupyter\nfrom train import train\n\nmodel = train()",
            f"model_id, token = easytensor.pytorch.upload_model(\n"
            f"    {model_name!r}, model, 'model.py', sample={SAMPLE!r}, quiet=True\n)\n"
            "import hashlib\nprint('uploaded', model_id, hashlib.sha256(token.encode()).hexdigest())",
            "easytensor_jupyter.QueryPanel(model_id, token=token)",
        ],
    )
    return "query_panel.ipynb"


def test_query_panel_in_jupyterlab(tmp_path: Path, server: Any, quickstart_train: Any) -> None:
    require_chromium()
    expected = quickstart_train().predict_single(HEADLINE)
    root = tmp_path / "root"
    root.mkdir()
    notebook = _notebook(root, f"News browser {uuid.uuid4().hex[:8]}")
    env = {
        "EASYTENSOR_URL": server.url,
        "EASYTENSOR_API_KEY": server.admin_key,
        "EASYTENSOR_HOME": str(server.home),
    }

    with jupyter_lab(root, env=env) as lab, chromium_page() as page:
        try:
            open_in_lab(page, lab, notebook)
            run_all_cells(page)
            panel = page.locator(".easytensor-panel")
            panel.wait_for(state="visible", timeout=180_000)

            textarea = panel.locator(".easytensor-input textarea")
            assert textarea.count() == 1
            assert textarea.input_value() == SAMPLE
            version = panel.locator(".easytensor-version select").inner_text()
            assert version.replace("\xa0", " ") == "v1 (default)"
            textarea.fill(HEADLINE)
            curl = panel.locator(".easytensor-curl")
            curl.filter(has_text=HEADLINE).wait_for(timeout=15_000)

            panel.locator("button.easytensor-predict").click()
            panel.locator(".easytensor-history .easytensor-rerun").first.wait_for(timeout=60_000)
            answer = panel.locator(".easytensor-answer").inner_text().strip()
            assert answer == expected
            latency = panel.locator(".easytensor-latency").inner_text()
            assert re.fullmatch(r"[\d.]+ (ms|s) \u00b7 v1", latency.strip()), latency
            assert not panel.locator(".easytensor-error").is_visible()
            assert "$EASYTENSOR_TOKEN" in curl.inner_text()
            assert HEADLINE in panel.locator(".easytensor-history").inner_text()
            assert page.locator("button.easytensor-predict").is_enabled()

            panel.scroll_into_view_if_needed()
            path = screenshot(page, "query_panel.png")
            assert path.stat().st_size > 10_000

            # The token: masked on the page, whole only while shown, copied on demand.
            uploaded = page.locator(".jp-OutputArea-output", has_text="uploaded").inner_text()
            digest = uploaded.split()[-1]
            row = panel.locator(".easytensor-token")
            row.locator(".easytensor-token-show").click()
            field = row.locator(".easytensor-token-value input")
            field.wait_for(state="visible", timeout=15_000)
            token = field.input_value()
            assert hashlib.sha256(token.encode()).hexdigest() == digest
            screenshot(page, "query_panel_token_shown.png", selector=".easytensor-token")
            row.locator(".easytensor-token-show").click()
            field.wait_for(state="hidden", timeout=15_000)
            assert token not in page.content()
            assert f"{token[:9]}\u2026{token[-4:]}" in row.inner_text()
            page.context.grant_permissions(["clipboard-read", "clipboard-write"])
            row.locator(".easytensor-token-copy").click()
            row.locator(".easytensor-token-copy", has_text="Copied").wait_for(timeout=15_000)
            assert page.evaluate("() => navigator.clipboard.readText()") == token
            field.wait_for(state="hidden", timeout=15_000)
            assert token not in page.content()
            page.keyboard.press("Control+s")
            saved = root / notebook
            deadline = time.monotonic() + 30
            while digest not in saved.read_text() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert "application/vnd.jupyter.widget-view+json" in saved.read_text()
            assert token not in saved.read_text(), "the saved notebook holds the token"

            # The classifier tokenizes a str, so a JSON object makes it raise: a model_error.
            panel.locator(".easytensor-mode button", has_text="JSON").click()
            json_box = panel.locator(".easytensor-input-json textarea")
            json_box.wait_for(state="visible", timeout=15_000)
            assert json_box.input_value() == f'"{HEADLINE}"'
            # A pretty-printed value fits its box: no inner scrolling.
            pretty = json.dumps(
                {"headline": HEADLINE, "tags": [f"t{i}" for i in range(12)]}, indent=2
            )
            json_box.fill(pretty)
            page.wait_for_function(
                "e => e.scrollHeight <= e.clientHeight + 2", arg=json_box.element_handle()
            )
            json_box.scroll_into_view_if_needed()
            screenshot(page, "query_panel_json.png", selector=".easytensor-input")
            json_box.fill('{"headline": "not a string"}')
            curl.filter(has_text="not a string").wait_for(timeout=15_000)
            assert "Valid JSON" in panel.locator(".easytensor-input").inner_text()
            panel.locator("button.easytensor-predict").click()
            error = panel.locator(".easytensor-error")
            error.wait_for(state="visible", timeout=60_000)
            text = error.inner_text()
            assert "HTTP 422" in text and "model_error" in text
            assert "Traceback" in text or "predict_single" in text
            assert panel.locator(".easytensor-answer").inner_text().strip() == ""
            error.scroll_into_view_if_needed()
            screenshot(page, "query_panel_error.png")
        except Exception:
            screenshot(page, "query_panel_failure.png")
            print("browser console:\n" + "\n".join(console_messages(page)[-40:]))
            print("jupyter log:\n" + lab.log_tail())
            raise
