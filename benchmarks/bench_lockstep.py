"""Throughput of K-model lockstep training vs K separate runs (same total work, measured in one run).

A lockstep step produces the batch, both augmented views, the labels / loss masks and the input hash once and
trains K models on them; K separate runs each do all of that themselves. Each separate run is a full normal
training run (its own LockstepTrainer with one loss: own data pipeline, augmentation, digest) with the same
settings; both sides train K x S model-steps. Throughput is counted in model-images per second (K models x B
samples per step). Rounds are interleaved (lockstep, then the K separate runs) and the ratio is the median of the
per-round ratios, so slow drifts of a shared machine's load hit both sides alike. Both wall time and the process's
CPU time are reported (with ``--threads 1`` the CPU time is the robust one on a shared machine).

Breakdown (Amdahl): with ``a`` = shared per-step cost (indices, image gather + uint8 -> float + augmentation of both
views, labels + loss masks, input digest) and ``m`` = per-model cost (forward + loss, backward, optimiser step),
lockstep needs a + K m per step and K separate runs K (a + m), so  ratio <= (a + m) / (a / K + m)  and the ratio
can never exceed 1 + a / m. ``a`` and ``m`` are measured with the trainer's synchronised per-phase timings
(``LockstepTrainer.profile``) on the K-model lockstep run.

    python -m benchmarks.bench_lockstep                  # CPU, bound_vs_empirical defaults (small_cnn w=0.5,
                                                         # projector 128 -> 64, B = 64, 32x32 synthetic), K = 1, 2, 4
    python -m benchmarks.bench_lockstep --batch-size 128 # same at B = 128
    python -m benchmarks.bench_lockstep --quick          # tiny sizes (smoke test)
    python -m benchmarks.bench_lockstep --gpu            # CUDA: ResNet-18/50, B = 512 and 1024, 32x32 inputs:
                                                         # images/s, s/epoch (50 000 images x 2 views per model),
                                                         # share of step time in data + augmentation

``--preset legacy`` (the ``--gpu`` default) uses TrainConfig's defaults instead (width 1, projector = feature_dim ->
128, momentum 0.9, bf16 + channels_last on CUDA).
``--cpu-channels-last`` runs the CUDA memory-format path (channels_last models and views) on the CPU for both
sides (it is ~1.3-1.8x faster per model step for small_cnn on a CPU with oneDNN). Prints the load average
(``os.getloadavg``) before and after each configuration; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

import experiments.lockstep as train_mod
from experiments.config import RunConfig
from experiments.data import synthetic_images
from experiments.train import LockstepTrainer, TrainConfig

LOSS_ORDER = ("CL", "NSCL", "SCL", "DCL")
SHARED_PHASES = ("indices", "views", "targets", "digest")
MODEL_PHASES = ("forward", "backward", "sync", "optimizer")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _timed_fit(trainer: LockstepTrainer, steps: int) -> float:
    """Seconds for the next ``steps`` steps of ``trainer``."""
    return _timed_fit2(trainer, steps)[0]


def _timed_fit2(trainer: LockstepTrainer, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for the next ``steps`` steps of ``trainer``.

    The CPU time of a one-thread CPU run does not count time the process waited for the core, so it is the robust
    measure on a shared machine (other processes' cache / memory-bandwidth use still leaks in)."""
    dev = str(trainer.device)
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(max_steps=trainer.step + steps)
    _sync(dev)
    return time.perf_counter() - t0, time.process_time() - c0


def _profile(trainer: LockstepTrainer, steps: int) -> dict:
    """Synchronised per-phase seconds per step over ``steps`` extra steps (LockstepTrainer.timings)."""
    trainer.profile = True
    trainer.reset_timings()
    trainer.fit(max_steps=trainer.step + steps)
    trainer.profile = False
    n = trainer.timings["steps"]
    return {k: trainer.timings[k] / n for k in (*LockstepTrainer.TIMED_PHASES, "data", "models")}


def _data_share(trainer: LockstepTrainer, steps: int) -> float:
    """Share of a step spent producing indices + views + loss targets (synchronised timings)."""
    p = _profile(trainer, steps)
    return p["data"] / max(p["data"] + p["models"], 1e-12)


def _median_time(fn, reps: int, device: str) -> float:
    ts = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _views_breakdown(trainer: LockstepTrainer, reps: int) -> dict:
    """Seconds per step of the pieces of make_views (own generators: the trainer's state is not touched)."""
    dev = str(trainer.device)
    B = trainer.batch_size
    _, _, H, W = trainer.images.shape
    idx = torch.randperm(trainer.images.shape[0], generator=torch.Generator().manual_seed(0))[:B].to(trainer.device)
    aug = trainer.augment
    x8 = trainer.images[idx]
    g = torch.Generator(device=trainer.device).manual_seed(0)
    params = aug.sample_params(B, H, W, g, trainer.device)
    v = aug.apply(x8, params)
    out = {
        "gather": _median_time(lambda: trainer.images[idx], reps, dev),
        "to_float": 2 * _median_time(lambda: x8.to(torch.float32) / 255.0, reps, dev),
        "sample_params": 2 * _median_time(lambda: aug.sample_params(B, H, W, g, trainer.device), reps, dev),
        "apply": 2 * _median_time(lambda: aug.apply(x8, params), reps, dev),
        "concat": _median_time(lambda: torch.cat([v, v]).contiguous(memory_format=trainer.memory_format), reps, dev),
    }
    out["augment"] = out["apply"] - out["to_float"]  # crop, flip, jitter, grayscale, blur of both views
    return out


