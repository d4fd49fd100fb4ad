"""How query inputs travel as JSON: bytes become ``{"b64": "..."}`` and back.

The server, the client, the manifest's sample and the query panel all use this one rule.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = [
    "InstanceError",
    "NestingError",
    "decode_instance",
    "decode_instances",
    "encode_instance",
    "input_kind",
]


class InstanceError(ValueError):
    pass


class NestingError(InstanceError):
    """Nested deeper than the caller allows."""


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


def _b64(raw: Any, path: str) -> bytes:
    if not isinstance(raw, str):
        raise InstanceError(f"{path}.b64 must be a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InstanceError(f"{path}.b64 is not valid base64") from None


def _path(root: str, keys: list[Any]) -> str:
    return root + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)


def decode_instances(
    instances: list[Any], max_depth: int, depth: int = 1, root: str = "instances"
) -> None:
    """``decode_instance`` for a whole request, in place, refusing nesting past ``max_depth``.

    In place and without recursion: a request's instances were just decoded from JSON and are
    ours, so a copy would only double their memory, and Python's recursion limit is no bound to
    lean on. ``depth`` is the nesting level of ``instances`` itself.
    """
    stack: list[tuple[Any, list[Any] | dict[str, Any]]] = [(enumerate(instances), instances)]
    keys: list[Any] = []
    while stack:
        items, container = stack[-1]
        for key, value in items:
            kind = type(value)
            if kind is dict and len(value) == 1 and "b64" in value:
                container[key] = _b64(value["b64"], _path(root, [*keys, key]))
            elif kind is dict or kind is list:
                if depth + len(stack) > max_depth:
                    raise NestingError(
                        f"{_path(root, [*keys, key])} is nested deeper than {max_depth} levels"
                    )
                keys.append(key)
                stack.append((iter(value.items()) if kind is dict else enumerate(value), value))
                break
        else:
            stack.pop()
            if keys:
                keys.pop()


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
