"""Build model bundles on disk for tests: model.py, weights.safetensors and a manifest.

``make_bundle(tmp_path)`` gives a ``Bundle`` that streams itself with the real
``bundle.iter_bundle_stream``, so tests upload exactly what the client would. Weights come from a
fixed seed, so two bundles built from the same source and arguments are byte-identical.
"""

from __future__ import annotations

import io
import platform
import tarfile
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model

from easytensor_jupyter.bundle import (
    MODEL_FILE,
    WEIGHTS_FILE,
    Batching,
    Manifest,
    Sample,
    file_entry,
    iter_bundle_stream,
)

__all__ = ["BATCH_SOURCE", "TINY_SOURCE", "Bundle", "make_bundle", "raw_tar"]

TINY_SOURCE = textwrap.dedent(
    '''
    """A tiny model whose special text inputs misbehave on purpose."""
    import ctypes
    import os

    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self, n_in=4, n_out=2, tag="base"):
            super().__init__()
            self.linear = nn.Linear(n_in, n_out)
            self.tag = tag

        def predict_single(self, x):
            if isinstance(x, str):
                if x == "raise":
                    raise ValueError("boom: cannot handle this input")
                if x == "hang":
                    while True:
                        pass
                if x == "exit":
                    os._exit(1)
                if x == "segv":
                    ctypes.string_at(0)
                if x == "object":
                    return object()
                if x == "env":
                    return sorted(k for k in os.environ if k.startswith("EASYTENSOR"))
                if x == "print":
                    print("hello from the model", flush=True)
                return {"text": x, "length": len(x), "tag": self.tag}
            if isinstance(x, bytes):
                return {"bytes": len(x), "head": list(x[:4])}
            if isinstance(x, dict):
                return {"echo": x}
            return self.linear(torch.tensor(x, dtype=torch.float32)).tolist()
    '''
)

BATCH_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Batcher(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def predict_single(self, x):
            return {"value": x, "batch": 1}

        def predict_batch(self, xs):
            return [{"value": x, "batch": len(xs)} for x in xs]
    """
)


@dataclass
class Bundle:
    directory: Path
    manifest: Manifest
    files: dict[str, Path]

    def stream(self, skip: frozenset[str] = frozenset()) -> Iterator[bytes]:
        return iter_bundle_stream(self.manifest, self.files, skip)

    def tar_bytes(self, skip: frozenset[str] = frozenset()) -> bytes:
        return b"".join(self.stream(skip))

    def replace_file(self, name: str, data: bytes) -> None:
        """Overwrite one file and its manifest entry, keeping the bundle consistent."""
        path = self.directory / name
        path.write_bytes(data)
        self.files[name] = path
        self.manifest.files[name] = file_entry(path)
        (self.directory / "manifest.json").write_bytes(self.manifest.to_json_bytes())


def _build(
    source: str, class_name: str, args: list[Any], kwargs: dict[str, Any]
) -> torch.nn.Module:
    module = types.ModuleType("easytensor_test_model")
    exec(compile(source, "model.py", "exec"), module.__dict__)
    model: torch.nn.Module = getattr(module, class_name)(*args, **kwargs)
    return model


def make_bundle(
    directory: Path,
    *,
    name: str = "tiny",
    source: str = TINY_SOURCE,
    class_name: str = "Tiny",
    init_args: list[Any] | None = None,
    init_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    sample: Any = "hello",
    batching: Batching | None = None,
    model: torch.nn.Module | None = None,
    streaming: bool = False,
) -> Bundle:
    """Write a bundle into ``directory`` (created) and return it, ready to stream."""
    directory.mkdir(parents=True, exist_ok=True)
    args = list(init_args or [])
    kwargs = dict(init_kwargs or {})
    (directory / MODEL_FILE).write_text(source, encoding="utf-8")
    if model is None:
        torch.manual_seed(seed)
        model = _build(source, class_name, args, kwargs)
    save_model(model, str(directory / WEIGHTS_FILE))
    files = {MODEL_FILE: directory / MODEL_FILE, WEIGHTS_FILE: directory / WEIGHTS_FILE}
    manifest = Manifest(
        name=name,
        class_name=class_name,
        init_args=args,
        init_kwargs=kwargs,
        files={n: file_entry(p) for n, p in files.items()},
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        sample=Sample(input=sample, output=None) if sample is not None else None,
        input_kind="text" if isinstance(sample, str) else "unknown",
        batching=batching,
        streaming=streaming,
        provenance={"test": True},
    )
    (directory / "manifest.json").write_bytes(manifest.to_json_bytes())
    return Bundle(directory, manifest, files)


def raw_tar(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """A hand-made tar: ``(name, symlink target or None, data)`` per member."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, link, data in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
