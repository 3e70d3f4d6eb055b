"""Throughput of the coupled Sigma-space run (simulate/engine.py): steps/s with all per-step checks on and off,
and a plain per-anchor python-loop implementation of the same step for the ratio.

    python benchmarks/bench_sigma.py            # N=4096 (M = 8192 items), B=512, float64 CPU (needs ~2 GB)
    python benchmarks/bench_sigma.py --quick    # tiny sizes, a few seconds
    python benchmarks/bench_sigma.py --threads 1 2

Targets (N=4096, B=512, 2 cores): >= 20 coupled steps/s with checks, >= 100 without. Numbers are measured
in this run only; a loaded machine (other processes on the cores) slows multi-threaded torch ops a lot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulate.checks import CheckSuite  # noqa: E402
from simulate.engine import (  # noqa: E402
    CoupledState,
    RunContext,
    SigmaConfig,
    _bounds,
    advance,
    batch_items,
    draw_batch,
    eta_values,
    make_reference,
    theory_constants,
)
from theory.losses import contrastive_grad, contrastive_masks  # noqa: E402


def setup(cfg: SigmaConfig):
    ref = make_reference(cfg)
    eta = eta_values(cfg)
    consts = theory_constants(ref.classes, cfg.batch_size, cfg.steps, cfg.delta, cfg.tau)
    ctx = RunContext(N=ref.n, B=cfg.batch_size, V=ref.views, M=ref.n * ref.views, tau=cfg.tau,
                     replacement=cfg.replacement, symmetric=cfg.sigma == "symmetric", clip=cfg.project == "clip",
                     item_labels=ref.item_labels, eta=eta, bounds=_bounds(eta, consts, cfg.batch_size, cfg.tau, cfg.steps),
                     consts=consts)
    state = CoupledState(0, ref.sigma0.clone(), ref.sigma0.clone(), 0.0,
                         torch.Generator().manual_seed(cfg.batch_seed), torch.Generator().manual_seed(cfg.aug_seed))
    suite = CheckSuite(tau=cfg.tau, B=cfg.batch_size, C=ref.classes, T=cfg.steps, delta=cfg.delta, consts=consts,
                       options={}, out_dir=None, symmetric=ctx.symmetric) if cfg.checks else None
    return ref, ctx, state, suite


def _rates(steps: int, t0: float, c0: float) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process). On a loaded machine the CPU rate is the
    better estimate of an idle single core (with k threads it is per core-second)."""
    return steps / (time.perf_counter() - t0), steps / max(time.process_time() - c0, 1e-9)


def time_engine(cfg: SigmaConfig, steps: int, warmup: int = 2) -> tuple[float, float]:
    _, ctx, state, suite = setup(cfg)
    for _ in range(warmup):
        advance(state, ctx, suite)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        advance(state, ctx, suite)
    return _rates(steps, t0, c0)


def loop_step(S_cl, S_ns, batch, V, labels, tau, eta):
    """Plain implementation: one python iteration per anchor (its 2B logits, library gradient of ONE row),
    then a dense accumulate-scatter of every anchor's row into Sigma (index_put_, accumulate=True)."""
    rows, cols = batch_items(batch, V)
    B = rows.shape[0]
    ids = torch.arange(B)
    key_ids = torch.cat([ids, ids])
    kl = labels[cols]
    for S, kind in ((S_cl, "CL"), (S_ns, "NSCL")):
        grads = []
        for s in range(B):
            sim = S[rows[s], cols][None, :]
            self_mask = torch.zeros(1, 2 * B, dtype=torch.bool)
            self_mask[0, s] = True
            pos, den = contrastive_masks(kind, ids[s : s + 1], key_ids, labels[rows[s : s + 1]], kl, self_mask)
            grads.append(contrastive_grad(sim, pos, den, tau)[0])
        for s in range(B):
            S.index_put_((rows[s].expand(2 * B), cols), -eta / B * grads[s], accumulate=True)


def time_loop(cfg: SigmaConfig, steps: int) -> tuple[float, float]:
    ref, ctx, state, _ = setup(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    for t in range(steps):
        b = draw_batch(ctx.N, ctx.B, ctx.V, ctx.replacement, state.batch_gen, state.aug_gen)
        loop_step(state.sigma_cl, state.sigma_ns, b, ctx.V, ctx.item_labels, cfg.tau, float(ctx.eta[t]))
    return _rates(steps, t0, c0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (N=256, B=32)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts to try")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (checks on; x3 with checks off)")
    args = ap.parse_args(argv)
    if args.quick:
        n, B, steps, loop_steps = 256, 32, args.steps or 20, 3
    else:
        n, B, steps, loop_steps = 4096, 512, args.steps or 20, 2
    base = dict(n=n, classes=16, batch_size=B, steps=1000, eta=2.0, lemma5_trials=0, plot=False)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# bench_sigma: N={n} (M={2 * n} items), B={B}, float64, torch {torch.__version__}, "
          f"{os.cpu_count()} cpus, load average {load:.1f}")
    print("# steps/s per wall second (per CPU second of this process in brackets)")
    print("| threads | checks on | checks off | per-anchor loop | off / loop | on / off |")
    print("|---:|---:|---:|---:|---:|---:|")
    for th in args.threads:
        torch.set_num_threads(th)
        on = time_engine(SigmaConfig(**base, checks=True), steps)
        off = time_engine(SigmaConfig(**base, checks=False), 3 * steps)
        loop = time_loop(SigmaConfig(**base, checks=False), loop_steps)
        print(f"| {th} | {on[0]:.1f} ({on[1]:.1f}) | {off[0]:.1f} ({off[1]:.1f}) | {loop[0]:.2f} ({loop[1]:.2f}) | "
              f"{off[0] / loop[0]:.0f}x | {on[0] / off[0]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
