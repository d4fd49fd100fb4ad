"""Does the kernel's model still match what the server deploys by default?

Both sides are fingerprints (``fingerprint.py``): the deployed default's comes from its
manifest, the kernel's is computed from the live model and a fresh capture, without writing the
weights or uploading. Only when weight hashes differ are the deployed values of those tensors
fetched, to say by how much at most they moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Drift", "compare", "unknown"]

State = Literal["same", "drifted", "unknown"]


@dataclass
class Drift:
    """One model's comparison; ``message`` is what the notebook and the lab panel show."""

    model_id: str
    name: str
    version: int | None
    state: State
    methods: list[str] = field(default_factory=list)
    class_body: bool = False
    weights_changed: list[str] = field(default_factory=list)
    weights_total: int = 0
    max_abs_diff: float | None = None
    weights_note: str | None = None
    helpers: list[str] = field(default_factory=list)
    requirements_added: list[str] = field(default_factory=list)
    requirements_removed: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def kinds(self) -> list[str]:
        """Which of the four kinds changed: class, weights, helpers, requirements."""
        found = []
        if self.methods or self.class_body:
            found.append("class")
        if self.weights_changed:
            found.append("weights")
        if self.helpers:
            found.append("helpers")
        if self.requirements_added or self.requirements_removed:
            found.append("requirements")
        return found

    def lines(self) -> list[str]:
        out = []
        if self.methods or self.class_body:
            what = ", ".join(self.methods) if self.methods else "class attributes or bases"
            out.append(f"class source changed: {what}")
        if self.weights_changed:
            text = f"weights changed: {len(self.weights_changed)} of {self.weights_total} tensors"
            if self.max_abs_diff is not None:
                text += f", max abs difference {self.max_abs_diff:.4g}"
            if self.weights_note:
                text += f" ({self.weights_note})"
            out.append(text)
        if self.helpers:
            out.append(f"captured helpers or constants changed: {', '.join(self.helpers)}")
        if self.requirements_added or self.requirements_removed:
            parts = [f"+{r}" for r in self.requirements_added]
            parts += [f"-{r}" for r in self.requirements_removed]
            out.append(f"requirements changed: {', '.join(parts)}")
        return out

    def message(self) -> str:
        where = f"v{self.version}" if self.version is not None else "the deployed default"
        if self.state == "unknown":
            return f"Drift from {where} unknown: {self.reason}"
        if self.state == "same":
            return f"The kernel's model matches the deployed {where}."
        return (
            f"The kernel's model differs from the deployed {where}: "
            + "; ".join(self.lines())
            + ". Re-run the %%easytensor_model cell (or %easytensor_deploy) to deploy it."
        )

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["kinds"] = self.kinds
        body["message"] = self.message()
        body["lines"] = self.lines()
        return body


def unknown(model_id: str, name: str, version: int | None, reason: str) -> Drift:
    return Drift(model_id, name, version, "unknown", reason=reason)


def _changed(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


TensorFetch = Callable[[list[str]], Mapping[str, Any]]


def compare(
    model_id: str,
    name: str,
    version: int,
    deployed: Mapping[str, Any] | None,
    kernel: Mapping[str, Any],
    live_tensors: Callable[[], Mapping[str, Any]],
    fetch: TensorFetch | None = None,
) -> Drift:
    """Compare the kernel's fingerprint with the deployed one. ``live_tensors`` gives the
    kernel's state_dict and ``fetch`` the deployed values of named tensors; both are called
    only when weight hashes differ."""
    if deployed is None:
        return unknown(
            model_id,
            name,
            version,
            f"v{version} was deployed before EasyTensor recorded hashes; deploy again (with --force "
            "if nothing changed) to compare",
        )
    drift = Drift(model_id, name, version, "same")
    classes_a, classes_b = deployed.get("class", {}), kernel.get("class", {})
    changed = _changed(classes_a, classes_b)
    drift.class_body = "<class>" in changed
    drift.methods = [m for m in changed if m != "<class>"]
    drift.helpers = _changed(deployed.get("helpers", {}), kernel.get("helpers", {}))
    drift.helpers += _changed(deployed.get("data", {}), kernel.get("data", {}))
    before, after = set(deployed.get("requirements", [])), set(kernel.get("requirements", []))
    drift.requirements_added, drift.requirements_removed = (
        sorted(after - before),
        sorted(before - after),
    )
    w_a, w_b = deployed.get("weights", {}), kernel.get("weights", {})
    drift.weights_total = len(w_b)
    drift.weights_changed = _changed(w_a, w_b)
    if drift.weights_changed:
        _measure(drift, w_a, live_tensors, fetch)
    if drift.kinds:
        drift.state = "drifted"
    return drift


def _measure(
    drift: Drift,
    deployed: Mapping[str, Any],
    live_tensors: Callable[[], Mapping[str, Any]],
    fetch: TensorFetch | None,
) -> None:
    """The largest absolute difference over the changed tensors of the same shape."""
    import torch

    live = live_tensors()
    comparable = [
        n
        for n in drift.weights_changed
        if n in deployed and n in live and list(live[n].shape) == deployed[n]["shape"]
    ]
    others = len(drift.weights_changed) - len(comparable)
    notes = [f"{others} added, removed or reshaped"] if others else []
    if comparable and fetch is not None:
        try:
            values = fetch(comparable)
        except Exception as exc:
            notes.append(f"the deployed values could not be fetched: {exc}")
            values = {}
        deltas = [
            (live[n].detach().cpu().double() - values[n].double()).abs().max().item()
            for n in comparable
            if n in values and live[n].numel() and torch.is_floating_point(values[n])
        ]
        drift.max_abs_diff = max(deltas) if deltas else None
    drift.weights_note = "; ".join(notes) or None
