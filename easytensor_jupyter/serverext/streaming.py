"""The lab panel's streamed predictions: the inference server's NDJSON lines, passed through
to the browser as they come (each piece written and flushed at once, nothing buffered).

The browser leaving (its request closed) closes the upstream response, so the inference
server sees its client go away and stops the model's generator.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from easytensor_jupyter.serverext.proxy import Upstream, model_path

__all__ = ["NDJSON", "pass_stream"]

NDJSON = "application/x-ndjson"


async def pass_stream(
    handler: RequestHandler,
    upstream: Upstream,
    model_id: str,
    body: bytes,
    content_type: str,
    version: int | None,
) -> None:
    """Open the stream (refusals arrive as ``ProxyError`` before anything is written), then
    copy it piece by piece."""

    def open_stream(client: Any) -> Any:
        return client.request(
            "POST",
            model_path(model_id, "predict"),
            data=body,
            headers={"Content-Type": content_type, "Accept": NDJSON},
            params={"version": version} if version is not None else None,
            stream=True,
            retry=False,
        )

    response = await upstream.call(open_stream)
    pieces = response.iter_content(chunk_size=None)
    loop = asyncio.get_running_loop()
    handler.set_header("Content-Type", NDJSON)
    handler.set_header("Cache-Control", "no-cache")
    handler.set_header("X-Accel-Buffering", "no")
    try:
        while True:
            piece = await loop.run_in_executor(None, next, pieces, None)
            if piece is None:
                break
            handler.write(piece)
            await handler.flush()
        handler.finish()
    except StreamClosedError:
        pass
    finally:
        response.close()
