"""The prepared GPU check (run by benchmarks/gpu_check.sh): one results table + JSON, sized for <= 8 minutes on
one H100 / H200, and runnable end to end on the CPU with ``--cpu --quick`` (tiny sizes, same code paths).

Sections (each one is timed and guarded: a failing section records its one-line error and the rest still run):

1. ``agree_train``: one coupled CL / NSCL training step (experiments.lockstep.LockstepTrainer) on the CPU and on
   the device from the same initial weights, batch and augmented views (views drawn once on the CPU, fed to both;
   float32, TF32 off): max over models of ||w_dev - w_cpu|| / ||w_cpu - w_0|| (relative to the update).
2. ``agree_sigma``: one coupled Sigma-descent step (simulate.layout / simulate.step, Eq. 1) in float64 on the CPU
   and on the device from the same Sigma_0 and batch: max |Sigma_dev - Sigma_cpu| over both runs.
3. ``throughput``: SimCLR (one CL model) ResNet-18 / ResNet-50, B = 512 and 1024, 32 x 32 inputs, bf16 +
   channels-last, without and (B = 1024) with torch.compile: images/s (B images, two views each, per second),
   seconds per epoch of 50 000 images x 2 views per model, share of the step spent producing indices + augmented
   views + loss targets (synchronised per-phase timings).
4. ``lockstep``: K = 4 models (CL, NSCL, SCL, DCL) in lockstep vs 4 separate one-model trainers, ResNet-18 at
   B = 512: seconds per model-step of each and their ratio.
5. ``sigma_steps``: coupled Sigma-descent steps/s (B = 512, checks off, ordered Sigma, clip) at N = 4096 (float64)
   and N = 50 000 (float32: two (2N)^2 float32 matrices = 80 GB).

``--cpu --quick``: device = cpu, tiny sizes (B = 8, 16 x 16 images, width 1/16, N = 128 (float64) / 256 (float32)),
no torch.compile row (compiling
takes minutes on 2 CPU cores). ``--out FILE`` writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable

import torch

from experiments.data import synthetic_images
from experiments.train import LockstepTrainer, TrainConfig


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _cfg(arch: str, B: int, dev: str, losses=("CL",), width: float = 1.0, compile: bool = False, low: bool = False,
         proj_hidden: int | None = None) -> TrainConfig:
    cuda = dev.startswith("cuda")
    return TrainConfig(losses=tuple(losses), arch=arch, width=width, proj_hidden=proj_hidden, proj_dim=128 if not low else 16,
                       batch_size=B, tau=0.5, epochs=1000, optimizer="lars", lr=1.2, momentum=0.9, weight_decay=1e-6,
                       device=dev, bf16=cuda and not low, channels_last=cuda and not low, compile=compile)


# ----------------------------------------------------------------------------------------------------------
def agree_train(dev: str, quick: bool) -> dict:
    """One coupled step on the CPU and on ``dev`` with identical inputs; relative weight disagreement."""
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    B, size = (8, 16) if quick else (128, 32)
    ds = synthetic_images(num_classes=4, n_per_class=B, size=size, seed=0)
    arch, width = ("small_cnn", 0.25) if quick else ("resnet18", 0.5)
    trainers = {d: LockstepTrainer(_cfg(arch, B, d, ("CL", "NSCL"), width, low=True, proj_hidden=64), ds, quiet=True)
                for d in ("cpu", dev)}
    ref = trainers["cpu"]
    idx = ref.batch_indices(0)
    views = ref.make_views(idx).detach().cpu()
    w0 = {n: {k: p.detach().clone() for k, p in m.named_parameters()} for n, m in ref.models.items()}
    for d, tr in trainers.items():
        tr.make_views = lambda i, _v=views, _d=tr.device: _v.to(_d)  # the very same views for both devices
        tr.train_step()
    worst = 0.0
    for n in ref.models:
        pc = dict(ref.models[n].named_parameters())
        pd = dict(trainers[dev].models[n].named_parameters())
        num = math.sqrt(sum(float((pd[k].detach().cpu().double() - pc[k].detach().double()).pow(2).sum()) for k in pc))
        den = math.sqrt(sum(float((pc[k].detach().double() - w0[n][k].double()).pow(2).sum()) for k in pc))
        worst = max(worst, num / den if den > 0 else math.inf)
    return {"arch": arch, "B": B, "rel_weight_diff_after_1_step": worst}


def _sigma_step_setup(N: int, B: int, C: int, dtype: torch.dtype, dev: str, seed: int = 0):
    from simulate.batches import batch_items, draw_batch
    from simulate.layout import build_layout

    V = 2
    M = N * V
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(N) % C).repeat_interleave(V)
    batch = draw_batch(N, B, V, True, g, torch.Generator().manual_seed(seed + 1))
    rows, cols = batch_items(batch, V)
    layout = build_layout(rows.to(dev), cols.to(dev), labels[rows].to(dev), labels[cols].to(dev), M, False,
                          dtype=dtype)
    return layout, M


def agree_sigma(dev: str, quick: bool) -> dict:
    """One coupled Sigma step in float64 on the CPU and on ``dev`` from the same Sigma_0 and batch."""
    from simulate.step import apply_step, compute_step

    N, B, C = (128, 32, 8) if quick else (2048, 512, 100)
    out = {}
    g = torch.Generator().manual_seed(5)
    s0 = None
    for d in ("cpu", dev):
        layout, M = _sigma_step_setup(N, B, C, torch.float64, d)
        if s0 is None:
            x = torch.rand(M, M, generator=g, dtype=torch.float64) * 2 - 1
            s0 = ((x + x.T) / 2).clamp_(-1, 1)
        cl, ns = s0.clone().to(d), s0.clone().to(d)
        st = compute_step(cl, ns, layout, 0.5)
        apply_step(cl, ns, st, 16.0, True)
        out[d] = (cl.cpu(), ns.cpu())
    diff = max(float((out[dev][i] - out["cpu"][i]).abs().max()) for i in range(2))
    moved = float((out["cpu"][0] - s0).abs().max())
    return {"N": N, "B": B, "max_abs_diff": diff, "max_abs_update": moved}


def _time_steps(tr: LockstepTrainer, steps: int, warm: int) -> tuple[float, float]:
    """(seconds per step, share of data + augmentation + targets) over ``steps`` steps after ``warm``."""
    dev = str(tr.device)
    tr.fit(max_steps=tr.step + warm)
    _sync(dev)
    t0 = time.perf_counter()
    tr.fit(max_steps=tr.step + steps)
    _sync(dev)
    per = (time.perf_counter() - t0) / steps
    tr.profile = True
    tr.reset_timings()
    tr.fit(max_steps=tr.step + max(2, steps // 4))
    tr.profile = False
    t = tr.timings
    share = t["data"] / max(t["data"] + t["models"], 1e-12)
    return per, share


def throughput(dev: str, quick: bool) -> list[dict]:
    rows = []
    if quick:
        # no torch.compile row: compiling on 2 CPU cores takes minutes (the GPU run has one per architecture)
        grid = [("resnet18", 8, False), ("resnet50", 8, False)]
        width, steps, warm, n, size = 0.0625, 2, 1, 32, 16
    else:
        grid = [(a, B, c) for a in ("resnet18", "resnet50") for B, c in ((512, False), (1024, False), (1024, True))]
        width, steps, warm, n, size = 1.0, 20, 5, 4096, 32
    for arch, B, comp in grid:
        ds = synthetic_images(num_classes=10, n_per_class=max(n, 2 * B) // 10 + 1, size=size, seed=0)
        rec: dict[str, Any] = {"arch": arch, "B": B, "image": size, "compile": comp, "bf16": dev.startswith("cuda"),
                               "channels_last": dev.startswith("cuda"), "width": width}
        try:
            tr = LockstepTrainer(_cfg(arch, B, dev, ("CL",), width, comp), ds, quiet=True)
            t0 = time.perf_counter()
            per, share = _time_steps(tr, steps, warm)
            rec.update({"s_per_step": per, "images_per_s": B / per, "s_per_epoch_50k": 50000 / B * per,
                        "augment_share": share, "bench_s": time.perf_counter() - t0})
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a compiler: keep the other rows
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        rows.append(rec)
        del rec
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def lockstep(dev: str, quick: bool) -> dict:
    B, width, steps, warm, size = (8, 0.0625, 1, 1, 16) if quick else (512, 1.0, 10, 3, 32)
    ds = synthetic_images(num_classes=10, n_per_class=max(32, 2 * B) // 10 + 1, size=size, seed=0)
    losses = ("CL", "NSCL", "SCL", "DCL")
    tr = LockstepTrainer(_cfg("resnet18", B, dev, losses, width), ds, quiet=True)
    per_k, share_k = _time_steps(tr, steps, warm)
    sep = []
    for loss in losses:
        one = LockstepTrainer(_cfg("resnet18", B, dev, (loss,), width), ds, quiet=True)
        sep.append(_time_steps(one, steps, warm)[0])
    return {"arch": "resnet18", "B": B, "image": size, "K": 4, "lockstep_s_per_step": per_k, "separate_s_per_step_sum": sum(sep),
            "speedup": sum(sep) / per_k, "lockstep_data_share": share_k}


def sigma_steps(dev: str, quick: bool) -> list[dict]:
    from simulate.step import apply_step, compute_step

    sizes = [(128, 32, torch.float64), (256, 64, torch.float32)] if quick else \
        [(4096, 512, torch.float64), (4096, 512, torch.float32), (50000, 512, torch.float32)]
    rows = []
    for N, B, dt in sizes:
        rec: dict[str, Any] = {"N": N, "B": B, "dtype": str(dt).replace("torch.", "")}
        try:
            M = 2 * N
            cl = torch.empty(M, M, dtype=dt, device=dev).uniform_(-1, 1)
            ns = cl.clone()
            layouts = [_sigma_step_setup(N, B, 100, dt, dev, seed=s)[0] for s in range(4)]
            steps = 4 if quick else 50
            for k in range(2):
                st = compute_step(cl, ns, layouts[k % 4], 2.0)
                apply_step(cl, ns, st, 16.0, True)
            _sync(dev)
            t0 = time.perf_counter()
            for k in range(steps):
                st = compute_step(cl, ns, layouts[k % 4], 2.0)
                apply_step(cl, ns, st, 16.0, True)
            _sync(dev)
            rec["steps_per_s"] = steps / (time.perf_counter() - t0)
            rec["note"] = "batch layouts prepared outside the timed loop (4, cycled)"
            del cl, ns
        except Exception as e:  # noqa: BLE001 - e.g. out of memory at N = 50 000 on a smaller GPU
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        rows.append(rec)
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


SECTIONS: dict[str, Callable[[str, bool], Any]] = {"agree_train": agree_train, "agree_sigma": agree_sigma,
                                                   "throughput": throughput, "lockstep": lockstep,
                                                   "sigma_steps": sigma_steps}


def format_table(doc: dict) -> str:
    lines = [f"gpu_check on {doc['device_name']} (device={doc['device']}, quick={doc['quick']}, torch {doc['torch']})"]
    for name, sec in doc["sections"].items():
        if "error" in sec:
            lines.append(f"{name}: ERROR {sec['error']}  ({sec['wall_s']:.1f} s)")
            continue
        res = sec["result"]
        lines.append(f"{name}: ({sec['wall_s']:.1f} s)")
        for r in res if isinstance(res, list) else [res]:
            lines.append("    " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    lines.append(f"total {doc['wall_s']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of every code path)")
    ap.add_argument("--only", default="", help="comma list of sections (default: all): " + ", ".join(SECTIONS))
    ap.add_argument("--out", default="", help="write the JSON here")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or list(SECTIONS)
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        print(f"gpu_check: error: --only must name sections from {', '.join(SECTIONS)}, got {bad[0]!r}", file=sys.stderr)
        return 2
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device visible; use --cpu (optionally --quick) to run on the CPU",
              file=sys.stderr)
        return 2
    dev = "cpu" if args.cpu else "cuda"
    t_all = time.perf_counter()
    doc: dict[str, Any] = {"device": dev, "quick": args.quick, "torch": torch.__version__,
                           "device_name": torch.cuda.get_device_name(0) if dev == "cuda" else platform.processor() or "cpu",
                           "cpu_threads": torch.get_num_threads(), "sections": {}}
    for name in only:
        t0 = time.perf_counter()
        try:
            doc["sections"][name] = {"result": SECTIONS[name](dev, args.quick)}
        except Exception as e:  # noqa: BLE001 - one section failing must not lose the others' numbers
            traceback.print_exc(file=sys.stderr)
            doc["sections"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        doc["sections"][name]["wall_s"] = time.perf_counter() - t0
        print(f"[{name}] done in {doc['sections'][name]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    doc["wall_s"] = time.perf_counter() - t_all
    print(format_table(doc))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2, default=str)
        print(f"wrote {args.out}")
    return 1 if any("error" in s for s in doc["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
