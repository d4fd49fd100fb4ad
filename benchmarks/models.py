"""The benchmark's models, and their bundles and request bodies.

Every system loads the same bundle folder (model.py + weights.safetensors + manifest.json)
through the product's own ``runtime.load_bundle_dir``, so they all serve identical weights.
"""

from __future__ import annotations

import base64
import platform
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch
from safetensors.torch import save_model

from easytensor_jupyter.bundle import MODEL_FILE, WEIGHTS_FILE, Batching, Manifest, file_entry

__all__ = ["MODELS", "BenchModel", "build_bundle", "request_body", "sample_instance"]

SOURCE = textwrap.dedent(
    '''
    """Benchmark models: a tiny MLP and a mid-size CNN on 64x64 RGB bytes."""
    import torch
    from torch import nn


    class TinyMLP(nn.Module):
        def __init__(self, n_in=16, hidden=32, n_out=4):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

        def predict_single(self, x):
            return self.net(torch.tensor(x, dtype=torch.float32)).tolist()


    def _decode(data):
        pixels = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return pixels.view(3, 64, 64).to(torch.float32).div_(255.0)


    class SmallCNN(nn.Module):
        def __init__(self, n_classes=10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )
            # A VGG-style classifier head: most weights sit here, so one image at a time is
            # bound by reading them, and a batch reads them once.
            self.head = nn.Sequential(
                nn.Linear(64 * 4 * 4, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                nn.Linear(2048, n_classes),
            )

        def _answer(self, logits):
            probs = logits.softmax(-1)
            score, label = probs.max(-1)
            return {"label": int(label), "score": round(float(score), 5)}

        def predict_single(self, data):
            logits = self.head(self.features(_decode(data).unsqueeze(0)).flatten(1))[0]
            return self._answer(logits)


    class SmallCNNBatch(SmallCNN):
        def predict_batch(self, items):
            batch = torch.stack([_decode(d) for d in items])
            logits = self.head(self.features(batch).flatten(1))
            return [self._answer(row) for row in logits]


    class Big(nn.Module):
        def __init__(self, n=16384):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(n, n), requires_grad=False)

        def predict_single(self, x):
            return float(self.weight[0, 0])
    '''
)


@dataclass(frozen=True)
class BenchModel:
    key: str
    class_name: str
    title: str
    batching: Batching | None = None


MODELS: dict[str, BenchModel] = {
    m.key: m
    for m in (
        BenchModel("tiny", "TinyMLP", "tiny MLP"),
        BenchModel("cnn", "SmallCNN", "CNN 64x64"),
        BenchModel(
            "cnn_batch",
            "SmallCNNBatch",
            "CNN 64x64 + predict_batch",
            Batching(max_batch_size=16, max_wait_ms=2.0),
        ),
    )
}


def _module() -> types.ModuleType:
    module = types.ModuleType("easytensor_bench_model")
    exec(compile(SOURCE, "model.py", "exec"), module.__dict__)
    return module


def build_model(class_name: str) -> torch.nn.Module:
    model: torch.nn.Module = getattr(_module(), class_name)()
    return model


def build_bundle(
    directory: Path, name: str, class_name: str, batching: Batching | None, seed: int = 0
) -> Path:
    """Write a bundle with fixed-seed weights (so every system gets the same ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_text(SOURCE, encoding="utf-8")
    torch.manual_seed(seed)
    # The batched CNN shares the unbatched one's weights: same seed, same layers.
    model = build_model_big() if class_name == "Big" else build_model(class_name)
    save_model(model, str(directory / WEIGHTS_FILE))
    files = {MODEL_FILE: directory / MODEL_FILE, WEIGHTS_FILE: directory / WEIGHTS_FILE}
    manifest = Manifest(
        name=name,
        class_name=class_name,
        init_args=[],
        init_kwargs={},
        files={n: file_entry(p) for n, p in files.items()},
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        batching=batching,
        provenance={"benchmark": True},
    )
    (directory / "manifest.json").write_bytes(manifest.to_json_bytes())
    return directory


def build_model_big() -> torch.nn.Module:
    """A 1 GiB ``state_dict`` (16384 x 16384 float32), filled cheaply."""
    model = _module().Big()
    with torch.no_grad():
        model.weight.fill_(0.5)
    return model


def sample_instance(key: str) -> Any:
    """One input as the wire carries it: a float list, or 64x64 RGB bytes as ``{"b64"}``."""
    if key == "tiny":
        return [round(0.1 * i, 1) for i in range(16)]
    pixels = bytes((i * 7) % 256 for i in range(3 * 64 * 64))
    return {"b64": base64.b64encode(pixels).decode("ascii")}


def native_instance(key: str) -> Any:
    """The input ``predict_single`` gets once the server decoded the wire form."""
    value = sample_instance(key)
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


def request_body(key: str) -> bytes:
    return orjson.dumps({"instances": [sample_instance(key)]})
