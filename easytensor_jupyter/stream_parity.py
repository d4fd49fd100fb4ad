"""The parity check for streaming models: the fresh process's stream of the sample, joined,
must equal the live model's (strings concatenated, other chunks as their list)."""

from __future__ import annotations

from typing import Any

import torch

from easytensor_jupyter.bundle import Manifest, joined_chunks
from easytensor_jupyter.validate import ModelCheckError, compare_outputs

__all__ = ["live_stream_answer", "stream_parity_error", "streams"]


def streams(model: torch.nn.Module) -> bool:
    """Whether the model can stream: a ``predict_stream`` or ``predict_stream_batch``."""
    return any(
        callable(getattr(model, name, None)) for name in ("predict_stream", "predict_stream_batch")
    )


def live_stream_answer(model: torch.nn.Module, sample: Any) -> Any:
    """The live model's stream of the sample in eval mode, joined; the mode is restored."""
    from easytensor_jupyter.inference.runtime.streams import collect_stream

    was_training = model.training
    model.eval()
    try:
        return joined_chunks(collect_stream(model, sample))
    except Exception as exc:
        raise ModelCheckError(
            f"Your live model's predict_stream failed on the sample: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)


def stream_parity_error(report: dict[str, Any], manifest: Manifest) -> str | None:
    """Why the fresh process's stream of the sample differs from the live model's, or None."""
    sample = manifest.sample
    if not manifest.streaming or sample is None:
        return None
    if "stream_error" in report:
        return f"In a fresh process, predict_stream(sample) failed: {report['stream_error']}"
    difference = compare_outputs(sample.stream_output, report.get("stream_output"), "stream")
    if difference is None:
        return None
    return (
        "The rebuilt model streams the sample differently from your live model (chunks "
        f"joined): {difference}. Something predict_stream uses is not in model.py the way it is "
        "in your session (a global changed after the class was defined, or randomness): make it "
        "part of the model."
    )
