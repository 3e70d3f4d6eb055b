"""Throughput of the coupled Sigma-space run (simulate/step.py, run.py): steps/s with all per-step checks on and off,
against a plain per-anchor python-loop implementation of the same step (ratio in the same run), and the memory
floor of the step (a bare gather + scatter of the same index pattern on the same matrices).

    python benchmarks/bench_sigma.py            # N=4096 (M = 8192 items, Sigma 8192 x 8192), B=512, float64 and float32
    python benchmarks/bench_sigma.py --quick    # tiny sizes, a few seconds
    python benchmarks/bench_sigma.py --threads 1 2 --repeats 5 --dtypes float32
    python benchmarks/bench_sigma.py --device cuda --threads 1 --n 50000 --loop-steps 0   # on a GPU

float32 and float64 are measured in the same run (same batches, same machine state); the per-step checks always
run in float64 on the CPU (simulate/step.py, StepTensors.float64_cpu), so "checks on" measures that too.

Targets (N=4096, B=512, 2 cores): >= 20 coupled steps/s with checks, >= 100 without. Every number is measured
in this run (best of --repeats timed windows after a warm-up) and printed with the load average: other processes
on the cores slow the memory-bound gathers a lot, so run it when `uptime` is low and compare best-of-N.

What bounds a step: each step reads the touched block Sigma[rows][:, keys] of BOTH runs (R x K ~ 500 x 1000
scattered float64 entries per matrix, i.e. ~60% of the cache lines of ~500 rows of 64 KB) and writes it back.
The "floor" column times exactly these four memory operations (index_select + index_copy_ per run, fresh
batches, cold caches) and nothing else: the checks-off step cannot be faster than that on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulate.batches import batch_items, draw_batch  # noqa: E402
from simulate.checkpoint import CoupledState  # noqa: E402
from simulate.config import SigmaConfig, eta_values, theory_constants  # noqa: E402
from simulate.layout import build_layout  # noqa: E402
from simulate.reference import make_reference  # noqa: E402
from simulate.run import RunContext, _bounds, advance  # noqa: E402
from simulate.tracker import CheckSuite  # noqa: E402
from simulate.sigma_descent import tune_allocator  # noqa: E402
from theory.losses import contrastive_grad, contrastive_masks  # noqa: E402


def setup(cfg: SigmaConfig):
    ref = make_reference(cfg)
    eta = eta_values(cfg)
    consts = theory_constants(ref.classes, cfg.batch_size, cfg.steps, cfg.delta, cfg.tau)
    ctx = RunContext(N=ref.n, B=cfg.batch_size, V=ref.views, M=ref.n * ref.views, tau=cfg.tau,
                     replacement=cfg.replacement, symmetric=cfg.sigma == "symmetric", clip=cfg.project == "clip",
                     item_labels=ref.item_labels.to(cfg.device), eta=eta,
                     bounds=_bounds(eta, consts, cfg.batch_size, cfg.tau, cfg.steps), consts=consts, diag=cfg.diag,
                     dtype=ref.sigma0.dtype, device=torch.device(cfg.device))
    state = CoupledState(0, ref.sigma0.clone(), ref.sigma0.clone(), 0.0,
                         torch.Generator().manual_seed(cfg.batch_seed), torch.Generator().manual_seed(cfg.aug_seed))
    suite = CheckSuite(tau=cfg.tau, B=cfg.batch_size, C=ref.classes, T=cfg.steps, delta=cfg.delta, consts=consts,
                       options={}, out_dir=None, symmetric=ctx.symmetric) if cfg.checks else None
    return ref, ctx, state, suite


def _best_rate(step, steps: int, repeats: int) -> tuple[float, float]:
    """(best steps per wall second, steps per CPU second of this process in that window) over ``repeats``
    windows of ``steps`` calls."""
    best = (0.0, 0.0)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        w = steps / (time.perf_counter() - t0)
        if w > best[0]:
            best = (w, steps / max(time.process_time() - c0, 1e-9))
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_engine(cfg: SigmaConfig, steps: int, repeats: int, warmup: int) -> tuple[float, float]:
    _, ctx, state, suite = setup(cfg)
    for _ in range(warmup):  # also lets the heap settle (tune_allocator)
        advance(state, ctx, suite)
    _sync(cfg.device)

    def step():
        advance(state, ctx, suite)  # a Python float is read back each step (drift): the step is synchronous
    return _best_rate(step, steps, repeats)


def time_floor(cfg: SigmaConfig, steps: int, repeats: int, warmup: int) -> tuple[float, float]:
    """Memory floor: per step, gather the touched block of both matrices and write it back (the step's four
    Sigma memory operations, same index pattern, fresh batches), nothing else. Batches and indices are drawn
    outside the timed region."""
    _, ctx, state, _ = setup(cfg)
    lab = ctx.item_labels

    def lins(n):
        out = []
        for _ in range(n):
            b = draw_batch(ctx.N, ctx.B, ctx.V, ctx.replacement, state.batch_gen, state.aug_gen)
            rows, cols = batch_items(b, ctx.V)
            if ctx.device.type != "cpu":
                rows, cols = rows.to(ctx.device), cols.to(ctx.device)
            out.append(build_layout(rows, cols, lab[rows], lab[cols], ctx.M, ctx.symmetric).block_index)
        return out

    S1, S2 = state.sigma_cl.view(-1), state.sigma_ns.view(-1)

    def run(idx):
        for lin in idx:
            a = S1.index_select(0, lin)
            b = S2.index_select(0, lin)
            S1.index_copy_(0, lin, a)
            S2.index_copy_(0, lin, b)

    run(lins(warmup))
    best = (0.0, 0.0)
    for _ in range(repeats):
        idx = lins(steps)
        t0, c0 = time.perf_counter(), time.process_time()
        run(idx)
        _sync(cfg.device)
        w = steps / (time.perf_counter() - t0)
        if w > best[0]:
            best = (w, steps / max(time.process_time() - c0, 1e-9))
    return best


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
    return steps / (time.perf_counter() - t0), steps / max(time.process_time() - c0, 1e-9)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (N=256, B=32)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts to try")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed window (checks on; x2 with checks off)")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per measurement; the best is reported")
    ap.add_argument("--loop-steps", type=int, default=None, help="steps of the per-anchor loop (default 2; 0 = skip)")
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                    help="Sigma dtypes, measured in the same run")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:K]")
    ap.add_argument("--n", type=int, default=None, help="N samples (default 4096; --quick 256)")
    ap.add_argument("--batch-size", type=int, default=None, help="B (default 512; --quick 32)")
    args = ap.parse_args(argv)
    if args.quick:
        n, B, steps, loop_steps, warmup = 256, 32, args.steps or 10, 2, 3
    else:
        n, B, steps, loop_steps, warmup = 4096, 512, args.steps or 20, 2, 20
    if args.loop_steps is not None:
        loop_steps = args.loop_steps
    n, B = args.n or n, args.batch_size or B
    base = dict(n=n, classes=16, batch_size=B, steps=1000, tau=0.5, eta=2.0, project="clip", lemma5_trials=0,
                plot=False, device=args.device)
    tuned = tune_allocator()
    dev = args.device + (f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else "")
    print(f"# bench_sigma: N={n} (M={2 * n} items, Sigma {2 * n} x {2 * n} x 2 runs), B={B}, classes=16, "
          f"tau=0.5, eta=2, clip; device {dev}; torch {torch.__version__}, {os.cpu_count()} cpus, allocator tuned: "
          f"{tuned}")
    print(f"# load average (1/5/15 min) at start: {_load()}; best of {args.repeats} windows of {steps} (checks on) / "
          f"{2 * steps} (off) steps after {warmup} warm-up steps")
    print("# steps/s per wall second (per CPU second of this process in brackets; with k threads the CPU rate is per "
          "core-second)")
    print("| dtype | threads | checks on | checks off | floor: gather+scatter only | per-anchor loop | off / loop | "
          "on / loop | off / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for th in args.threads:
        torch.set_num_threads(th)
        for dt in args.dtypes:
            cfg = dict(base, dtype=dt)
            on = time_engine(SigmaConfig(**cfg, checks=True), steps, args.repeats, warmup)
            off = time_engine(SigmaConfig(**cfg, checks=False), 2 * steps, args.repeats, warmup)
            floor = time_floor(SigmaConfig(**cfg, checks=False), 2 * steps, args.repeats, warmup)
            loop = (time_loop(SigmaConfig(**dict(cfg, dtype="float64", device="cpu"), checks=False), loop_steps)
                    if loop_steps else (float("nan"),) * 2)
            if dt == "float64":
                rows.append((th, on, off, floor))
            print(f"| {dt} | {th} | {on[0]:.1f} ({on[1]:.1f}) | {off[0]:.1f} ({off[1]:.1f}) | {floor[0]:.1f} "
                  f"({floor[1]:.1f}) | {loop[0]:.3f} ({loop[1]:.3f}) | {off[0] / loop[0]:.0f}x | {on[0] / loop[0]:.0f}x | "
                  f"{off[0] / floor[0]:.2f} |", flush=True)
    print(f"# load average at end: {_load()}")
    if not args.quick and rows:
        th, on, off, floor = max(rows, key=lambda r: r[2][0])
        print(f"# targets (2 cores): checks on >= 20 steps/s: {'met' if max(r[1][0] for r in rows) >= 20 else 'NOT met'}"
              f" (best {max(r[1][0] for r in rows):.1f}); checks off >= 100 steps/s: "
              f"{'met' if off[0] >= 100 else 'NOT met'} (best {off[0]:.1f} at {th} thread(s)).")
        rest = 1e3 / off[0] - 1e3 / floor[0]
        print(f"# bound: the four Sigma memory operations alone (gather + write-back of both blocks) run at "
              f"{floor[0]:.1f} steps/s = {1e3 / floor[0]:.1f} ms per step at {th} thread(s); the checks-off step spends "
              f"{100 * off[0] / floor[0]:.0f}% of its {1e3 / off[0]:.1f} ms in them and {rest:.1f} ms in everything else "
              f"(2 softmaxes, the update, index building). 100 steps/s = 10 ms per step would leave "
              f"{10 - 1e3 / floor[0]:.1f} ms beyond the floor: {'out of reach here' if 10 - 1e3 / floor[0] < rest else 'reachable'}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
