"""``python -m experiments.train``: the lockstep trainer from the command line (also under ``torchrun``).

Trains one model per loss in lockstep (:class:`experiments.lockstep.LockstepTrainer`) and writes
``manifest.json``, ``history.json`` and ``ckpt.pt`` into ``--out``. Under ``torchrun --nproc_per_node G`` every
rank runs this CLI (DDP over the global batch; gloo on CPU, NCCL on GPUs).

SIGINT / SIGTERM are caught from the first statement on, before the slow imports: before the trainer exists the
process stops with exit status 128 + signal and one line (nothing to save yet); afterwards the trainer finishes
the current step, saves ``ckpt.pt`` and exits with the same status.

The names of the trainer modules (``TrainConfig``, ``LockstepTrainer``, ``InputDigest``, ...) are importable from
here as before (loaded on first use, so that this CLI starts fast).
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Sequence

#: signals received before the trainer took over (main's early handler)
_PENDING: list[int] = []
_TRAINER: list[Any] = []


def _early_handler(signum: int, frame: Any) -> None:
    if _TRAINER:  # the trainer exists: it finishes the step and saves (a second signal stops at once)
        _TRAINER[0]._on_signal(signum, frame)
    else:
        _PENDING.append(signum)


def install_early_signal_handlers() -> dict:
    """Catch SIGINT / SIGTERM into a pending list (returns the previous handlers)."""
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.getsignal(sig)
        signal.signal(sig, _early_handler)
    return old


if __name__ == "__main__":  # before anything slow (importing torch takes seconds)
    install_early_signal_handlers()

import argparse  # noqa: E402
import json  # noqa: E402
from dataclasses import fields  # noqa: E402
from pathlib import Path  # noqa: E402

_LAZY = {
    "TrainConfig": "train_config", "TRAIN_LOSSES": "train_config", "OPTIMIZERS": "train_config",
    "ANCHORS": "train_config", "RESUME_MUTABLE_KEYS": "train_config", "resolve_device": "train_config",
    "LockstepTrainer": "lockstep", "TrainingInterrupted": "lockstep", "TrainingDiverged": "lockstep",
    "CHECKPOINT_FORMAT": "lockstep", "CKPT_NAME": "lockstep", "AMP_DEVICE_TYPES": "lockstep",
    "InputDigest": "input_digest", "dataset_fingerprint": "input_digest", "tensor_sha256": "input_digest",
}

__all__ = ["main", "install_early_signal_handlers", *_LAZY]


def __getattr__(name: str) -> Any:
    """The trainer's names, imported on first use (PEP 562)."""
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"experiments.{mod}"), name)


def _signal_exit(stage: str) -> int | None:
    """If a signal arrived during ``stage`` (before the trainer exists): one line, exit status 128 + signal."""
    if not _PENDING:
        return None
    signum = _PENDING[0]
    print(f"python -m experiments.train: {signal.Signals(signum).name} received during {stage}: stopped before "
          f"training (nothing to save)", file=sys.stderr, flush=True)
    return 128 + signum


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from .train_config import TrainConfig

    from runio.cli import OneLineParser, parse_with_config

    p = OneLineParser(prog="python -m experiments.train", description=__doc__.splitlines()[0])
    d = TrainConfig.__dataclass_fields__
    p.add_argument("--dataset", default="synthetic", help="synthetic|fashion-mnist|cifar10|cifar100|folder")
    p.add_argument("--root", default=None, help="dataset directory")
    p.add_argument("--classes", type=int, default=None, help="C'-way training on a random class subset")
    p.add_argument("--class-seed", type=int, default=0)
    p.add_argument("--losses", nargs="+", default=list(d["losses"].default))
    p.add_argument("--aug-preset", default=None, help="SimCLRAugment.for_dataset name (App. A settings)")
    for name in ("arch", "optimizer", "device", "anchors"):
        p.add_argument(f"--{name.replace('_', '-')}", default=d[name].default)
    for name in ("width", "tau", "lr", "momentum", "weight_decay", "warmup_epochs", "grad_clip", "aug_strength",
                 "label_noise"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=d[name].default)
    for name in ("proj_hidden", "proj_dim", "batch_size", "epochs", "init_seed", "order_seed", "aug_seed",
                 "ckpt_every", "label_noise_seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=d[name].default)
    for name in ("aug_blur", "bf16", "channels_last", "compile", "sync_bn", "digest"):
        p.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=d[name].default)
    p.add_argument("--out", required=True, help="output directory (manifest.json, history.json, ckpt.pt)")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--quiet", action="store_true")
    return parse_with_config(p, argv, exclude=("out", "resume"))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: train a lockstep run; under torchrun every rank runs this (DDP over the global batch)."""
    if not _TRAINER and signal.getsignal(signal.SIGTERM) is not _early_handler:
        old = install_early_signal_handlers()  # called as a function (tests): restored at the end
    else:
        old = {}
    from . import distributed as ddp
    from .data import class_subset, load_dataset
    from .lockstep import LockstepTrainer, TrainingDiverged
    from .train_config import TrainConfig

    from runio.cli import fail, record
    from runio.outdir import OutDirLock
    from runio.records import write_json

    ctx = None
    lock = None
    try:
        args = _parse(argv)
        if (rc := _signal_exit("start-up")) is not None:
            return rc
        ctx = ddp.init_from_env()
        kw = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
        kw["losses"] = tuple(args.losses)
        kw["out_dir"] = args.out
        if ctx is not None and ctx.backend == "nccl":
            kw["device"] = f"cuda:{ctx.local_rank}"
        cfg = TrainConfig(**kw)
        if ctx is None or ctx.rank == 0:  # the writing rank holds --out (one run per directory)
            lock = OutDirLock(args.out).acquire()
        ds = load_dataset(args.dataset, root=args.root)
        if args.classes is not None:
            ds = class_subset(ds, args.classes, args.class_seed)
        if (rc := _signal_exit("data loading")) is not None:
            return rc
        if args.resume:
            trainer = LockstepTrainer.resume(args.resume, ds, cfg, dist=ctx, quiet=args.quiet)
        else:
            trainer = LockstepTrainer(cfg, ds, dist=ctx, quiet=args.quiet)
        _TRAINER[:] = [trainer]
        if lock is not None:  # the run record, after the resume checks: python -m experiments.train --config OUT/config.json
            write_json(Path(args.out) / "config.json", record(args, exclude=("config", "out", "resume", "quiet"),
                                                              command_line=[sys.argv[0], *(sys.argv[1:] if argv is None else argv)]))
        if _PENDING:  # arrived while the trainer was built: it trains one step, saves and stops
            trainer._on_signal(_PENDING[0], None)
        trainer.fit()
        trainer.close()
        if trainer.is_main:
            last = trainer.history[-1]["loss"] if trainer.history else {}
            print(json.dumps({"step": trainer.step, "final_loss": last, "out": args.out}))
    except (ValueError, FileNotFoundError, TrainingDiverged) as e:
        return fail("python -m experiments.train", e)
    finally:
        if lock is not None:
            lock.release()
        ddp.destroy()
        _TRAINER.clear()
        _PENDING.clear()
        for sig, h in old.items():
            signal.signal(sig, h)
    return 0


if __name__ == "__main__":
    sys.exit(main())
