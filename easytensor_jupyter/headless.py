"""What ``easytensor deploy notebook.ipynb`` tells the kernel it runs, and what the kernel tells
back: through two environment variables, so the magics need no other channel.

``EASYTENSOR_DRY_RUN_DIR`` makes each deploy write its checked bundle into that folder instead
of uploading it; ``EASYTENSOR_DEPLOY_REPORT`` names a file where each deploy appends one JSON
line (what was deployed or written, and from which cell).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "DRY_RUN_ENV",
    "REPORT_ENV",
    "dry_run_dir",
    "record",
    "record_upload",
    "write_checked_bundle",
    "write_dry_run",
]

DRY_RUN_ENV = "EASYTENSOR_DRY_RUN_DIR"
REPORT_ENV = "EASYTENSOR_DEPLOY_REPORT"


def dry_run_dir() -> Path | None:
    value = os.environ.get(DRY_RUN_ENV)
    return Path(value) if value else None


def record(entry: dict[str, Any]) -> None:
    """Append one deploy to the report file, when a headless run asked for one."""
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def write_checked_bundle(request: Any, out: Path, step: Any = print) -> tuple[Path, Any]:
    """Build the bundle, check it in a fresh process, and copy it to ``out/<name>``."""
    from easytensor_jupyter.packaging import build_bundle
    from easytensor_jupyter.validate import explain_report, rebuild_in_fresh_process

    with tempfile.TemporaryDirectory(prefix="easytensor-bundle-") as tmp:
        directory = Path(tmp)
        manifest = build_bundle(request, directory)
        for note in request.notes:
            step(note)
        step("Rebuilding the model in a fresh Python process")
        explain_report(rebuild_in_fresh_process(directory, device=request.device), manifest)
        target = out / _folder_name(request.name)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(directory, target)
    step(f"Dry run: wrote the bundle to {target}; nothing was uploaded")
    return target, manifest


def write_dry_run(request: Any) -> Path:
    """The dry-run deploy: the checked bundle into ``EASYTENSOR_DRY_RUN_DIR``, and its record."""
    out = dry_run_dir()
    assert out is not None
    target, _ = write_checked_bundle(request, out)
    record({"name": request.name, "bundle": str(target), **request.provenance})
    return target


def record_upload(result: Any, endpoint: str, provenance: dict[str, Any]) -> None:
    record(
        {
            "name": result.name,
            "id": result.id,
            "version": result.version,
            "unchanged": result.unchanged,
            "endpoint": endpoint,
            **provenance,
        }
    )
