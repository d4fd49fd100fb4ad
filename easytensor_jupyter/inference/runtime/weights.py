"""Put the weights file's tensors into the model without copying them.

safetensors maps the file and hands out copy-on-write tensors over it; pointing each parameter
and buffer at them (``.data``, so every module sharing a tied parameter sees it) makes loading
cost nothing up front: a page is read when the model first touches it, a 1 GiB load check
reads only what its sample needs, and workers of one version share the file's pages until one
writes. ``load_state_dict`` remains the way for what this can't do faithfully: another device,
a module with its own loading code or load hooks, or a file that stores a tied
tensor under one name only for parameters that share memory without being one object.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model

__all__ = ["load_weights"]

# torch's own overrides here only migrate state dicts written by older torch versions.
_TORCH_LOADERS = ("torch.nn.modules.batchnorm", "torch.nn.modules.instancenorm")


def _custom_loading(model: torch.nn.Module) -> bool:
    for module in model.modules():
        if module._load_state_dict_pre_hooks or module._load_state_dict_post_hooks:
            return True
        for cls in type(module).__mro__:
            if cls is torch.nn.Module:
                break
            if "_load_from_state_dict" in vars(cls) and cls.__module__ not in _TORCH_LOADERS:
                return True
    return any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters())


def _map_weights(model: torch.nn.Module, weights: Path) -> bool:
    targets = model.state_dict(keep_vars=True)
    with safe_open(str(weights), framework="pt") as fh:
        names = set(fh.keys())
        saved = {id(targets[name]) for name in names if name in targets}
        if len(saved) < len(names) or any(
            id(target) not in saved for name, target in targets.items() if name not in names
        ):
            return False
        with torch.no_grad():
            for name in names:
                tensor = fh.get_tensor(name)
                target = targets[name]
                if tensor.shape != target.shape or tensor.dtype != target.dtype:
                    return False
                target.data = tensor
    return True


def load_weights(model: torch.nn.Module, weights: Path, device: str) -> None:
    """Load ``weights`` into ``model`` (built, keys already checked) on ``device``."""
    if device == "cpu" and not _custom_loading(model) and _map_weights(model, weights):
        return
    load_model(model, str(weights), strict=True, device=device)
