"""Side-by-side performance harness: run with ``python -m benchmarks.run`` (see README.md)."""
