#!/usr/bin/env bash
# Installs simdescent into the current Python environment (Python >= 3.11).
#   bash install.sh                  runtime dependencies, editable install (the checkout is the package)
#   bash install.sh --test           runtime + test dependencies
#   bash install.sh --no-editable    a normal install (package data such as the .mplstyle files is copied;
#                                    tests/test_wheel.py checks that the wheel ships it)
# An existing torch (CPU or CUDA) is kept. With none, torch==2.13.0 is installed first: on the project's
# machines that is a local CPU wheel, so the multi-GB CUDA stack is never pulled.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
extra=""
editable="-e"
for arg in "$@"; do
    case "$arg" in
        --test) extra="[test]" ;;
        --no-editable) editable="" ;;
        *) echo "install.sh: error: unknown option $arg (expected --test and/or --no-editable)" >&2; exit 2 ;;
    esac
done
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet $editable ".${extra}"
