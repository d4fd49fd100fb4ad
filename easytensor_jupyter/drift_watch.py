"""The kernel's side of drift: compare a model this kernel deployed with the server's default
version of it, and tell the query panels and the lab panel.

After a cell, only models with a query panel open here are checked: a check captures the class
again and hashes what moved, and doing that for every model after every cell made a notebook
with dozens of deployed models slow to run. The lab panel's request and ``%easytensor_models``
check the models they show when they ask.

The kernel's fingerprint comes from what a deploy would ship now: the class captured again from
the model's last ``%%easytensor_model`` cell, the live instance's weights (hashed only when a
tensor's storage or version counter moved), data files written to a temporary folder. Nothing
is uploaded. The lab panel reads ``report()`` through a silent ``user_expressions`` request.
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easytensor_jupyter.drift import Drift, compare, unknown

__all__ = ["DriftWatch", "Report", "Tracked", "report"]

_ACTIVE: list[DriftWatch] = []


@dataclass
class Tracked:
    """A model deployed from this kernel: its variable and the capture it came from."""

    model_id: str
    name: str
    var: str
    pending: Any
    init: Any = None


class Report:
    """What the lab panel asks the kernel for; displays as JSON in ``user_expressions``."""

    def __init__(self, drifts: Mapping[str, Drift]) -> None:
        self.drifts = dict(drifts)

    def _repr_json_(self) -> dict[str, Any]:
        return {"models": {mid: d.to_json() for mid, d in self.drifts.items()}}

    def __repr__(self) -> str:
        return "\n".join(d.message() for d in self.drifts.values()) or "no models deployed"


def report() -> Report:
    """The drift, checked now, of every model deployed from this kernel."""
    merged: dict[str, Drift] = {}
    for watch in _ACTIVE:
        for model_id in list(watch.tracked):
            drift = watch.check(model_id)
            if drift is not None:
                merged[model_id] = drift
    return Report(merged)


class DriftWatch:
    def __init__(self, magics: Any) -> None:
        self.magics = magics
        self.tracked: dict[str, Tracked] = {}
        self.latest: dict[str, Drift] = {}
        self._panels: list[weakref.ref[Any]] = []
        self._weights: dict[tuple[int, str], tuple[tuple[Any, ...], dict[str, Any]]] = {}
        _ACTIVE.append(self)

    def close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    # -- what the magics tell it -----------------------------------------------------------
    def track(self, model_id: str, name: str, var: str | None, pending: Any, init: Any) -> None:
        if var is None:
            return
        self.tracked[model_id] = Tracked(model_id, name, var, pending, init)

    def recaptured(self, pending: Any) -> None:
        """The model cell ran again without deploying: compare with this capture from now on."""
        for tracked in self.tracked.values():
            if tracked.pending.captured.class_name == pending.captured.class_name:
                tracked.pending = pending

    def attach(self, panel: Any) -> None:
        self._panels.append(weakref.ref(panel))
        drift = self.latest.get(panel.model_id)
        if drift is not None:
            panel.show_drift(drift)

    # -- checking --------------------------------------------------------------------------
    def after_cell(self, _result: Any = None) -> None:
        shown = {panel.model_id for ref in self._panels if (panel := ref()) is not None}
        for model_id in list(self.tracked):
            if model_id in shown:
                self.check(model_id)

    def check(self, model_id: str) -> Drift | None:
        tracked = self.tracked.get(model_id)
        if tracked is None:
            return None
        try:
            drift = self._compare(tracked)
        except Exception as exc:  # reported in the notice; a cell must never fail for it
            reason = str(exc).removeprefix("Nothing was uploaded. ") or type(exc).__name__
            drift = unknown(model_id, tracked.name, None, reason)
        self.latest[model_id] = drift
        self._notify(drift)
        return drift

    def _notify(self, drift: Drift) -> None:
        alive = []
        for ref in self._panels:
            panel = ref()
            if panel is None:
                continue
            alive.append(ref)
            if panel.model_id == drift.model_id:
                panel.show_drift(drift)
        self._panels = alive

    def _compare(self, tracked: Tracked) -> Drift:
        client = self.magics.client()
        base = f"/v1/models/{tracked.model_id}"
        # One try each: a server that went away must not hold up the user's next cell.
        model = client.request("GET", base, retry=False, timeout=10).json()
        version = int(model["default_version"])
        deployed = client.request(
            "GET", f"{base}/versions/{version}/fingerprint", retry=False, timeout=10
        ).json()["fingerprint"]
        instance = self.magics.ip.user_ns.get(tracked.var)
        if instance is None:
            return unknown(
                tracked.model_id,
                model["name"],
                version,
                f"the variable {tracked.var!r} no longer exists in this kernel",
            )
        kernel = self.fingerprint(tracked, instance)
        return compare(
            tracked.model_id,
            model["name"],
            version,
            deployed,
            kernel,
            instance.state_dict,
            lambda names: client.version_tensors(tracked.model_id, version, names),
        )

    def fingerprint(self, tracked: Tracked, instance: Any) -> dict[str, Any]:
        """What deploying ``instance`` now would record, without the weights file or upload."""
        from easytensor_jupyter.fingerprint import fingerprint
        from easytensor_jupyter.packaging import (
            PublishRequest,
            _instance_state,
            _is_json,
            _requirements,
            write_data_files,
        )

        captured, init, _ = self.magics._capture_with_instance(
            instance, tracked.pending, tracked.init
        )
        request = PublishRequest(
            name=tracked.name,
            model=instance,
            source=captured.source,
            init=init,
            requirements=tracked.pending.requirements,
            constants=captured.constants,
            state=captured.state,
            instance_captured=True,
            local_modules=captured.local_modules,
        )
        with tempfile.TemporaryDirectory(prefix="easytensor-drift-") as tmp:
            directory = Path(tmp)
            state = _instance_state(request, init)
            names = write_data_files(request, directory, state)
            from easytensor_jupyter.bundle import sha256_file

            files = {name: sha256_file(directory / name) for name in names}
            requirements = _requirements(request, directory, names)
        json_init = _is_json(init.args) and _is_json(init.kwargs)
        return fingerprint(
            source=captured.source,
            class_name=captured.class_name,
            weights=self._weight_parts(instance),
            files=files,
            init={
                "args": list(init.args) if json_init else [],
                "kwargs": dict(init.kwargs) if json_init else {},
            },
            requirements=requirements,
        )

    def _weight_parts(self, instance: Any) -> dict[str, dict[str, Any]]:
        """Per-tensor hashes, recomputed only for tensors whose storage or version moved."""
        from easytensor_jupyter.fingerprint import tensor_entry

        parts = {}
        for name, tensor in instance.state_dict().items():
            key = (tensor.data_ptr(), tensor._version, tuple(tensor.shape), tensor.dtype)
            cached = self._weights.get((id(instance), name))
            if cached is None or cached[0] != key:
                cached = (key, tensor_entry(tensor))
                self._weights[id(instance), name] = cached
            parts[name] = cached[1]
        return parts
