"""``easytensor deploy notebook.ipynb``: run a saved notebook headless and deploy what its
``%%easytensor_model`` cells publish, for CI pipelines.

The notebook is read and checked with nbformat first, then executed top to bottom by nbclient
in a fresh kernel that is pointed at the chosen server; the magics report each deploy through
``headless``. With ``--dry-run`` the kernel writes the checked bundles into ``--out`` instead,
and the cells after the last publishing one are not run (they usually query the endpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from easytensor_jupyter.cli._common import connect, emit, say

__all__ = ["add_notebook_options", "deploy_notebook", "publishing_cells"]

_PUBLISH = re.compile(r"^\s*(%%easytensor_model\b|.*%easytensor_deploy\b)", re.M)


def add_notebook_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("for a notebook (.ipynb)")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="write the checked bundles to --out and upload nothing",
    )
    group.add_argument(
        "--out", type=Path, default=Path("easytensor-bundles"), help="where --dry-run writes"
    )
    group.add_argument(
        "--timeout", type=int, default=600, help="seconds one cell may run (default 600)"
    )
    group.add_argument("--kernel", help="kernel name (default: the notebook's own)")
    group.add_argument(
        "--executed", type=Path, help="also save the executed notebook, with its outputs"
    )


def _fail(message: str) -> Exception:
    from easytensor_jupyter.client import EasyTensorError

    return EasyTensorError(message, code="notebook_failed")


def publishing_cells(nb: Any) -> list[int]:
    """Indices of the code cells that run ``%%easytensor_model`` or ``%easytensor_deploy``."""
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and _PUBLISH.search(cell.source)
    ]


def _read(path: Path) -> Any:
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such notebook")
    try:
        nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(nb)
    except Exception as exc:
        raise _fail(f"{path} is not a valid notebook: {exc}") from None
    if not publishing_cells(nb):
        raise _fail(
            f"{path} has no %%easytensor_model cell, so there is nothing to deploy. Add "
            '%%easytensor_model "NAME" --instance VAR to the cell that defines the model class.'
        )
    return nb


def _describe(nb: Any, index: int) -> str:
    cell = nb.cells[index]
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index} (id {cell.get('id', '?')}, `{first[:80]}`)"


def _usage_error(cell: Any) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = "".join(out.get("text", ""))
            if "UsageError:" in text:
                return text.strip()
    return None


def _execute(nb: Any, path: Path, args: argparse.Namespace, stop: int) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
    )
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells[: stop + 1]):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                error = f"{exc.ename}: {exc.evalue}" if exc.ename else str(exc)
                raise _fail(f"{path}: {_describe(nb, index)} failed: {error}") from None
            usage = _usage_error(cell)
            if usage:
                raise _fail(f"{path}: {_describe(nb, index)} failed: {usage}")


def _cell_index(nb: Any, entry: dict[str, Any]) -> int | None:
    return next((i for i, c in enumerate(nb.cells) if c.get("id") == entry.get("cell_id")), None)


def deploy_notebook(args: argparse.Namespace) -> int:
    path: Path = args.model_file.resolve()
    nb = _read(path)
    cells = publishing_cells(nb)
    env = {"JPY_SESSION_NAME": str(path)}
    if args.dry_run:
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        env["EASYTENSOR_DRY_RUN_DIR"] = str(out)
        stop = cells[-1]
    else:
        client = connect(args)
        env["EASYTENSOR_URL"] = client.url
        if client.api_key:
            env["EASYTENSOR_API_KEY"] = client.api_key
        stop = len(nb.cells) - 1
    with tempfile.TemporaryDirectory(prefix="easytensor-deploy-") as tmp:
        report = Path(tmp) / "report.jsonl"
        env["EASYTENSOR_DEPLOY_REPORT"] = str(report)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            say(f"Running {path.name} in a fresh kernel")
            _execute(nb, path, args, stop)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if args.executed:
                import nbformat

                nbformat.write(nb, str(args.executed))  # type: ignore[no-untyped-call]
        entries = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if report.exists()
            else []
        )
    if not entries:
        raise _fail(
            f"{path} ran, but deployed nothing: its %%easytensor_model cells name no "
            "--instance VAR and no %easytensor_deploy VAR follows them."
        )
    lines = []
    for entry in entries:
        entry["cell_index"] = _cell_index(nb, entry)
        where = f"cell {entry['cell_index']}" if entry["cell_index"] is not None else "a cell"
        if args.dry_run:
            lines.append(f"{entry['name']} from {where}: bundle written to {entry['bundle']}")
        else:
            state = "unchanged, still" if entry.get("unchanged") else "published as"
            lines.append(
                f"{entry['name']} from {where}: {state} version {entry['version']} "
                f"({entry['id']}), endpoint {entry['endpoint']}"
            )
    key = "bundles" if args.dry_run else "deployed"
    emit(args, {key: entries}, "\n".join(lines))
    return 0
