"""``easytensor query MODEL --stream``: chunks printed as they arrive, then the timings."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from easytensor_jupyter.client import Client

__all__ = ["print_stream"]


def print_stream(client: Client, model_id: str, instance: Any, args: argparse.Namespace) -> int:
    """Text chunks are written as they are, others one JSON per line; ``--format json``
    writes one JSON line per chunk and a last line with the server's final info."""
    as_json = args.format == "json"
    stream = client.stream(model_id, instance, token=args.token, version=args.version)
    out = sys.stdout
    ended_line = True
    with stream:
        for chunk in stream:
            if as_json:
                out.write(json.dumps({"chunk": chunk}) + "\n")
            elif isinstance(chunk, str):
                out.write(chunk)
                ended_line = chunk.endswith("\n")
            else:
                out.write(json.dumps(chunk) + "\n")
                ended_line = True
            out.flush()
    info = stream.info or {}
    if as_json:
        out.write(json.dumps({"done": True, **info}) + "\n")
        return 0
    if not ended_line:
        out.write("\n")
    first = info.get("first_chunk_ms")
    rate = info.get("chunks_per_s")
    parts = [f"{info.get('chunks', len(stream.chunks))} chunks", f"v{info.get('version')}"]
    if first is not None:
        parts.append(f"first chunk {first:.1f} ms")
    if rate is not None:
        parts.append(f"{rate:g} chunks/s")
    print(", ".join(parts), file=sys.stderr)
    return 0
