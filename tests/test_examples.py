"""Every example notebook, run top to bottom in a real kernel, the way a user runs it.

The notebooks are documentation that executes: if one breaks, a new user's first experience
breaks. Each runs in a fresh ``EASYTENSOR_HOME`` with no ``EASYTENSOR_URL``, so it starts its own
embedded server exactly as on a clean machine, and the test then checks what a user would see:
no cell failed, the endpoint answered like the live model, the notebook ran in under a minute,
and nothing was left running once the kernel stopped.

Notebooks prove their served answers by printing one JSON line ``{"served": ..., "live": ...}``
(answers from the endpoint and from the model in the kernel); the test parses it and compares the
two itself, so a notebook whose own ``assert`` was weakened still cannot pass with wrong answers.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from easytensor_jupyter import config

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# The README promises each example runs in under a minute on a 2-core CPU.
TIME_LIMIT_S = 60.0
# How long the embedded server (and its workers) may outlive the kernel that started it.
SERVER_EXIT_S = 5.0
# Served and live answers come from different processes (and thread counts), so floats may differ
# in the last bits; the notebooks round probabilities to 4 places, so allow a little more.
FLOAT_TOLERANCE = 1e-3
# Notebooks that deploy to a server of their own instead of the embedded one; they print
# "team server at URL (pid N)" when it starts, and must have stopped it by the end.
OWN_SERVER = frozenset({"05_team_server.ipynb"})
TEAM_SERVER = re.compile(r"team server at \S+ \(pid (\d+)\)")


@dataclass
class NotebookRun:
    """One executed notebook and what was seen while its kernel was alive."""

    path: Path
    notebook: Any
    seconds: float
    load_factor: float
    embedded_pid: int | None
    embedded_children: list[int]
    error: str | None

    def outputs(self) -> Iterator[Any]:
        for cell in self.notebook.cells:
            if cell.cell_type == "code":
                yield from cell.get("outputs", [])

    def stream_text(self) -> str:
        return "".join(o.get("text", "") for o in self.outputs() if o.output_type == "stream")

    def answer_checks(self) -> list[dict[str, Any]]:
        """The ``{"served": ..., "live": ...}`` lines the notebook printed."""
        found = []
        for line in self.stream_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and {"served", "live"} <= value.keys():
                found.append(value)
        return found


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc): the embedded server's model workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _embedded_pid(home: Path) -> int | None:
    try:
        pid = json.loads((home / "server.json").read_text(encoding="utf-8"))["pid"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return int(pid)


def _load_factor() -> float:
    """How oversubscribed the CPUs are (1.0 when idle), from the 1-minute load average.

    Other test runs share this machine; torch's threads slow down badly when the cores are
    busy, so the one-minute budget stretches with the load, up to three times.
    """
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(3.0, max(1.0, load))


def _read_notebook(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def _run(path: Path, home: Path) -> NotebookRun:
    """Execute every cell in a fresh python3 kernel, cwd = the notebooks folder."""
    notebook = _read_notebook(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    env["EASYTENSOR_HOME"] = str(home)
    env["JPY_SESSION_NAME"] = str(path)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=int(TIME_LIMIT_S * 4),
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    load = _load_factor()
    error = None
    started = time.monotonic()
    with client.setup_kernel(env=env, cwd=str(NOTEBOOK_DIR)):
        try:
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
        except CellExecutionError as exc:
            error = str(exc)
        seconds = time.monotonic() - started
        load = max(load, _load_factor())
        pid = _embedded_pid(home)
        children = _children(pid) if pid is not None else []
    return NotebookRun(path, notebook, seconds, load, pid, children, error)


def _leftovers(run: NotebookRun) -> list[int]:
    """Servers and workers still alive SERVER_EXIT_S after the kernel stopped (then killed).

    Killing them keeps a failed run from leaving servers behind on a shared machine.
    """
    pids = [*run.embedded_children]
    if run.embedded_pid is not None:
        pids.append(run.embedded_pid)
    pids += [int(pid) for pid in TEAM_SERVER.findall(run.stream_text())]
    deadline = time.monotonic() + SERVER_EXIT_S
    while any(config.pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if config.pid_alive(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def _same_answer(served: Any, live: Any, where: str = "answer") -> str | None:
    """Where two JSON answers differ (floats within FLOAT_TOLERANCE are equal), or None."""
    if isinstance(served, bool) or isinstance(live, bool):
        return None if served is live else f"{where}: {served!r} != {live!r}"
    if isinstance(served, int | float) and isinstance(live, int | float):
        close = math.isclose(served, live, rel_tol=0, abs_tol=FLOAT_TOLERANCE)
        return None if close else f"{where}: {served!r} != {live!r}"
    if isinstance(served, dict) and isinstance(live, dict):
        if served.keys() != live.keys():
            return f"{where}: keys {sorted(served)} != {sorted(live)}"
        for key in served:
            found = _same_answer(served[key], live[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(served, list) and isinstance(live, list):
        if len(served) != len(live):
            return f"{where}: {len(served)} items != {len(live)}"
        for i, (s, lv) in enumerate(zip(served, live, strict=True)):
            found = _same_answer(s, lv, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if served == live else f"{where}: {served!r} != {live!r}"


def check_served_equals_live(run: NotebookRun) -> None:
    """The notebook printed served and live answers, and they agree."""
    checks = run.answer_checks()
    assert checks, f"{run.path.name} printed no {{'served': ..., 'live': ...}} JSON line"
    for check in checks:
        assert check["served"], "the served answers are empty"
        difference = _same_answer(check["served"], check["live"])
        assert difference is None, f"served != live: {difference}"


def check_quickstart(run: NotebookRun) -> None:
    """The quickstart prints the raw HTTP reply; its prediction must be one of the four labels."""
    replies = []
    for line in run.stream_text().splitlines():
        if line.startswith("{'predictions'"):
            replies.append(ast.literal_eval(line))
    assert replies, "the quickstart printed no HTTP reply"
    for reply in replies:
        assert reply["version"] == 1
        assert len(reply["predictions"]) == 1
        assert reply["predictions"][0] in {"World", "Sports", "Business", "Sci/Tec"}
    if run.answer_checks():
        check_served_equals_live(run)


def check_versions(run: NotebookRun) -> None:
    """Both versions answer like their live model, differ from each other, and rollback sticks."""
    check_served_equals_live(run)
    (check,) = run.answer_checks()
    served = check["served"]
    assert _same_answer(served["v1"], served["v2"]) is not None, "v1 and v2 answered alike"
    assert served["default_version"] == 1, "after the rollback the default is not version 1"
    assert _same_answer(served["default"], check["live"]["v1"]) is None


def check_team_server(run: NotebookRun) -> None:
    """The teammate's script got the live answers, and the notebook stopped its server itself.

    (Stopping the kernel would take the server down too, so ``_leftovers`` alone cannot tell.)
    """
    check_served_equals_live(run)
    (check,) = run.answer_checks()
    assert isinstance(check["team_server_exit_code"], int), "the notebook left its server running"


CHECKS: dict[str, Callable[[NotebookRun], None]] = {
    "01_quickstart.ipynb": check_quickstart,
    "04_versions.ipynb": check_versions,
    "05_team_server.ipynb": check_team_server,
}


def test_the_examples_are_all_here() -> None:
    """A renamed folder or glob must not turn this file into a silent pass."""
    names = {path.name for path in NOTEBOOKS}
    assert {
        "01_quickstart.ipynb",
        "02_image_bytes.ipynb",
        "03_tabular_json.ipynb",
        "04_versions.ipynb",
        "05_team_server.ipynb",
        "06_streaming.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path) -> None:
    """Outputs hold tokens, ports and timings from someone's run; the repository keeps none."""
    notebook = _read_notebook(path)
    nbformat.validate(notebook)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"cell {index} of {path.name} has stored outputs"
        assert cell.execution_count is None, f"cell {index} of {path.name} has an execution count"


@pytest.mark.timeout(int(TIME_LIMIT_S * 3 * 2))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    """Top to bottom without errors, answers served like the live model, fast, nothing left over."""
    run = _run(path, tmp_path / "easytensor-home")
    print(f"{path.name}: {run.seconds:.1f} s (load factor {run.load_factor:.2f})")
    left = _leftovers(run)

    assert run.error is None, f"{path.name} failed:\n{run.error}"
    errors = [o for o in run.outputs() if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    assert not left, f"still running {SERVER_EXIT_S:.0f} s after the kernel stopped: {left}"
    if path.name not in OWN_SERVER:
        assert run.embedded_pid is not None, "no embedded server was running at the end"

    CHECKS.get(path.name, check_served_equals_live)(run)

    budget = TIME_LIMIT_S * run.load_factor
    assert run.seconds < budget, (
        f"{path.name} took {run.seconds:.1f} s; the limit is {TIME_LIMIT_S:.0f} s "
        f"(x{run.load_factor:.2f} for the machine's load)"
    )
