"""What changed between two versions of a model: the code and shipped files as unified diffs,
the manifest's fields, and a summary of the weights.

Computed by the server, which holds both versions' files; everything is read as data (text,
zip listings, safetensors), never imported or unpickled. ``render`` turns the result into the
text ``easytensor models diff`` prints.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from easytensor_jupyter.bundle import MODEL_FILE, MODULES_FILE, WEIGHTS_FILE, Manifest

__all__ = ["MAX_TEXT_BYTES", "diff_versions", "render", "tensor_summary"]

MAX_TEXT_BYTES = 1 << 20
_TEXT_FILES = (MODEL_FILE, "state.json")
_TENSOR_FILES = (WEIGHTS_FILE, "constants.safetensors", "state.safetensors")
_MANIFEST_FIELDS = (
    "class_name",
    "init_args",
    "init_kwargs",
    "requirements",
    "sample",
    "input_kind",
    "batching",
    "streaming",
    "torch_version",
    "python_version",
)


def _unified(a: str, b: str, name: str, va: int, vb: int) -> str:
    lines = difflib.unified_diff(
        a.splitlines(keepends=True),
        b.splitlines(keepends=True),
        fromfile=f"v{va}/{name}",
        tofile=f"v{vb}/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _read_text(path: Path | None, name: str = "") -> str:
    """The file as text; JSON laid out one value per line, so its diff says which changed."""
    if path is None:
        return ""
    text = path.read_bytes()[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")
    if name.endswith(".json"):
        try:
            return json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
        except ValueError:
            pass
    return text


def _zip_texts(path: Path | None) -> dict[str, str]:
    """Members of modules.zip as text (binary or oversized members by size only)."""
    if path is None:
        return {}
    found: dict[str, str] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > MAX_TEXT_BYTES:
                found[info.filename] = f"({info.file_size} bytes, CRC {info.CRC:08x})\n"
                continue
            raw = archive.read(info)
            try:
                found[info.filename] = raw.decode("utf-8")
            except UnicodeDecodeError:
                found[info.filename] = f"(binary, {info.file_size} bytes, CRC {info.CRC:08x})\n"
    return found


def tensor_summary(a: Path | None, b: Path | None) -> dict[str, Any]:
    """Tensors added, removed and changed (with the max absolute difference) between two
    safetensors files, read one tensor at a time."""
    from safetensors import safe_open

    with contextlib.ExitStack() as stack:
        fa = stack.enter_context(safe_open(str(a), "pt")) if a else None
        fb = stack.enter_context(safe_open(str(b), "pt")) if b else None
        names_a = set(fa.keys()) if fa else set()
        names_b = set(fb.keys()) if fb else set()
        changed = []
        for name in sorted(names_a & names_b):
            assert fa is not None and fb is not None
            ta, tb = fa.get_tensor(name), fb.get_tensor(name)
            if ta.shape != tb.shape or ta.dtype != tb.dtype:
                changed.append(
                    {
                        "name": name,
                        "max_abs_diff": None,
                        "shape": [list(ta.shape), list(tb.shape)],
                        "dtype": [str(ta.dtype), str(tb.dtype)],
                    }
                )
                continue
            if ta.numel() == 0 or bool((ta == tb).all()):
                continue
            delta = (
                (ta.double() - tb.double()).abs().max().item() if ta.is_floating_point() else None
            )
            changed.append({"name": name, "max_abs_diff": delta, "shape": list(tb.shape)})
    return {
        "total": len(names_b),
        "changed": changed,
        "added": sorted(names_b - names_a),
        "removed": sorted(names_a - names_b),
    }


def diff_versions(
    a: Manifest, va: int, b: Manifest, vb: int, path: Callable[[str], Path]
) -> dict[str, Any]:
    """The difference from version ``va`` (manifest ``a``) to ``vb``; ``path`` maps a blob's
    sha256 to its file."""

    def file(m: Manifest, name: str) -> Path | None:
        entry = m.files.get(name)
        return path(entry.sha256) if entry else None

    def same(name: str) -> bool:
        ea, eb = a.files.get(name), b.files.get(name)
        return (ea.sha256 if ea else None) == (eb.sha256 if eb else None)

    files: list[dict[str, Any]] = []
    for name in _TEXT_FILES:
        if not same(name):
            text = _unified(
                _read_text(file(a, name), name), _read_text(file(b, name), name), name, va, vb
            )
            files.append({"name": name, "status": _status(a, b, name), "diff": text})
    if not same(MODULES_FILE):
        za, zb = _zip_texts(file(a, MODULES_FILE)), _zip_texts(file(b, MODULES_FILE))
        for member in sorted(set(za) | set(zb)):
            if za.get(member) != zb.get(member):
                status = (
                    "added" if member not in za else "removed" if member not in zb else "changed"
                )
                name = f"{MODULES_FILE}:{member}"
                text = _unified(za.get(member, ""), zb.get(member, ""), name, va, vb)
                files.append({"name": name, "status": status, "diff": text})
    if not same("state.skops"):
        files.append({"name": "state.skops", "status": _status(a, b, "state.skops"), "diff": ""})
    tensors = {
        name: tensor_summary(file(a, name), file(b, name))
        for name in _TENSOR_FILES
        if not same(name)
    }
    weights = tensors.pop(WEIGHTS_FILE, None)
    if weights is None:
        count = len(b.fingerprint["weights"]) if b.fingerprint else None
        weights = {"total": count, "changed": [], "added": [], "removed": []}
    manifest = {}
    for field in _MANIFEST_FIELDS:
        old, new = _plain(getattr(a, field)), _plain(getattr(b, field))
        if old != new:
            manifest[field] = {"from": old, "to": new}
    return {
        "from": va,
        "to": vb,
        "same": not files and not manifest and not tensors and not _moved(weights),
        "files": files,
        "manifest": manifest,
        "weights": weights,
        "data_tensors": tensors,
        "provenance": {"from": a.provenance, "to": b.provenance},
    }


def _status(a: Manifest, b: Manifest, name: str) -> str:
    return "added" if name not in a.files else "removed" if name not in b.files else "changed"


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _moved(summary: dict[str, Any]) -> bool:
    return bool(summary["changed"] or summary["added"] or summary["removed"])


def _weights_line(summary: dict[str, Any], label: str = "weights") -> str:
    if not _moved(summary):
        return f"{label}: unchanged"
    parts = []
    changed = summary["changed"]
    if changed:
        deltas = [c["max_abs_diff"] for c in changed if c.get("max_abs_diff") is not None]
        most = f", max abs difference {max(deltas):.4g}" if deltas else ""
        parts.append(f"{len(changed)} of {summary['total']} tensors changed{most}")
    if summary["added"]:
        parts.append(f"added {', '.join(summary['added'])}")
    if summary["removed"]:
        parts.append(f"removed {', '.join(summary['removed'])}")
    lines = [f"{label}: {'; '.join(parts)}"]
    for c in changed:
        if c.get("max_abs_diff") is not None:
            lines.append(f"  {c['name']}: max abs difference {c['max_abs_diff']:.4g}")
        else:
            lines.append(
                f"  {c['name']}: shape or dtype changed {c.get('shape')} {c.get('dtype', '')}"
            )
    return "\n".join(lines)


def render(diff: dict[str, Any], name: str = "") -> str:
    """The diff as ``easytensor models diff`` prints it."""
    head = f"{name}: v{diff['from']} -> v{diff['to']}".strip(": ")
    if diff["same"]:
        return f"{head}: no differences"
    out = [head]
    for field, change in diff["manifest"].items():
        out.append(
            f"{field}: {json.dumps(change['from'], sort_keys=True)} -> "
            f"{json.dumps(change['to'], sort_keys=True)}"
        )
    out.append(_weights_line(diff["weights"]))
    for file, summary in diff.get("data_tensors", {}).items():
        out.append(_weights_line(summary, file))
    for entry in diff["files"]:
        out.append(entry["diff"].rstrip("\n") or f"{entry['name']}: {entry['status']} (binary)")
    return "\n".join(out)
