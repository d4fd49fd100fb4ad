"""Fresh-process check of a bundle directory, run by the client before it uploads anything.

A clean interpreter proves that model.py rebuilds the model without the notebook's state, and
its answer to the sample is compared with the live model's by the caller. The report goes to a
file, not stdout, because model code may print.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from easytensor_jupyter.bundle import joined_chunks, read_manifest_dir
from easytensor_jupyter.inference.runtime.loader import LoadError, load_bundle_dir
from easytensor_jupyter.inference.runtime.streams import collect_stream
from easytensor_jupyter.instances import decode_instance


def run_check(directory: Path, device: str) -> dict[str, Any]:
    manifest = read_manifest_dir(directory)
    try:
        loaded = load_bundle_dir(directory, manifest, device)
    except LoadError as exc:
        return {"ok": False, "error": exc.to_dict()}
    report: dict[str, Any] = {"ok": True, "has_batch": loaded.batch_fn is not None}
    if manifest.sample is not None:
        outcome = loaded.predict([decode_instance(manifest.sample.input, "sample")])[0]
        report["sample_ok"] = outcome.ok
        report["sample_output" if outcome.ok else "sample_error"] = outcome.value
        if manifest.streaming:
            report.update(_stream_report(loaded.model, manifest.sample.input))
    return report


def _stream_report(model: Any, sample: Any) -> dict[str, Any]:
    try:
        chunks = collect_stream(model, decode_instance(sample, "sample"))
    except Exception as exc:
        return {"stream_error": f"{type(exc).__name__}: {exc}"}
    return {"stream_output": joined_chunks(chunks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild a model bundle in a fresh process.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    report = run_check(args.directory, args.device)
    args.report.write_text(json.dumps(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
