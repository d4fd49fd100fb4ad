"""The warm parent's forked children are as fresh as a new interpreter, and as fast as a fork."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from easytensor_jupyter.packaging import PublishRequest, build_bundle
from easytensor_jupyter.validate import ModelCheckError, rebuild_in_fresh_process
from easytensor_jupyter.warm_check import WarmChecker

SOURCE = textwrap.dedent(
    """
    import json
    import os
    import torch
    from torch import nn

    SEEN = getattr(json, "_et_warm_mark", None)
    json._et_warm_mark = "set by an earlier check"
    CHECKING = __name__.startswith("easytensor_model_")
    {extra}

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def predict_single(self, x):
            return [float(self.lin(torch.tensor(x))), SEEN]
    """
)


def bundle(tmp_path: Path, name: str, extra: str = "") -> Path:
    source = SOURCE.format(extra=extra)
    namespace: dict[str, object] = {"__name__": "live"}
    exec(compile(source, "model.py", "exec"), namespace)
    model = namespace["Probe"]()  # type: ignore[operator]
    assert isinstance(model, torch.nn.Module)
    folder = tmp_path / name
    folder.mkdir()
    build_bundle(PublishRequest(name=name, model=model, source=source, sample=[1.0, 2.0]), folder)
    return folder


@pytest.fixture
def checker() -> WarmChecker:
    warm = WarmChecker()
    assert warm.ensure_started()
    yield warm  # type: ignore[misc]
    warm.close()


def test_children_share_no_state_and_match_a_new_interpreter(
    checker: WarmChecker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = bundle(tmp_path, "probe")
    first = checker.check(folder, "cpu", 60)
    second = checker.check(folder, "cpu", 60)
    assert first is not None and second is not None
    assert first["sample_output"][1] is None and second == first
    monkeypatch.setenv("EASYTENSOR_WARM_CHECK", "0")
    assert rebuild_in_fresh_process(folder) == first


def test_a_crash_or_a_hang_in_model_code_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EASYTENSOR_WARM_CHECK", "1")
    crash = bundle(tmp_path, "crash", "if CHECKING:\n    os._exit(3)")
    with pytest.raises(ModelCheckError, match="crashed"):
        rebuild_in_fresh_process(crash)
    hang = bundle(tmp_path, "hang", "import time\nif CHECKING:\n    time.sleep(30)")
    with pytest.raises(ModelCheckError, match="longer than 2 s"):
        rebuild_in_fresh_process(hang, timeout=2)
