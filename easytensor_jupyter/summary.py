"""What a deploy prints: id, version, endpoint, token and a curl command that works as pasted."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from easytensor_jupyter.client import UploadResult
from easytensor_jupyter.instances import encode_instance, input_kind

__all__ = ["DeploySummary", "curl_command"]


def curl_command(endpoint: str, instance: Any = None, token: str | None = None) -> str:
    """A POSIX-shell curl for one instance: text as text/plain, anything else as JSON."""
    bearer = token or "$EASYTENSOR_TOKEN"
    auth = f'"Authorization: Bearer {bearer}"'
    if isinstance(instance, str):
        body = f"-H 'Content-Type: text/plain' --data-binary {shlex.quote(instance)}"
    elif isinstance(instance, bytes | bytearray):
        kind = input_kind(instance)
        body = (
            "-H 'Content-Type: image/png' --data-binary @input.png"
            if kind == "image"
            else "-H 'Content-Type: application/octet-stream' --data-binary @input.bin"
        )
    else:
        payload = json.dumps({"instances": [encode_instance(instance)]})
        body = f"-H 'Content-Type: application/json' -d {shlex.quote(payload)}"
    return f"curl -s -X POST {endpoint} -H {auth} {body}"


@dataclass(frozen=True)
class DeploySummary:
    model_id: str
    name: str
    version: int
    endpoint: str
    token: str | None
    unchanged: bool
    curl: str

    @classmethod
    def from_upload(cls, result: UploadResult, endpoint: str, sample: Any) -> DeploySummary:
        example = (
            sample if isinstance(sample, str | bytes | dict | list | int | float) else "your input"
        )
        return cls(
            model_id=result.id,
            name=result.name,
            version=result.version,
            endpoint=endpoint,
            token=result.query_token,
            unchanged=result.unchanged,
            curl=curl_command(endpoint, example, result.query_token),
        )

    def __repr__(self) -> str:
        return f"<EasyTensor deployment {self.model_id} v{self.version}>"

    def text(self) -> str:
        head = (
            f"Unchanged: {self.name} is still version {self.version} (same code and weights; --force makes a new one)"
            if self.unchanged
            else f"Deployed {self.name} as version {self.version}"
        )
        lines = [head, f"  model id: {self.model_id}", f"  endpoint: {self.endpoint}"]
        if self.token:
            lines.append(f"  query token (shown once): {self.token}")
        lines.append(f"  try it:   {self.curl}")
        return "\n".join(lines)
