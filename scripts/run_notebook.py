"""Run a notebook headless in a real kernel and print what its cells printed.

Used by the quickstart: the embedded server starts inside the kernel and stops with it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        print(f"error: a cell of {path.name} failed:\n{exc}", file=sys.stderr)
        return 1
    served = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text = out["text"]
                print(text, end="" if text.endswith("\n") else "\n")
                for line in text.splitlines():
                    if line.startswith('{"served"'):
                        served = json.loads(line)
    print(f"\nRan {path.name} in {time.perf_counter() - started:.1f} s.")
    if served is not None:
        print(
            f"Served prediction: {served['served']!r} (the notebook's own model said {served['live']!r})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
