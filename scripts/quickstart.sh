#!/usr/bin/env bash
# The main job: set up .venv, then run the quickstart notebook headless in a real kernel: it
# trains a news classifier, publishes it with %%easytensor_model to the embedded server, and
# queries it. Pass --lab to open JupyterLab on the examples afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "==> Running examples/notebooks/01_quickstart.ipynb (embedded server on this machine)"
# Named as Jupyter names it, so this run and the notebook opened in JupyterLab share one token.
JPY_SESSION_NAME="$PWD/examples/notebooks/01_quickstart.ipynb" \
  python scripts/run_notebook.py examples/notebooks/01_quickstart.ipynb
if [ "${1:-}" = "--lab" ]; then
  # Jupyter refuses to run as root unless told; in a container root is the usual user.
  extra=()
  if [ "$(id -u)" = "0" ]; then
    extra+=(--allow-root)
  fi
  exec jupyter lab ${extra[@]+"${extra[@]}"} examples/notebooks/01_quickstart.ipynb
fi
echo
echo "Open it in JupyterLab with:  bash scripts/quickstart.sh --lab"
