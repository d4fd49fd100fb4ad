#!/usr/bin/env bash
# The main job: set up, start the embedded server, publish the quickstart model and query it.
# Pass --lab to open JupyterLab on the example afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
echo "==> Running the quickstart (embedded server on this machine)"
.venv/bin/python examples/quickstart/run_quickstart.py
if [ "${1:-}" = "--lab" ]; then
  exec .venv/bin/jupyter lab examples/
else
  echo
  echo "Open JupyterLab on the examples with:  bash scripts/quickstart.sh --lab"
fi
