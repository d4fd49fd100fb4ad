"""Weights load as copy-on-write maps of the file, except where only load_state_dict is right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

from easytensor_jupyter.inference.runtime.weights import load_weights


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


class OwnLoader(nn.Module):
    calls = 0

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        type(self).calls += 1
        super()._load_from_state_dict(state_dict, prefix, *args)


def _saved(model: nn.Module, path: Path) -> Path:
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(-1, 1)
    save_model(model, str(path))
    return path


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def test_tied_and_batchnorm_model_loads_mapped_and_stays_tied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = Tied()
    source.norm.running_mean.fill_(0.5)
    weights = _saved(source, tmp_path / "tied.safetensors")
    torch.manual_seed(1)
    model = Tied()
    load_weights(model, weights, "cpu")
    assert _mapped(weights)
    assert model.head.weight is model.embed.weight
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert model.embed.weight.requires_grad
    before = weights.read_bytes()
    with torch.no_grad():
        model.embed.weight.add_(1.0)
    assert weights.read_bytes() == before, "writes to a parameter must not reach the file"
    assert torch.equal(model.head.weight, source.embed.weight + 1.0)


def test_module_with_its_own_loading_code_goes_through_load_state_dict(tmp_path: Path) -> None:
    weights = _saved(OwnLoader(), tmp_path / "own.safetensors")
    model = OwnLoader()
    OwnLoader.calls = 0
    load_weights(model, weights, "cpu")
    assert OwnLoader.calls == 1
    assert torch.equal(model.lin.weight, OwnLoader().lin.weight) is False


def test_load_state_dict_path_still_refuses_a_mismatch(tmp_path: Path) -> None:
    weights = _saved(nn.Linear(5, 2), tmp_path / "small.safetensors")
    with pytest.raises(RuntimeError):
        load_weights(nn.Linear(5, 3), weights, "cpu")
