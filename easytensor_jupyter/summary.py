"""What a deploy prints: id, version, endpoint, the token masked, and a curl that fits the model.

The printout is saved in the notebook, so it never holds the whole token: the curl reads it from
``$EASYTENSOR_TOKEN`` and the summary says how to get it. The curl's body follows the model's
input: the parity sample when there is one, else the type hint of ``predict_single``'s input;
when neither says, the summary says what to send instead of guessing wrong.
"""

from __future__ import annotations

import inspect
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from easytensor_jupyter.client import UploadResult
from easytensor_jupyter.instances import encode_instance, input_kind
from easytensor_jupyter.token_keeper import mask

__all__ = ["DeploySummary", "curl_command", "hinted_input"]

TOKEN_VARIABLE = "EASYTENSOR_TOKEN"
_TEXT = ("str",)
_BYTES = ("bytes", "bytearray", "memoryview")
_IMAGE = ("Image", "PIL.Image.Image", "Image.Image")
_JSON = (
    "list", "List", "tuple", "Tuple", "dict", "Dict", "Sequence", "Mapping", "int", "float",
    "bool", "Tensor", "torch.Tensor", "ndarray", "np.ndarray", "numpy.ndarray",
)  # fmt: skip


def hinted_input(model: Any) -> tuple[str, str | None]:
    """``(kind, annotation)`` of ``predict_single``'s input: text, bytes, image, json or unknown."""
    method = getattr(type(model), "predict_single", None)
    if method is None:
        return "unknown", None
    try:
        params = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return "unknown", None
    if not params or params[0].annotation is inspect.Parameter.empty:
        return "unknown", None
    hint = params[0].annotation
    text = hint if isinstance(hint, str) else getattr(hint, "__qualname__", None) or str(hint)
    if not isinstance(hint, str) and getattr(hint, "__args__", None):
        text = str(hint)
    text = text.replace("typing.", "").strip("'\"")
    head = text.split("[", 1)[0].strip()
    for kind, names in (("text", _TEXT), ("bytes", _BYTES), ("image", _IMAGE), ("json", _JSON)):
        if head in names:
            return kind, text
    return "unknown", text


def _auth(token: str | None) -> str:
    return f'"Authorization: Bearer {token or "$" + TOKEN_VARIABLE}"'


def curl_command(endpoint: str, instance: Any = None, token: str | None = None) -> str:
    """A POSIX-shell curl for one instance: text as text/plain, bytes raw, anything else as JSON."""
    if isinstance(instance, str):
        body = f"-H 'Content-Type: text/plain' --data-binary {shlex.quote(instance)}"
    elif isinstance(instance, bytes | bytearray):
        body = (
            "-H 'Content-Type: image/png' --data-binary @input.png"
            if input_kind(instance) == "image"
            else "-H 'Content-Type: application/octet-stream' --data-binary @input.bin"
        )
    else:
        payload = json.dumps({"instances": [encode_instance(instance)]})
        body = f"-H 'Content-Type: application/json' -d {shlex.quote(payload)}"
    return f"curl -s -X POST {endpoint} -H {_auth(token)} {body}"


def _example(endpoint: str, sample: Any, model: Any) -> tuple[str | None, str | None]:
    """``(curl, note)``: a curl to run as is, or one with a placeholder and what to put there."""
    if isinstance(sample, str | bytes | bytearray | dict | list | int | float | bool):
        return curl_command(endpoint, sample), None
    kind, hint = hinted_input(model) if model is not None else ("unknown", None)
    if kind == "text":
        return curl_command(endpoint, "your text here"), None
    if kind in ("bytes", "image"):
        return curl_command(endpoint, b"\x89PNG" if kind == "image" else b""), None
    if kind == "json":
        head = "-H 'Content-Type: application/json' -d '{\"instances\": [INPUT]}'"
        note = f"replace INPUT with what predict_single takes, one {hint}, in JSON"
        return f"curl -s -X POST {endpoint} -H {_auth(None)} {head}", note
    what = f"input for predict_single ({hint})" if hint else "input for predict_single"
    return None, (
        f'POST {{"instances": [INPUT]}} as application/json, INPUT being one {what} as JSON; '
        "a text/plain body arrives as one str, application/octet-stream as bytes "
        "(deploy with --sample to get a ready curl)"
    )


@dataclass(frozen=True)
class DeploySummary:
    model_id: str
    name: str
    version: int
    endpoint: str
    token: str | None = field(repr=False)
    unchanged: bool
    curl: str | None
    token_reused: bool = False
    token_kept: bool = False
    send_note: str | None = None

    @classmethod
    def from_upload(
        cls,
        result: UploadResult,
        endpoint: str,
        sample: Any,
        *,
        model: Any = None,
        token: str | None = None,
        token_reused: bool = False,
        token_kept: bool = False,
    ) -> DeploySummary:
        curl, note = _example(endpoint, sample, model)
        return cls(
            model_id=result.id,
            name=result.name,
            version=result.version,
            endpoint=endpoint,
            token=token or result.query_token,
            unchanged=result.unchanged,
            curl=curl,
            token_reused=token_reused,
            token_kept=token_kept,
            send_note=note,
        )

    def __repr__(self) -> str:
        return f"<EasyTensor deployment {self.model_id} v{self.version}>"

    def text(self) -> str:
        head = (
            f"Unchanged: {self.name} is still version {self.version} (same code and weights; --force makes a new one)"
            if self.unchanged
            else f"Deployed {self.name} as version {self.version}"
        )
        lines = [head, f"  model id:    {self.model_id}", f"  endpoint:    {self.endpoint}"]
        if self.token:
            how = "the one this notebook already had" if self.token_reused else "new"
            lines.append(
                f"  query token: {mask(self.token)} ({how}; the whole token: "
                "easytensor_jupyter.last_deployment().token)"
            )
            if self.token_kept:
                lines.append(
                    f"  in a shell:  export {TOKEN_VARIABLE}=$(easytensor tokens show {self.model_id})"
                )
        if self.curl:
            lines.append(f"  try it:      {self.curl}")
        if self.send_note:
            lines.append(
                f"               ({self.send_note})"
                if self.curl
                else f"  to query:    {self.send_note}"
            )
        return "\n".join(lines)
