"""How query inputs travel as JSON: bytes become ``{"b64": "..."}`` and back.

The server, the client, the manifest's sample and the query panel all use this one rule.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = ["InstanceError", "decode_instance", "encode_instance", "input_kind"]


class InstanceError(ValueError):
    pass


def encode_instance(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: encode_instance(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_instance(v) for v in value]
    return value


def decode_instance(value: Any, path: str = "instance") -> Any:
    """Turn every ``{"b64": str}`` object (exactly that one key) into bytes, recursively."""
    if isinstance(value, dict):
        if len(value) == 1 and "b64" in value:
            raw = value["b64"]
            if not isinstance(raw, str):
                raise InstanceError(f"{path}.b64 must be a base64 string")
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise InstanceError(f"{path}.b64 is not valid base64") from None
        return {k: decode_instance(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [decode_instance(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")


def input_kind(value: Any) -> str:
    """Guess which input widget fits a sample: text, image, bytes or json."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes | bytearray):
        return "image" if bytes(value[:4]).startswith(_IMAGE_MAGIC) else "bytes"
    if value is None:
        return "unknown"
    return "json"
