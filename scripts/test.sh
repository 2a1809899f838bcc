#!/usr/bin/env bash
# The project's test command (README, .ci/run): lint, types, then the whole pytest suite, slow tests included.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"` for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

echo "== ruff check src tests"
"$VENV/bin/ruff" check src tests
echo "== mypy src"
"$VENV/bin/mypy" src
echo "== pytest"
"$VENV/bin/python" -m pytest "$@"
