#!/usr/bin/env bash
# The prepared GPU check of issue 8 (<= 8 minutes on one H100 / H200). Run from the repository root:
#   bash benchmarks/gpu_check.sh                 # on a GPU machine: CUDA tests, then benchmarks/gpu_check.py
#   bash benchmarks/gpu_check.sh --cpu --quick   # the same code paths on the CPU with tiny sizes (tested)
# Results: one table on stdout and JSON in ${OUT:-benchmarks/results}/gpu_check[_cpu_quick].json
# (record the GPU numbers in the README; experiments/cost.py's FLOP-based estimates can then be replaced).
set -u
cd "$(dirname "$0")/.."
ARGS=("$@")
TAG=""
for a in "$@"; do case "$a" in --cpu) TAG="${TAG}_cpu";; --quick) TAG="${TAG}_quick";; esac; done
DEST="${OUT:-benchmarks/results}"
mkdir -p "$DEST"
PY="${PYTHON:-python}"
start=$(date +%s)
status=0

echo "== 1. CUDA tests (tests that need or mention a CUDA device; they skip without one)"
if [[ " $* " == *" --quick "* ]]; then
  timeout 120 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_augment.py -k cuda || status=1
else
  timeout 240 "$PY" -m pytest -q -rs -p no:cacheprovider tests -k "cuda or gpu or device" || status=1
fi

echo "== 2-5. agreement CPU vs device, throughput, lockstep K = 4 vs separate, Sigma-descent steps/s"
timeout 420 "$PY" benchmarks/gpu_check.py "${ARGS[@]}" --out "$DEST/gpu_check${TAG}.json" || status=1

echo "gpu_check.sh: $(( $(date +%s) - start )) s, exit status $status"
exit $status
