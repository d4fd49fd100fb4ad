"""Which installed packages a model imports, pinned; and what an environment lacks."""

from __future__ import annotations

import importlib.metadata as metadata
import platform
from pathlib import Path

import pytest

from easytensor_jupyter.requirements import (
    describe,
    detect_requirements,
    merge_requirements,
    missing,
    runtime_warnings,
)

SOURCE = """
import json, os
import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from easytensor_jupyter.state import bundle_state
import textutils
"""


def test_imports_from_installed_distributions_are_pinned(tmp_path: Path) -> None:
    (tmp_path / "textutils.py").write_text("import yaml\n")
    pins = detect_requirements(SOURCE, {"textutils": tmp_path / "textutils.py"})
    assert pins == [
        f"numpy=={metadata.version('numpy')}",
        f"pyyaml=={metadata.version('PyYAML')}",
        f"scikit-learn=={metadata.version('scikit-learn')}",
    ]


def test_state_files_bring_their_readers(tmp_path: Path) -> None:
    pins = detect_requirements("import torch\n", state_files=["state.skops"])
    assert pins == [
        f"scikit-learn=={metadata.version('scikit-learn')}",
        f"skops=={metadata.version('skops')}",
    ]


def test_given_requirements_add_and_override() -> None:
    merged = merge_requirements(["numpy==2.0.0", "regex==1"], ["numpy>=1.26", "extra-pkg==3"])
    assert merged == ["extra-pkg==3", "numpy>=1.26", "regex==1"]
    with pytest.raises(ValueError, match="not a requirement"):
        merge_requirements([], ["not a requirement!!"])


def test_missing_names_the_package_and_both_versions() -> None:
    numpy_version = metadata.version("numpy")
    gaps = missing([f"numpy=={numpy_version}", "numpy<1", "etdemo-absent==1.0", "torch==0.1"])
    assert [g.text() for g in gaps] == [
        f"numpy (notebook: <1; server: has {numpy_version})",
        "etdemo-absent (notebook: ==1.0; server: not installed)",
    ]


def test_runtime_warnings_compare_major_minor_only() -> None:
    here = platform.python_version()
    torch_version = metadata.version("torch")
    assert runtime_warnings(here, torch_version) == []
    assert runtime_warnings(here.rsplit(".", 1)[0] + ".99", torch_version) == []
    warnings = runtime_warnings("3.8.1", "1.13.0")
    assert "Python 3.8.1" in warnings[0] and "torch 1.13.0" in warnings[1]


def test_describe() -> None:
    assert describe(["a==1"]) == "Requirements: a==1; torch and Python are the server's"
