"""What a live model carries beyond its weights, found by comparing it with a fresh instance."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from easytensor_jupyter.instance_state import InstanceStateError, capture_instance, same_value
from easytensor_jupyter.state import StateReader, StateWriter, class_ref_policy


class Tagger(nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(width, 2)
        self.threshold = 0.5
        self.noise = torch.randn(3)

    def predict_single(self, x: Any) -> Any:
        return x


def writer() -> StateWriter:
    return StateWriter(class_ref_policy(lambda _: False))


def test_only_attributes_that_differ_from_a_fresh_instance_travel(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tagger(2)
    model.threshold = 0.7
    model.classes_ = ["a", "b"]
    model.lin.calibration = {"t": 2.0}
    model.lin.weight.requires_grad_(False)
    state = writer()
    report = capture_instance(model, [2], {}, state)
    assert report.attributes == [
        "model.threshold",
        "model.noise",
        "model.classes_",
        "model.lin.calibration",
    ]
    assert report.frozen == ["lin.weight"] and not report.init_as_state
    state.write(tmp_path)
    attrs = StateReader(tmp_path).attrs({})
    assert attrs[""]["threshold"] == 0.7 and attrs["lin"] == {"calibration": {"t": 2.0}}
    assert torch.equal(attrs[""]["noise"], model.noise)
    assert StateReader(tmp_path).frozen() == {"lin.weight"}


def test_the_fresh_instance_leaves_the_notebooks_random_state_alone() -> None:
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    model = Tagger()
    expected = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    model = Tagger()
    capture_instance(model, [], {}, writer())
    assert (torch.rand(1), random.random(), np.random.rand()) == expected


def test_an_attribute_that_cannot_travel_is_named() -> None:
    model = Tagger()
    model.guard = threading.Lock()
    with pytest.raises(InstanceStateError, match=r"model\.guard .*_thread\.lock"):
        capture_instance(model, [], {}, writer())


def test_non_json_constructor_arguments_travel_as_state(tmp_path: Path) -> None:
    class Labelled(nn.Module):
        def __init__(self, labels: dict[int, str]) -> None:
            super().__init__()
            self.labels = labels
            self.lin = nn.Linear(1, len(labels))

    model = Labelled({0: "neg", 1: "pos"})
    state = writer()
    report = capture_instance(model, [{0: "neg", 1: "pos"}], {}, state)
    assert report.init_as_state and report.attributes == []
    state.write(tmp_path)
    assert StateReader(tmp_path).init({}) == ([{0: "neg", 1: "pos"}], {})


def test_a_model_whose_fresh_build_fails_carries_what_it_can() -> None:
    class Fragile(nn.Module):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path
            self.lin = nn.Linear(1, 1)
            if not Path(path).exists():
                raise FileNotFoundError(path)

    model = Fragile(__file__)
    report = capture_instance(model, ["/no/such/file"], {}, writer())
    assert "Could not build a fresh Fragile(...)" in report.warnings[0]
    assert report.attributes[0] == "model.path"


def test_same_value_compares_types_tensors_and_objects() -> None:
    assert same_value(torch.ones(2), torch.ones(2))
    assert not same_value(torch.ones(2), torch.ones(2, dtype=torch.float64))
    assert same_value({"a": [1, np.arange(3)]}, {"a": [1, np.arange(3)]})
    assert not same_value(1, 1.0) and not same_value([1], (1,))


def test_a_constructor_argument_that_cannot_travel_is_named() -> None:
    with pytest.raises(InstanceStateError, match=r"argument of Tagger\(\.\.\.\).*_thread\.lock"):
        capture_instance(Tagger(), [], {"guard": threading.Lock()}, writer())
