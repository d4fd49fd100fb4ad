"""LitServe serving the same bundle; with ``BENCH_BATCH=N`` it batches with ``predict_batch``.

Started as a script: ``python -m benchmarks.apps.litserve_app PORT``.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import litserve as ls
import torch

from easytensor_jupyter.bundle import read_manifest_dir
from easytensor_jupyter.inference.runtime.loader import load_bundle_dir

__all__ = ["BundleAPI", "main"]


def _native(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value


class BundleAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        directory = Path(os.environ["BENCH_BUNDLE"])
        self.model = load_bundle_dir(directory, read_manifest_dir(directory)).model

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        # Unannotated on purpose: LitServe reads this annotation to decide where the request
        # comes from, and a postponed (string) annotation makes it look for a query parameter.
        return _native(request["instances"][0])

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def predict(self, x: Any) -> Any:
        with torch.inference_mode():
            if isinstance(x, list) and self.max_batch_size > 1:
                return self.model.predict_batch(x)
            return self.model.predict_single(x)

    def encode_response(self, output: Any) -> dict[str, Any]:
        return {"predictions": [output]}


def main() -> None:
    port = int(sys.argv[1])
    batch = int(os.environ.get("BENCH_BATCH", "1"))
    wait = float(os.environ.get("BENCH_BATCH_WAIT_S", "0.002"))
    api = BundleAPI(max_batch_size=batch, batch_timeout=wait if batch > 1 else 0.0)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, num_api_servers=1)


if __name__ == "__main__":
    main()