def _config(losses, args, arch, batch, device, epochs) -> TrainConfig:
    if args.preset == "bve":
        kw = RunConfig().train_config_kwargs()
    else:
        kw = dict(proj_dim=128, tau=0.5, lr=0.1)
    kw.update(losses=tuple(losses), arch=arch, batch_size=batch, epochs=epochs, device=device,
              compile=args.compile, digest=not args.no_digest, out_dir=None)
    if args.width is not None:
        kw["width"] = args.width
    if args.proj_hidden is not None:
        kw["proj_hidden"] = args.proj_hidden
    if args.cpu_channels_last:
        kw.update(channels_last=True, bf16=False)
    return TrainConfig(**kw)


def _ms(s: float) -> str:
    return f"{1e3 * s:7.1f}"


def bench_cpu(args) -> list[dict]:
    """Interleaved rounds of (lockstep K models for S steps, K separate one-model runs for S steps each)."""
    if args.cpu_channels_last:
        train_mod.AMP_DEVICE_TYPES = (*train_mod.AMP_DEVICE_TYPES, "cpu")
    B, S, W, R = args.batch_size, args.steps, args.warmup, args.repeats
    spe = 8
    need = W + R * S + args.profile_steps + 3
    epochs = -(-need // spe) + 1
    ds = synthetic_images(num_classes=8, n_per_class=B, size=args.size, seed=0)  # 8 steps per epoch
    rows = []
    cfg0 = _config(LOSS_ORDER[:1], args, args.arch, B, "cpu", epochs)
    print(f"# CPU, torch {torch.__version__}, {torch.get_num_threads()} thread(s), preset {args.preset}: "
          f"{cfg0.arch} width {cfg0.width}, projector {cfg0.proj_hidden} -> {cfg0.proj_dim}, B = {B}, "
          f"{args.size}x{args.size}, digest {cfg0.digest}, channels_last {args.cpu_channels_last}; "
          f"S = {S} steps x {R} rounds", flush=True)
    for K in args.ks:
        load0 = _load()
        losses = LOSS_ORDER[:K]
        lock = LockstepTrainer(_config(losses, args, args.arch, B, "cpu", epochs), ds, quiet=True)
        seps = [LockstepTrainer(_config((n,), args, args.arch, B, "cpu", epochs), ds, quiet=True) for n in losses]
        for tr in [lock, *seps]:
            tr.fit(max_steps=W)
        t_lock, t_sep, ratios, c_lock, c_sep, c_ratios = [], [], [], [], [], []
        for _ in range(R):
            tl, cl = _timed_fit2(lock, S)
            sep = [_timed_fit2(tr, S) for tr in seps]
            ts, cs = sum(w for w, _ in sep), sum(c for _, c in sep)
            t_lock.append(tl)
            t_sep.append(ts)
            ratios.append(ts / tl)
            c_lock.append(cl)
            c_sep.append(cs)
            c_ratios.append(cs / cl)
        prof = _profile(lock, args.profile_steps)
        views = _views_breakdown(lock, args.profile_steps)
        for tr in [lock, *seps]:
            tr.close()
        a = sum(prof[k] for k in SHARED_PHASES)
        m = sum(prof[k] for k in MODEL_PHASES) / K
        bound = (a + m) / (a / K + m)
        tl, ts = statistics.median(t_lock), statistics.median(t_sep)
        # Amdahl from CPU time: one-model step s1 = a + m (separate runs), lockstep step sK = a + K m
        s1, sK = statistics.median(c_sep) / (K * S), statistics.median(c_lock) / S
        m_cpu = (sK - s1) / (K - 1) if K > 1 else float("nan")
        a_cpu = s1 - m_cpu
        work = K * S * B
        r = {"mode": "cpu", "preset": args.preset, "arch": cfg0.arch, "width": cfg0.width, "size": args.size, "K": K,
             "B": B, "steps": S, "repeats": R, "lockstep_img_s": work / tl, "separate_img_s": work / ts,
             "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
             "a_s": a, "m_s": m, "amdahl_bound": bound, "ratio_limit_1_plus_a_over_m": 1 + a / m,
             "cpu_ratio": statistics.median(c_ratios), "cpu_ratio_min": min(c_ratios), "cpu_ratio_max": max(c_ratios),
             "cpu_step_separate_s": s1, "cpu_step_lockstep_s": sK, "a_cpu_s": a_cpu, "m_cpu_s": m_cpu,
             "amdahl_bound_cpu": (a_cpu + m_cpu) / (a_cpu / K + m_cpu) if K > 1 else 1.0,
             "phases_s": prof, "views_s": views, "threads": torch.get_num_threads(),
             "channels_last": args.cpu_channels_last, "load_before": load0, "load_after": _load()}
        rows.append(r)
        print(f"K={K}: lockstep {r['lockstep_img_s']:7.1f} img/s, separate {r['separate_img_s']:7.1f} img/s, "
              f"ratio {r['ratio']:.3f}x (rounds {r['ratio_min']:.3f}-{r['ratio_max']:.3f}); a = {1e3 * a:.1f} ms, "
              f"m = {1e3 * m:.1f} ms, Amdahl bound {bound:.3f}x; load {load0} -> {r['load_after']}", flush=True)
        cpu_ab = "" if K == 1 else (f"; a = {1e3 * a_cpu:.1f} ms, m = {1e3 * m_cpu:.1f} ms, "
                                    f"Amdahl bound {r['amdahl_bound_cpu']:.3f}x")
        print(f"     CPU time: ratio {r['cpu_ratio']:.3f}x (rounds {r['cpu_ratio_min']:.3f}-{r['cpu_ratio_max']:.3f}), "
              f"step {1e3 * s1:.1f} ms separate / {1e3 * sK:.1f} ms lockstep{cpu_ab}", flush=True)
        print("     per step (ms): " + " ".join(f"{k} {_ms(prof[k]).strip()}" for k in LockstepTrainer.TIMED_PHASES)
              + f" | views = gather {_ms(views['gather']).strip()} + uint8->float {_ms(views['to_float']).strip()}"
              f" + sample {_ms(views['sample_params']).strip()} + augment {_ms(views['augment']).strip()}"
              f" + concat {_ms(views['concat']).strip()}", flush=True)
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
            epochs = -(-(W + S + args.profile_steps + 3) // 8) + 1
            for K in args.ks:
                tr = LockstepTrainer(_config(LOSS_ORDER[:K], args, arch, B, device, epochs), ds, quiet=True)
                tr.fit(max_steps=W)
                step_s = _timed_fit(tr, S) / S
                prof = _profile(tr, args.profile_steps)
                share = prof["data"] / max(prof["data"] + prof["models"], 1e-12)
                tr.close()
                r = {"mode": "gpu", "device": str(tr.device), "arch": arch, "B": B, "K": K, "step_s": step_s,
                     "img_s": K * B / step_s, "img_s_per_model": B / step_s,
                     "s_per_epoch_50k": (50000 / B) * step_s, "data_share": share, "phases_s": prof,
                     "compile": args.compile,
                     "name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"}
                rows.append(r)
                print(f"{arch} B={B} K={K}: {r['img_s']:9.0f} model-img/s ({r['img_s_per_model']:8.0f} per model), "
                      f"{r['s_per_epoch_50k']:7.2f} s per 50k-image epoch (x2 views) for all K models, "
                      f"data+aug {share:.1%} of a step (synchronised)", flush=True)
                del tr
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_lockstep", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--gpu", action="store_true", help="ResNet-18/50 throughput on CUDA")
    p.add_argument("--device", default=None, help="override the --gpu device (e.g. cpu for a smoke test)")
    p.add_argument("--preset", choices=("bve", "legacy"), default=None,
                   help="bve (CPU default): bound_vs_empirical's training defaults (experiments.config.RunConfig); "
                        "legacy (--gpu default): TrainConfig defaults")
    p.add_argument("--ks", type=int, nargs="+", default=None)
    p.add_argument("--arch", default="small_cnn")
    p.add_argument("--archs", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batches", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--batch-size", type=int, default=None, help="CPU mode B (default: the preset's, 64 for bve)")
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--proj-hidden", type=int, default=None)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="CPU mode: interleaved rounds, median reported")
    p.add_argument("--profile-steps", type=int, default=None, help="steps of synchronised per-phase timing")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU mode")
    p.add_argument("--cpu-channels-last", action="store_true",
                   help="CPU mode: channels_last models and views (the CUDA memory-format path) on both sides")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-digest", action="store_true", help="switch off the SHA-256 input digests")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.preset is None:
        args.preset = "legacy" if args.gpu else "bve"
    try:
        if args.gpu:
            args.ks = args.ks or [1, 4]
            args.steps = args.steps or (3 if args.quick else 20)
            args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
            args.profile_steps = args.profile_steps or 3
            if args.quick:
                args.batches = [b // 64 for b in args.batches]
            rows = bench_gpu(args)
        else:
            args.ks = args.ks or [1, 2, 4]
            if args.batch_size is None:
                args.batch_size = RunConfig().batch_size if args.preset == "bve" else 128
            if args.quick:
                args.batch_size, args.width, args.size = 32, 0.25, 16
                args.proj_hidden = args.proj_hidden or 32
            args.steps = args.steps or (4 if args.quick else 10)
            args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
            args.repeats = args.repeats or (3 if args.quick else 5)
            args.profile_steps = args.profile_steps or (3 if args.quick else 10)
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
