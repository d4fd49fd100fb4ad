"""Collect notebook values by section and write them as the bundle's state files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from easytensor_jupyter.state.encode import Encoder, Unencodable
from easytensor_jupyter.state.kinds import ClassRef
from easytensor_jupyter.state.nodes import FORMAT, STATE_JSON, STATE_SKOPS, STATE_TENSORS

__all__ = ["StateWriter"]


class StateWriter:
    """Collects values by section, checks each as it comes, and writes the state files.

    ``class_ref`` says where the reader will find a class or function; the classes it was asked
    about are in ``classes_used`` (for the capture to put their source into ``model.py``).
    """

    def __init__(self, class_ref: ClassRef) -> None:
        self.classes_used: list[Any] = []
        self._class_ref = class_ref
        self.globals: dict[str, Any] = {}
        self.init: dict[str, Any] = {}
        self.attrs: dict[str, dict[str, Any]] = {}
        self.frozen: list[str] = []
        """Parameters with ``requires_grad`` off."""

    def _recording_ref(self, target: Any, instance_class: bool) -> dict[str, str] | None:
        ref = self._class_ref(target, instance_class)
        if ref is not None and all(target is not t for t in self.classes_used):
            self.classes_used.append(target)
        return ref

    def check(self, value: object, path: str) -> None:
        """Raise Unencodable now, naming the part, rather than when the bundle is written."""
        encoder = Encoder(self._recording_ref, None)
        encoder.encode(value, path)
        if encoder.skops:
            import skops.io

            try:
                skops.io.dumps(encoder.skops)
            except Exception as exc:
                raise Unencodable(
                    path,
                    value,
                    f"skops cannot save it ({type(exc).__name__}: {exc})",
                    "Keep only fitted scikit-learn objects and plain data in it.",
                ) from None

    def add_global(self, name: str, value: object) -> None:
        self.check(value, name)
        self.globals[name] = value

    def set_init(self, args: list[Any], kwargs: dict[str, Any], label: str) -> None:
        self.check([args, kwargs], label)
        self.init = {"args": list(args), "kwargs": dict(kwargs)}

    def add_attr(self, module_path: str, attr: str, value: object, label: str) -> None:
        self.check(value, label)
        self.attrs.setdefault(module_path, {})[attr] = value

    def __bool__(self) -> bool:
        return bool(self.globals or self.init or self.attrs or self.frozen)

    def write(self, directory: Path) -> list[str]:
        """Write the state files that have content; returns their names."""
        roots: list[object] = [
            *self.globals.values(),
            *self.init.get("args", []),
            *self.init.get("kwargs", {}).values(),
            *(value for attrs in self.attrs.values() for value in attrs.values()),
        ]
        counts: dict[int, int] = {}
        counter = Encoder(self._class_ref, None)
        for value in roots:
            counter.count(value, counts)
        encoder = Encoder(self._class_ref, counts)
        doc: dict[str, Any] = {"format": FORMAT}
        doc["globals"] = {k: encoder.encode(v, k) for k, v in self.globals.items()}
        if self.init:
            doc["init"] = {
                "args": [encoder.encode(v, f"init[{i}]") for i, v in enumerate(self.init["args"])],
                "kwargs": {k: encoder.encode(v, k) for k, v in self.init["kwargs"].items()},
            }
        doc["attrs"] = {
            where: {a: encoder.encode(v, f"{where}.{a}") for a, v in attrs.items()}
            for where, attrs in self.attrs.items()
        }
        if self.frozen:
            doc["frozen"] = list(self.frozen)
        written = [STATE_JSON]
        (directory / STATE_JSON).write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
        if encoder.tensors:
            from safetensors.torch import save_file

            save_file(encoder.tensors, str(directory / STATE_TENSORS))
            written.append(STATE_TENSORS)
        if encoder.skops:
            import skops.io

            (directory / STATE_SKOPS).write_bytes(skops.io.dumps(encoder.skops))
            written.append(STATE_SKOPS)
        return written
