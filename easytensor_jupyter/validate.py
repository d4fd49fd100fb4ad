"""Checks before upload: static checks of model.py, then a rebuild in a fresh process.

Everything here fails with ``ModelCheckError`` whose text names the file, line, key or value
that is wrong, so a user can fix it without reading a traceback; nothing is uploaded after one.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from easytensor_jupyter.bundle import Manifest

__all__ = ["ModelCheckError", "check_source", "compare_outputs", "rebuild_in_fresh_process"]

FRESH_TIMEOUT_S = 300.0


class ModelCheckError(ValueError):
    """The model cannot be published as it is; the message says what to change."""


def check_source(source: str, filename: str, class_name: str) -> None:
    """model.py parses, defines ``class_name`` at top level, with ``predict_single(self, x)``."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ModelCheckError(
            f"{filename}, line {exc.lineno}: syntax error: {exc.msg}\n    {(exc.text or '').rstrip()}"
        ) from None
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    node = classes.get(class_name)
    if node is None:
        found = ", ".join(sorted(classes)) or "no classes"
        raise ModelCheckError(
            f"{filename} does not define class {class_name} (the class of your model); it defines {found}. "
            f"Put the {class_name} class in {filename}."
        )
    methods = {
        item.name: item
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    method = methods.get("predict_single")
    if method is None:
        if any(isinstance(base, ast.Name) and base.id in classes for base in node.bases):
            return  # predict_single may be inherited from a helper class; the fresh process checks it
        raise ModelCheckError(
            f"{filename}, line {node.lineno}: class {class_name} has no predict_single method. "
            "Add `def predict_single(self, input):` that takes one input and returns a JSON-able answer."
        )
    args = method.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    required = len(positional) - len(args.defaults)
    if args.vararg is None and (len(positional) < 2 or required > 2):
        raise ModelCheckError(
            f"{filename}, line {method.lineno}: {class_name}.predict_single({', '.join(positional)}) must take "
            "exactly one input besides self, e.g. `def predict_single(self, input):`"
        )


def rebuild_in_fresh_process(
    directory: Path, *, device: str = "cpu", timeout: float = FRESH_TIMEOUT_S
) -> dict[str, Any]:
    """Run ``inference.check_main`` in a new interpreter and return its report.

    The new interpreter is a child of the warm parent (``warm_check``) when one can be had:
    forked before any model code ran, so it is as fresh as a new ``python``, without the
    second or two of importing torch again.
    """
    if os.environ.get("EASYTENSOR_WARM_CHECK", "1") != "0":
        from easytensor_jupyter.warm_check import shared_checker

        warm = shared_checker().check(directory, device, timeout)
        if warm is not None and warm.get("crashed"):
            raise ModelCheckError(
                "The fresh-process check crashed, or took longer than "
                f"{timeout:g} s (does model.py do heavy work at import time?)"
            )
        if warm is not None:
            return warm
    with tempfile.TemporaryDirectory(prefix="easytensor-check-") as tmp:
        report_path = Path(tmp) / "report.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
        command = [
            sys.executable,
            "-m",
            "easytensor_jupyter.inference.backends.local.check_main",
            str(directory),
            "--report",
            str(report_path),
            "--device",
            device,
        ]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=tmp,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ModelCheckError(
                f"Rebuilding the model in a fresh process took longer than {timeout:g} s "
                "(does model.py do heavy work at import time?)"
            ) from None
        if proc.returncode != 0 or not report_path.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise ModelCheckError(
                f"The fresh-process check crashed (exit code {proc.returncode}):\n{tail}"
            )
        report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
        return report


def explain_report(report: dict[str, Any], manifest: Manifest) -> None:
    """Raise ModelCheckError for a failed rebuild or a parity difference."""
    if not report.get("ok"):
        error = report.get("error") or {}
        stage = error.get("stage", "load")
        message = f"In a fresh Python process, {error.get('message')}"
        if stage == "import":
            message += "\nmodel.py must import everything it uses; names from other notebook cells are not there."
        if stage in ("build", "weights"):
            message += (
                f"\nThe class was built as {manifest.class_name}(*{manifest.init_args!r}, **{manifest.init_kwargs!r}). "
                "If the model was built with other arguments, pass them (upload_model(..., init_kwargs={...}) "
                "or %%easytensor_model --init '{...}')."
            )
        if error.get("detail"):
            message += f"\n{error['detail']}"
        raise ModelCheckError(message)
    if manifest.sample is None:
        return
    if not report.get("sample_ok"):
        error = report.get("sample_error") or {}
        tail = (
            (error.get("detail") or {}).get("traceback", "")
            if isinstance(error.get("detail"), dict)
            else ""
        )
        raise ModelCheckError(
            f"In a fresh process, predict_single(sample) failed: {error.get('message')}\n{tail}".rstrip()
        )
    difference = compare_outputs(manifest.sample.output, report.get("sample_output"))
    if not difference and manifest.streaming:
        from easytensor_jupyter.stream_parity import stream_parity_error

        streamed = stream_parity_error(report, manifest)
        if streamed:
            raise ModelCheckError(streamed)
    if difference:
        raise ModelCheckError(
            "The rebuilt model answers the sample differently from your live model: "
            f"{difference}. Something predict_single uses is not in model.py the way it is in your "
            "session (a global changed after the class was defined, or randomness): make it part of the model."
        )


def compare_outputs(
    live: Any, rebuilt: Any, path: str = "answer", rel: float = 1e-4, abs_tol: float = 1e-5
) -> str | None:
    """Where two JSON answers differ, or None; floats within a small tolerance count as equal."""
    if isinstance(live, bool) or isinstance(rebuilt, bool):
        return None if live is rebuilt else f"{path}: live {live!r} vs rebuilt {rebuilt!r}"
    if isinstance(live, int | float) and isinstance(rebuilt, int | float):
        if math.isclose(float(live), float(rebuilt), rel_tol=rel, abs_tol=abs_tol):
            return None
        return f"{path}: live {live!r} vs rebuilt {rebuilt!r}"
    if isinstance(live, list) and isinstance(rebuilt, list):
        if len(live) != len(rebuilt):
            return f"{path}: live has {len(live)} items, rebuilt has {len(rebuilt)}"
        for i, (a, b) in enumerate(zip(live, rebuilt, strict=True)):
            found = compare_outputs(a, b, f"{path}[{i}]", rel, abs_tol)
            if found:
                return found
        return None
    if isinstance(live, dict) and isinstance(rebuilt, dict):
        if set(live) != set(rebuilt):
            return f"{path}: keys differ: live {sorted(live)} vs rebuilt {sorted(rebuilt)}"
        for key in live:
            found = compare_outputs(live[key], rebuilt[key], f"{path}[{key!r}]", rel, abs_tol)
            if found:
                return found
        return None
    return None if live == rebuilt else f"{path}: live {live!r} vs rebuilt {rebuilt!r}"
