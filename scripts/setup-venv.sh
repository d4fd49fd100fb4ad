#!/usr/bin/env bash
# Create .venv and install the project with its test extras. torch goes first, pinned to the
# CPU build on local disk, so the range in pyproject never pulls a multi-GB CUDA build. The
# JupyterLab extension is built by the package build itself (hatch-jupyter-builder + jlpm).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> Creating .venv"
  "$PY" -m venv .venv
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "==> Installing torch (CPU build) and the build tools into .venv"
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" "hatchling>=1.21" "editables>=0.5" "hatch-jupyter-builder>=0.9" "jupyterlab>=4.0,<5"
echo "==> Installing easytensor-jupyter (builds the JupyterLab extension on first install)"
python -m pip install -q --no-build-isolation -e ".[test]"
