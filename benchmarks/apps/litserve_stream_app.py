"""LitServe streaming the same bundle's ``predict_stream``: one JSON line per chunk.

Started as a script: ``python -m benchmarks.apps.litserve_stream_app PORT``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litserve as ls
import torch

from easytensor_jupyter.bundle import read_manifest_dir
from easytensor_jupyter.inference.runtime.loader import load_bundle_dir

__all__ = ["StreamAPI", "main"]


class StreamAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        directory = Path(os.environ["BENCH_BUNDLE"])
        self.model = load_bundle_dir(directory, read_manifest_dir(directory)).model

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        # Unannotated: LitServe reads the annotation to decide where the request comes from.
        return request["instances"][0]

    def predict(self, x: Any) -> Iterator[Any]:
        with torch.inference_mode():
            yield from self.model.predict_stream(x)  # type: ignore[operator]

    def encode_response(self, output: Iterator[Any]) -> Iterator[str]:
        for chunk in output:
            yield json.dumps({"chunk": chunk}) + "\n"


def main() -> None:
    port = int(sys.argv[1])
    api = StreamAPI(stream=True)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, num_api_servers=1)


if __name__ == "__main__":
    main()
