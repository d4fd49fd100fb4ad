"""Helpers for tests that drive a real JupyterLab in a real (headless) Chromium.

    with jupyter_lab(root, env={...}) as lab, chromium_page() as page:
        open_in_lab(page, lab, "demo.ipynb")
        run_all_cells(page)

Everything here is bounded by timeouts and always cleaned up: the Jupyter server is shut down
(kernels included) and the browser closed even when the test fails. Chromium is Debian's
``/usr/bin/chromium``; when it is missing the test is skipped, never the browser downloaded.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "JupyterLab",
    "chromium_page",
    "console_messages",
    "free_port",
    "jupyter_lab",
    "open_in_lab",
    "require_chromium",
    "run_all_cells",
    "screenshot",
    "wait_kernel_idle",
    "write_notebook",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_CONSOLE: dict[int, list[str]] = {}

# Lab settings that keep the page quiet and stable for screenshots: no news or update toasts.
_QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the playwright Python package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class JupyterLab:
    """A running ``jupyter lab``: where it listens, its token, and its log for failure messages."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def lab_url(self, path: str = "") -> str:
        tree = f"/tree/{quote(path)}" if path else ""
        return f"{self.url}/lab{tree}?token={self.token}"

    def api(self, path: str, method: str = "GET", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method,
            f"{self.url}{path}",
            headers=headers,
            timeout=kwargs.pop("timeout", 10),
            **kwargs,
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


@contextmanager
def jupyter_lab(
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    extra_args: Iterable[str] = (),
    start_timeout: float = 90.0,
    python: str | Path | None = None,
) -> Iterator[JupyterLab]:
    """Start ``jupyter lab`` on a free loopback port serving ``root``; stop it on exit.

    Config, runtime, workspace, user-settings and EasyTensor home folders live in ``state_dir``
    (default: next to ``root``) so the developer's own ~/.jupyter and ~/.easytensor never leak
    into a test; ``env`` overrides them (e.g. ``EASYTENSOR_URL`` of a test server).
    ``python`` runs the lab from another environment (default: this test's interpreter).
    """
    state = state_dir or root.parent / f"{root.name}-jupyter-state"
    for sub in ("config", "runtime", "workspaces", "settings", "data"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    for relative, value in _QUIET_SETTINGS.items():
        target = state / "settings" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value), encoding="utf-8")

    port = free_port()
    token = secrets.token_hex(24)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    full_env.update(
        EASYTENSOR_HOME=str(state / "easytensor-home"),
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTER_DATA_DIR=str(state / "data"),
        PYTHONUNBUFFERED="1",
    )
    full_env.update(env or {})
    command = [
        str(python or sys.executable),
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        *(["--allow-root"] if os.geteuid() == 0 else []),
        *extra_args,
    ]
    log_path = state / "jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, root, process, log_path, full_env)
    try:
        _wait_ready(lab, start_timeout)
        yield lab
    finally:
        _stop(lab)


def _wait_ready(lab: JupyterLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with {lab.process.returncode}:\n{lab.log_tail()}"
            )
        try:
            if lab.api("/api/status", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"jupyter lab was not ready within {timeout:g} s:\n{lab.log_tail()}")


def _stop(lab: JupyterLab, timeout: float = 20.0) -> None:
    """Ask the server to shut down (it stops its kernels), then make sure its process group is gone."""
    if lab.process.poll() is None:
        with suppress(requests.RequestException):
            lab.api("/api/shutdown", method="POST", timeout=5)
        with suppress(subprocess.TimeoutExpired):
            lab.process.wait(timeout)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(lab.process.pid, sig)
        except ProcessLookupError:
            break
        try:
            lab.process.wait(5)
        except subprocess.TimeoutExpired:
            continue
    if lab.process.poll() is None:
        lab.process.kill()
        lab.process.wait(5)


@contextmanager
def chromium_page(
    *, width: int = 1400, height: int = 1000, timeout_ms: float = 30_000
) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium; ``console_messages(page)`` has its log."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            console = _CONSOLE.setdefault(id(page), [])
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            try:
                yield page
            finally:
                _CONSOLE.pop(id(page), None)
        finally:
            browser.close()


def console_messages(page: Any) -> list[str]:
    """What the page logged (console lines and uncaught errors), for failure messages."""
    return list(_CONSOLE.get(id(page), []))


def open_in_lab(page: Any, lab: JupyterLab, path: str, *, timeout_ms: float = 60_000) -> None:
    """Open a notebook in JupyterLab and wait until its kernel is idle."""
    page.goto(lab.lab_url(path), wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    wait_kernel_idle(page, timeout_ms=timeout_ms)


def wait_kernel_idle(page: Any, *, timeout_ms: float = 60_000) -> None:
    """Wait until the current notebook's kernel is connected and idle.

    The toolbar's execution indicator says "idle" before any kernel is attached, and running
    cells then pops a "Select Kernel" dialog, so ask the app itself (exposed for tests).
    """
    page.wait_for_function(
        """() => {
            const app = window.jupyterapp;
            const ctx = app && app.shell.currentWidget && app.shell.currentWidget.sessionContext;
            const kernel = ctx && ctx.session && ctx.session.kernel;
            return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
        }""",
        timeout=timeout_ms,
    )


def run_all_cells(page: Any, *, timeout_ms: float = 30_000) -> None:
    """Run > Run All Cells, through the menu bar as a user would."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click(timeout=timeout_ms)
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=timeout_ms)


def screenshot(page: Any, name: str, *, selector: str | None = None) -> Path:
    """Save a PNG under test-artifacts/ (the whole page, or one element)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    if selector is None:
        page.screenshot(path=str(path), full_page=False)
    else:
        page.locator(selector).first.screenshot(path=str(path))
    return path


def write_notebook(path: Path, cells: Iterable[str | tuple[str, str]]) -> Path:
    """Write an .ipynb with the venv's python3 kernel; a cell is code, or ``("markdown", text)``."""
    nbformat: Any = importlib.import_module("nbformat")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    for cell in cells:
        if isinstance(cell, tuple) and cell[0] == "markdown":
            notebook.cells.append(nbformat.v4.new_markdown_cell(cell[1]))
        else:
            source = cell[1] if isinstance(cell, tuple) else cell
            notebook.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(notebook, str(path))
    return path
