"""The lab side panel and a notebook's kernel, in a real JupyterLab and a real browser: the panel
shows that the kernel's model drifted from the deployed default and clears it after a deploy,
shows the diff between two versions, and opens the cell a version came from (or says why not).
"""

from __future__ import annotations

import sys
import uuid
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
    wait_kernel_idle,
    write_notebook,
)
from servers import RunningServer
from test_lab_panel_browser import _open_panel, use_this_build

pytestmark = pytest.mark.browser

RUN_MS = 120_000
UI_MS = 20_000
CLASS = """class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(x)

    def predict_single(self, x):
        return round(float(self.forward(torch.tensor(x))), 4)
"""


def _run_in_kernel(page: Any, code: str) -> None:
    """Run code in the notebook's kernel as a cell would (not silent), and wait for it."""
    status = page.evaluate(
        """async code => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const reply = await kernel.requestExecute({code, silent: false}).done;
            return reply.content.status;
        }""",
        code,
    )
    assert status == "ok", status


def _active_cell(page: Any) -> int:
    index: int = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"
    )
    return index


def test_panel_shows_drift_diff_and_opens_the_source_cell(
    tmp_path: Path, server: RunningServer
) -> None:
    require_chromium()
    name = f"Lab drift {uuid.uuid4().hex[:8]}"
    root = tmp_path / "root"
    root.mkdir()
    magic = f'%%easytensor_model "{name}" --instance m --sample "[1.0, 2.0]"\n'
    write_notebook(
        root / "drift.ipynb",
        [
            "%load_ext easytensor_jupyter\nimport torch\nfrom torch import nn",
            magic + CLASS + "\nm = Net()",
            "with torch.no_grad():\n    m.fc.bias += 0.5",
        ],
    )
    env = {
        "EASYTENSOR_URL": server.url,
        "EASYTENSOR_API_KEY": server.admin_key,
        "EASYTENSOR_HOME": str(tmp_path / "lab-home"),
    }
    env.update(use_this_build(root))
    with (
        jupyter_lab(root, env=env, extra_args=["--EasyTensor.autostart=False"]) as lab,
        chromium_page(height=1300) as page,
    ):
        try:
            open_in_lab(page, lab, "drift.ipynb", timeout_ms=RUN_MS)
            panel = _open_panel(page)
            run_all_cells(page)
            page.wait_for_selector(
                ".jp-Cell:nth-child(3) .jp-InputPrompt:has-text('[3]')", timeout=RUN_MS
            )
            wait_kernel_idle(page, timeout_ms=RUN_MS)

            # Drift: the weights moved after the deploy; the list and the detail say so.
            item = panel.locator(".jp-EasyTensor-modelItem", has_text=name)
            badge = item.locator(".jp-EasyTensor-driftBadge")
            badge.wait_for(timeout=RUN_MS)
            assert badge.inner_text() == "kernel differs"
            item.click(timeout=UI_MS)
            notice = panel.locator(".jp-EasyTensor-driftNotice")
            notice.wait_for(timeout=UI_MS)
            text = notice.inner_text()
            assert "drift.ipynb: the kernel's model differs from the deployed v1" in text, text
            assert "weights changed: 1 of 2 tensors, max abs difference 0.5" in text, text
            page.mouse.move(900, 1200)
            notice.scroll_into_view_if_needed()
            print("drift notice:", screenshot(page, "lab_drift_notice.png"))

            # A deploy clears it: the cell runs again, with predict_single reworded.
            _run_in_kernel(page, magic + CLASS.replace("self.forward(", "self.fc("))
            item.filter(has_text="v2 \u00b7 2 versions").wait_for(timeout=RUN_MS)
            panel.locator(".jp-EasyTensor-driftNotice").wait_for(state="detached", timeout=UI_MS)
            assert item.locator(".jp-EasyTensor-driftBadge").count() == 0

            # The diff between the two versions.
            detail = panel.locator(".jp-EasyTensor-detail")
            v2 = detail.locator('.jp-EasyTensor-versionItem[data-version="2"]')
            v2.locator(".jp-EasyTensor-diffButton").click(timeout=UI_MS)
            diff = detail.locator(".jp-EasyTensor-diff")
            diff.wait_for(timeout=UI_MS)
            summary = diff.locator(".jp-EasyTensor-diffSummary").inner_text()
            assert "weights: 1 of 2 tensors changed, max abs difference 0.5" in summary, summary
            assert "sample:" in summary, summary
            code = diff.locator('.jp-EasyTensor-diffFile[data-file="model.py"]')
            removed = code.locator(".jp-EasyTensor-diff-del").all_inner_texts()
            added = code.locator(".jp-EasyTensor-diff-add").all_inner_texts()
            assert any("self.forward(torch.tensor(x))" in line for line in removed), removed
            assert any("self.fc(torch.tensor(x))" in line for line in added), added
            diff.scroll_into_view_if_needed()
            page.mouse.move(900, 1200)
            print("version diff:", screenshot(page, "lab_version_diff.png"))

            # Open the source cell of v1: the notebook's second cell becomes the active one.
            page.evaluate(
                "() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }"
            )
            v1 = detail.locator('.jp-EasyTensor-versionItem[data-version="1"]')
            v1.locator(".jp-EasyTensor-openCell").click(timeout=UI_MS)
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex === 1",
                timeout=UI_MS,
            )
            assert detail.locator(".jp-EasyTensor-sourceProblem").count() == 0
            print("open cell:", screenshot(page, "lab_open_cell.png"))

            # The cell gone, then the notebook gone: each said plainly.
            page.evaluate(
                "() => window.jupyterapp.shell.currentWidget.content.model.sharedModel.deleteCell(1)"
            )
            v1.locator(".jp-EasyTensor-openCell").click(timeout=UI_MS)
            problem = detail.locator(".jp-EasyTensor-sourceProblem")
            problem.wait_for(timeout=UI_MS)
            assert (
                "drift.ipynb no longer has the cell this version came from" in problem.inner_text()
            )
            moved = lab.api("/api/contents/drift.ipynb", "PATCH", json={"path": "moved.ipynb"})
            assert moved.status_code == 200, moved.text
            v1.locator(".jp-EasyTensor-openCell").click(timeout=UI_MS)
            problem.filter(has_text="is gone").wait_for(timeout=UI_MS)
            assert problem.inner_text() == (
                "The notebook drift.ipynb is gone: it was moved, renamed or deleted."
            )
        except Exception:
            screenshot(page, "lab_drift_failure.png")
            print("browser console:\n" + "\n".join(console_messages(page)[-40:]))
            print("jupyter log:\n" + lab.log_tail())
            raise
