#!/bin/bash
# Σ-space counterparts of Figs. 3-5 at small scale (python -m figures draws sigma_fig3/4/5 from them).
# N = 20 samples per class x 2 view slots, T = 200 steps, evaluations every 40 steps, seeds 0 and 1, --project
# clip (the default), checks off (the claims are checked by the main Σ-descent run); ~2 min in all on 2 cores.
# Usage: bash docs/figures/sigma_small.sh [OUT_ROOT]   (default runs/small)
set -e
OUT=${1:-runs/small}
COMMON="--n-per-class 20 --steps 200 --eval-every 40 --seeds 0,1 --no-checks --jobs 2 --quiet"
# Fig. 3: C in {2, 5, 10, 20} at tau = 1, B = 64, eta = 4
python -m simulate.sweep --classes 2,5,10,20 --tau 1 --batch-size 64 --eta 4 $COMMON --out "$OUT/sigma_classes"
# Fig. 4: tau in {0.25, 0.5, 1, 2} at C = 10
python -m simulate.sweep --classes 10 --tau 0.25,0.5,1,2 --batch-size 64 --eta 4 $COMMON --out "$OUT/sigma_tau"
# Fig. 5: B in {16, 32, 64} with eta = 4 (B/16)^k for the paper's four rules k = 1, 1/2, 1/4, 0
for k in 1 0.5 0.25 0; do
  for B in 16 32 64; do
    eta=$(python -c "print(f'{4 * ($B / 16) ** $k:.6g}')")
    python -m simulate.sweep --classes 10 --tau 1 --batch-size "$B" --eta "$eta" $COMMON --out "$OUT/sigma_batch"
  done
done
