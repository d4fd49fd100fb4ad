#!/usr/bin/env bash
# Run every benchmark; pass --quick for a short run. Results land in benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m benchmarks.run "$@"
