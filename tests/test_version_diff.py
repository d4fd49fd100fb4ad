"""What changed between two versions, from their files alone (no server): code and shipped
files as unified diffs, JSON state per value, manifest fields, weights with their largest change."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from easytensor_jupyter.bundle import Manifest, Sample, file_entry
from easytensor_jupyter.version_diff import diff_versions, render


def _version(root: Path, tag: str, *, helper: str, bias: float, hidden: int) -> Manifest:
    folder = root / tag
    folder.mkdir()
    (folder / "model.py").write_text(
        f"import torch\n\n\nclass M:\n    def f(self):\n        return {tag!r}\n"
    )
    with zipfile.ZipFile(folder / "modules.zip", "w") as archive:
        archive.writestr("utils.py", f"def helper(x):\n    return {helper}\n")
        if tag == "b":
            archive.writestr("extra.py", "X = 1\n")
    (folder / "state.json").write_text(json.dumps({"labels": ["a", "b"], "temperature": hidden}))
    save_file(
        {"fc.weight": torch.ones(2, 2), "fc.bias": torch.full((2,), bias)},
        str(folder / "weights.safetensors"),
    )
    files = {p.name: file_entry(p) for p in folder.iterdir()}
    return Manifest(
        name="m",
        class_name="M",
        init_kwargs={"hidden": hidden},
        files=files,
        requirements=["numpy==2.0"] if tag == "a" else ["numpy==2.1"],
        sample=Sample(input="hi", output=tag),
    )


def test_diff_of_two_versions(tmp_path: Path) -> None:
    a = _version(tmp_path, "a", helper="x", bias=0.0, hidden=8)
    b = _version(tmp_path, "b", helper="x + 1", bias=0.25, hidden=16)
    blobs = {
        e.sha256: tmp_path / tag / name
        for tag, m in (("a", a), ("b", b))
        for name, e in m.files.items()
    }
    diff = diff_versions(a, 1, b, 2, blobs.__getitem__)
    assert not diff["same"]
    assert diff["manifest"]["init_kwargs"] == {"from": {"hidden": 8}, "to": {"hidden": 16}}
    assert diff["manifest"]["requirements"] == {"from": ["numpy==2.0"], "to": ["numpy==2.1"]}
    assert diff["manifest"]["sample"]["to"] == {"input": "hi", "output": "b", "stream_output": None}
    assert diff["weights"]["total"] == 2
    assert [(c["name"], c["max_abs_diff"]) for c in diff["weights"]["changed"]] == [
        ("fc.bias", 0.25)
    ]
    by_name = {f["name"]: f for f in diff["files"]}
    assert set(by_name) == {
        "model.py",
        "state.json",
        "modules.zip:utils.py",
        "modules.zip:extra.py",
    }
    assert by_name["modules.zip:extra.py"]["status"] == "added"
    assert "+    return x + 1\n" in by_name["modules.zip:utils.py"]["diff"]
    assert '- "temperature": 8\n+ "temperature": 16\n' in by_name["state.json"]["diff"]
    text = render(diff, "m")
    assert text.startswith("m: v1 -> v2\n"), text
    assert "weights: 1 of 2 tensors changed, max abs difference 0.25" in text
    assert "--- v1/model.py\n+++ v2/model.py" in text

    same = diff_versions(a, 1, a, 1, blobs.__getitem__)
    assert same["same"] and render(same, "m") == "m: v1 -> v1: no differences"
