#!/usr/bin/env bash
# The whole test suite: set up, lint, type-check, then pytest. Fails if any test fails or none ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "==> Installing Debian's chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: chromium could not be installed; browser tests will be skipped"
fi
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && [ "$(id -u)" = "0" ] \
  && command -v apt-get >/dev/null; then
  echo "==> Installing Debian's postgresql for the shared-registry tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: postgresql could not be installed; its tests will be skipped"
fi
if ! command -v bwrap >/dev/null && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "==> Installing Debian's bubblewrap for the worker sandbox"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "warning: bubblewrap could not be installed; the sandbox tests will fail"
fi
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy easytensor_jupyter easytensor
echo "==> labextension: lint and unit tests"
(cd labextension && jlpm install --immutable >/dev/null && jlpm lint:check && jlpm test --silent)
echo "==> pytest"
set +e
# Two test processes, each file kept on one (its module fixtures start once); most tests wait
# on servers, kernels and browsers, so two share the CPUs well. PYTEST_WORKERS=0 runs serially.
workers=${PYTEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  .venv/bin/python -m pytest --durations=25 "$@"
else
  .venv/bin/python -m pytest -n "$workers" --dist loadfile --durations=25 "$@"
fi
code=$?
set -e
if [ "$code" = "5" ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$code"
