"""Which notebook, cell and execution a version came from.

JupyterLab sends the cell id with each execute request (``cellId``); a notebook run headless
(nbclient, ``easytensor deploy notebook.ipynb``) does not, so the id is looked up in the saved
notebook by the cell's source. The notebook's path is ``JPY_SESSION_NAME``, which
jupyter_server (and ``easytensor deploy``) set for the kernel, else IPython's ``__session__``
or VS Code's ``__vsc_ipynb_file__``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["cell_id_in_file", "cell_provenance"]

_MAX_BYTES = 64 << 20


def _body(source: str) -> str:
    first, _, rest = source.partition("\n")
    return rest if first.lstrip().startswith("%%") else source


def cell_id_in_file(notebook: str | None, cell: str) -> str | None:
    """The id of the code cell of ``notebook`` whose body is ``cell``; the last one if several."""
    if not notebook:
        return None
    path = Path(notebook)
    try:
        if not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return None
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None
    wanted = cell.strip()
    found = None
    for entry in cells:
        if not isinstance(entry, dict) or entry.get("cell_type") != "code":
            continue
        source = entry.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        if _body(text).strip() == wanted and isinstance(entry.get("id"), str):
            found = entry["id"]
    return found


def cell_provenance(shell: Any, cell: str) -> dict[str, Any]:
    """The manifest's ``provenance`` for the model cell ``cell`` running now in ``shell``."""
    header: dict[str, Any] = (
        getattr(getattr(shell, "kernel", None), "get_parent", lambda *_: {})() or {}
    )
    metadata = header.get("metadata", {}) if isinstance(header, dict) else {}
    notebook = (
        os.environ.get("JPY_SESSION_NAME")
        or shell.user_ns.get("__session__")
        or shell.user_ns.get("__vsc_ipynb_file__")
    )
    return {
        "notebook": notebook,
        "cell_id": metadata.get("cellId") or cell_id_in_file(notebook, cell),
        "execution_count": shell.execution_count,
        "source_sha256": hashlib.sha256(cell.encode("utf-8")).hexdigest(),
    }
