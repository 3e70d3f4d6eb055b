#!/usr/bin/env bash
# Installs simdescent into the current Python environment.
#   bash install.sh          runtime dependencies
#   bash install.sh --test   runtime + test dependencies
# An existing torch (CPU or CUDA) is kept. With none, torch==2.13.0 is installed first: on the project's
# machines that is a local CPU wheel, so the multi-GB CUDA stack is never pulled.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
"$PY" -m pip install --quiet -e ".${extra}"
