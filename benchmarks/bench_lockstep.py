"""Throughput of K-model lockstep training vs K separate runs (same total work, measured in one run).

A lockstep step produces the batch and both augmented views once and trains K models on them; K separate runs
each produce their own. Throughput is counted in model-images per second: K models x B samples per step.

    python -m benchmarks.bench_lockstep                # CPU, small_cnn, synthetic 32x32, K = 1, 2, 4
    python -m benchmarks.bench_lockstep --quick        # tiny sizes (smoke test)
    python -m benchmarks.bench_lockstep --gpu          # CUDA: ResNet-18/50, B = 512 and 1024, 32x32 inputs:
                                                       # images/s, s/epoch (50 000 images x 2 views per model),
                                                       # share of step time in data + augmentation

Prints one line per configuration and, for the CPU mode, the ratio lockstep / separate; ``--json FILE`` also
writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from experiments.data import synthetic_images
from experiments.train import LockstepTrainer, TrainConfig

LOSS_ORDER = ("CL", "NSCL", "SCL", "DCL")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_fit(trainer: LockstepTrainer, steps: int) -> float:
    """Seconds for the next ``steps`` steps of ``trainer``."""
    dev = str(trainer.device)
    _sync(dev)
    t0 = time.perf_counter()
    trainer.fit(max_steps=trainer.step + steps)
    _sync(dev)
    return time.perf_counter() - t0


def _data_share(trainer: LockstepTrainer, steps: int) -> float:
    """Share of a step spent producing indices + views (synchronised timings over ``steps`` extra steps)."""
    trainer.profile = True
    trainer.timings.update(data=0.0, models=0.0, steps=0)
    trainer.fit(max_steps=trainer.step + steps)
    trainer.profile = False
    return trainer.timings["data"] / max(trainer.timings["data"] + trainer.timings["models"], 1e-12)


def _config(losses, args, arch, batch, device, epochs) -> TrainConfig:
    return TrainConfig(losses=tuple(losses), arch=arch, width=args.width, proj_hidden=args.proj_hidden,
                       proj_dim=128, batch_size=batch, tau=0.5, epochs=epochs, lr=0.1, device=device,
                       compile=args.compile, digest=not args.no_digest)


def bench_cpu(args) -> list[dict]:
    """Median over ``repeats`` interleaved rounds of (lockstep K models, K separate one-model runs)."""
    B, S, W, R = args.batch_size, args.steps, args.warmup, args.repeats
    spe = 8
    need = W + R * S + 3
    epochs = -(-need // spe) + 1
    ds = synthetic_images(num_classes=8, n_per_class=B, size=args.size, seed=0)  # 8 steps per epoch
    rows = []
    for K in args.ks:
        losses = LOSS_ORDER[:K]
        lock = LockstepTrainer(_config(losses, args, args.arch, B, "cpu", epochs), ds, quiet=True)
        seps = [LockstepTrainer(_config((n,), args, args.arch, B, "cpu", epochs), ds, quiet=True) for n in losses]
        for tr in [lock, *seps]:
            tr.fit(max_steps=W)
        t_lock, t_sep = [], []
        for _ in range(R):
            t_lock.append(_timed_fit(lock, S))
            t_sep.append(sum(_timed_fit(tr, S) for tr in seps))
        share = _data_share(lock, 3)
        for tr in [lock, *seps]:
            tr.close()
        tl, ts = statistics.median(t_lock), statistics.median(t_sep)
        work = K * S * B
        r = {"mode": "cpu", "arch": args.arch, "width": args.width, "size": args.size, "K": K, "B": B, "steps": S,
             "repeats": R, "lockstep_img_s": work / tl, "separate_img_s": work / ts, "ratio": ts / tl,
             "data_share_lockstep": share, "threads": torch.get_num_threads()}
        rows.append(r)
        print(f"K={K} {args.arch} w={args.width} B={B} {args.size}x{args.size}: lockstep {r['lockstep_img_s']:8.1f} "
              f"img/s, separate {r['separate_img_s']:8.1f} img/s, ratio {r['ratio']:.2f}x "
              f"(data+aug {share:.0%} of a lockstep step)", flush=True)
    return rows


def bench_gpu(args) -> list[dict]:
    device = args.device or "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--gpu needs CUDA (or pass --device cpu for a smoke test)")
    S, W = args.steps, args.warmup
    rows = []
    for arch in args.archs:
        for B in args.batches:
            ds = synthetic_images(num_classes=8, n_per_class=B, size=32, seed=0)  # 8 steps per epoch
            epochs = -(-(W + S + 3) // 8) + 1
            for K in args.ks:
                tr = LockstepTrainer(_config(LOSS_ORDER[:K], args, arch, B, device, epochs), ds, quiet=True)
                tr.fit(max_steps=W)
                step_s = _timed_fit(tr, S) / S
                share = _data_share(tr, 3)
                tr.close()
                r = {"mode": "gpu", "device": str(tr.device), "arch": arch, "B": B, "K": K, "step_s": step_s,
                     "img_s": K * B / step_s, "img_s_per_model": B / step_s,
                     "s_per_epoch_50k": (50000 / B) * step_s, "data_share": share, "compile": args.compile,
                     "name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"}
                rows.append(r)
                print(f"{arch} B={B} K={K}: {r['img_s']:9.0f} model-img/s ({r['img_s_per_model']:8.0f} per model), "
                      f"{r['s_per_epoch_50k']:7.2f} s per 50k-image epoch (x2 views) for all K models, "
                      f"data+aug {share:.1%} of a step", flush=True)
                del tr
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_lockstep", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--gpu", action="store_true", help="ResNet-18/50 throughput on CUDA")
    p.add_argument("--device", default=None, help="override the --gpu device (e.g. cpu for a smoke test)")
    p.add_argument("--ks", type=int, nargs="+", default=None)
    p.add_argument("--arch", default="small_cnn")
    p.add_argument("--archs", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batches", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--proj-hidden", type=int, default=None)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="CPU mode: interleaved rounds, median reported")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU mode")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-digest", action="store_true", help="switch off the SHA-256 input digests")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.gpu:
            args.ks = args.ks or [1, 4]
            args.steps = args.steps or (3 if args.quick else 20)
            args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
            if args.quick:
                args.batches = [b // 64 for b in args.batches]
            rows = bench_gpu(args)
        else:
            args.ks = args.ks or [1, 2, 4]
            if args.quick:
                args.batch_size, args.width, args.size = 32, 0.25, 16
                args.proj_hidden = args.proj_hidden or 32
            args.steps = args.steps or (4 if args.quick else 20)
            args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
            args.repeats = args.repeats or (3 if args.quick else 5)
            rows = bench_cpu(args)
    except ValueError as e:
        print(f"bench_lockstep: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": str(torch.__version__), "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
