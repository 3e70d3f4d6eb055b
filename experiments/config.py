"""Configuration of ``python -m experiments.bound_vs_empirical``: defaults <- config file <- command-line flags.

One flat set of keys (``RunConfig`` fields). A JSON file (a run's own ``config.json`` included, so a run can be
repeated from its record) or a TOML file (``--config run.toml``, read by ``runio.config.load_config``) may
give them at top level or grouped in one level of tables whose names are free (``[data]``, ``[model]``,
``[train]``, ...); dashes and underscores in keys are equivalent. Flags given on the command line override the
file, the file overrides the defaults. Every problem (unknown key, wrong type, value out of range, unreadable
file, bad flag) raises ONE-line ``ValueError``; the CLI prints it as ``error: ...`` and exits with status 2.

Example ``run.toml``::

    [data]
    dataset = "synthetic"
    classes = 5            # C'-way training on a random class subset
    [train]
    losses = ["CL", "NSCL", "SCL", "CE"]
    batch_size = 64
    tau = 0.5
    epochs = 20
    lr = 0.1
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from runio.cli import OneLineParser
from runio.config import check_keys, load_config
from theory.constants import check_delta, check_tau
from theory.losses import LOSS_KINDS

from .models import ARCHS
from .train_config import TrainConfig

__all__ = ["RunConfig", "TRAIN_KEYS", "RUN_CONFIG_KEYS", "CONTRASTIVE", "PAIR_LOSSES", "build_parser", "load_toml", "parse_config", "parse_cli", "config_from_dict"]

#: losses a model can be trained with (the same set as experiments.train.TRAIN_LOSSES)
PAIR_LOSSES = LOSS_KINDS + ("CE",)
#: self-supervised contrastive losses; the first present in ``losses`` is "the CL model" of the run
CONTRASTIVE = ("CL", "DCL")
DATASETS = ("synthetic", "fashion-mnist", "cifar10", "cifar100", "folder")


#: TrainConfig fields a RunConfig carries (not out_dir / ckpt_every: bound_vs_empirical writes its own files)
_TRAINER_ONLY = ("out_dir", "ckpt_every")
TRAIN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig) if f.name not in _TRAINER_ONLY)


def _unknown_keys(bad: list[str]) -> str:
    keys = ", ".join(repr(k) for k in bad)
    return (f"unknown config key{'s' if len(bad) > 1 else ''} {keys} for RunConfig; expected a subset of "
            f"{', '.join(sorted(RUN_CONFIG_KEYS))}")


@dataclass(init=False)
class RunConfig:
    """Everything that determines one bound-vs-empirical run (written to ``config.json``).

    Data: ``dataset`` (synthetic | fashion-mnist | cifar10 | cifar100 | folder), ``data_root``, ``classes``
    (C'-way training on a random class subset drawn by ``class_seed``; None = all classes), ``train_size``
    (a fixed class-balanced subset of the training set, drawn by ``data_seed``; None = all), synthetic only:
    ``n_per_class`` / ``test_per_class`` / ``image_size`` / ``data_seed``. Reference sets: ``ref_train``
    samples of the training set and ``ref_test`` of the test set (class-balanced, ``ref_seed``), on which every
    alignment metric is computed; ``ref_batch`` samples with two fixed augmented views form the reference batch
    of the loss-gap and Lem. 7 / Thm. 2 measurements.
    Training (experiments.train.TrainConfig): losses, arch, width, proj_hidden, proj_dim, batch_size, tau,
    anchors, epochs, optimizer, lr, momentum, weight_decay, warmup_epochs, grad_clip, aug_strength, device,
    bf16, init_seed, order_seed, aug_seed; ``threads``: torch CPU threads of the CLI process (0 = default).
    ``eval_every``: steps between evaluations (0 = once per epoch).
    Theory: ``delta`` (confidence of Cor. 3), ``pairs`` (extra "A-B" pairs to measure), ``theory`` (estimate
    G, beta and check Lem. 7 / Thm. 2 at every evaluation), ``g_pairs`` (sampled pairs for G), ``beta_dirs``
    (random finite-difference directions for beta, besides w^NSCL - w^CL and the last step), ``fd_rel``
    (finite-difference step relative to ||w||), ``theory_evals``: number of evaluations (evenly spaced, first and
    last included; 0 = all) at which the costly measurements run (G, beta, Lem. 7, Thm. 2, loss gap, linear
    probe, L_Sigma, M_Sigma); CKA / RSA / bounds / NCCC / weight gaps / surrogate drift run at every evaluation.
    ``surrogate``: run the Sigma-space surrogate alongside (App. C); ``surrogate_constants``: estimate
    L_Sigma (power iteration) and M_Sigma (JVP remainder) for Eqs. 8-9.
    Probe: ``lp_iters`` LBFGS iterations, ``lp_l2`` ridge penalty of the linear probe.
    """

    # data
    dataset: str = "synthetic"
    data_root: str | None = None
    classes: int | None = None
    class_seed: int = 0
    train_size: int | None = None
    n_per_class: int = 100
    test_per_class: int = 40
    image_size: int = 32
    data_seed: int = 0
    ref_train: int = 400
    ref_test: int = 400
    ref_seed: int = 0
    ref_batch: int = 128
    # model / training: the training options live in ``train`` (one owner: TrainConfig, same defaults as
    # ``python -m experiments.train``); they read and write as flat attributes (cfg.tau, cfg.batch_size, ...)
    pairs: tuple[str, ...] = ()
    eval_every: int = 0
    threads: int = 0
    # theory
    delta: float = 0.01
    theory: bool = True
    theory_evals: int = 5
    g_pairs: int = 16
    beta_dirs: int = 1
    fd_rel: float = 1e-3
    theory_seed: int = 0
    surrogate: bool = False
    surrogate_constants: bool = True
    # probe
    lp_iters: int = 100
    lp_l2: float = 1e-4
    # output
    out: str = "runs/bound_vs_empirical"
    checkpoint_every: int = 1
    save_weights: bool | None = None
    figures: bool = True
    quiet: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)

    def __init__(self, train: TrainConfig | Mapping[str, Any] | None = None, **kw: Any) -> None:
        """``RunConfig(tau=0.7, classes=5, ...)``: run keys and training keys (:data:`TRAIN_KEYS`) side by side;
        ``train``: a TrainConfig (or dict) the training keys start from. One-line ValueError for unknown keys."""
        own = [f for f in fields(RunConfig) if f.name != "train"]
        names = {f.name for f in own}
        bad = sorted(k for k in kw if k not in names and k not in TRAIN_KEYS)
        if bad:
            raise ValueError(_unknown_keys(bad))
        for f in own:
            object.__setattr__(self, f.name, kw.get(f.name, f.default))
        base = {} if train is None else (train.to_dict() if isinstance(train, TrainConfig) else dict(train))
        bad = sorted(k for k in base if k not in TRAIN_KEYS and k not in _TRAINER_ONLY)
        if bad:
            raise ValueError(_unknown_keys(bad))
        base.update({k: v for k, v in kw.items() if k in TRAIN_KEYS})
        for k in list(base):
            if k in _KINDS:  # the flat config's coercions ("CL,nscl" -> ("CL", "NSCL"), ...)
                base[k] = _coerce(k, base[k], _KINDS[k])
        base.update(out_dir=None, ckpt_every=0)  # bound_vs_empirical writes its own files and checkpoints
        object.__setattr__(self, "train", TrainConfig(**base))
        self.validate()

    @staticmethod
    def keys() -> tuple[str, ...]:
        """Every key a config file, a flag set or ``config.json`` may give: the run keys then :data:`TRAIN_KEYS`."""
        return RUN_CONFIG_KEYS

    # ---------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Type- and range-check every field; raise a one-line ValueError naming the first bad one."""
        for f in fields(self):
            if f.name == "train":
                continue
            v = getattr(self, f.name)
            kind = _KINDS[f.name]
            setattr(self, f.name, _coerce(f.name, v, kind))
        self.train.validate()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got dataset={self.dataset!r}")
        if self.dataset in ("cifar10", "cifar100", "folder") and self.data_root is None:
            raise ValueError(f"dataset={self.dataset!r} needs data_root (--data-root DIR), got data_root=None")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got arch={self.arch!r}")
        if self.optimizer not in ("sgd", "lars"):
            raise ValueError(f"optimizer must be 'sgd' or 'lars', got optimizer={self.optimizer!r}")
        if self.anchors not in ("both", "first"):
            raise ValueError(f"anchors must be 'both' or 'first', got anchors={self.anchors!r}")
        if not self.losses:
            raise ValueError("losses must name at least CL (or DCL) and NSCL, got losses=()")
        for name in self.losses:
            if name not in PAIR_LOSSES:
                raise ValueError(f"losses must be drawn from {PAIR_LOSSES}, got unknown loss {name!r}")
        if len(set(self.losses)) != len(self.losses):
            raise ValueError(f"losses must not repeat a loss, got losses={self.losses!r}")
        if not any(c in self.losses for c in CONTRASTIVE):
            raise ValueError(f"losses must include a contrastive model CL or DCL, got losses={self.losses!r}")
        if "NSCL" not in self.losses:
            raise ValueError(f"losses must include NSCL (the bounds compare CL with NSCL), got losses={self.losses!r}")
        for p in self.pairs:
            a, b = _split_pair(p)
            for x in (a, b):
                if x not in self.losses:
                    raise ValueError(f"pair {p!r} names {x!r}, which is not in losses={self.losses!r}")
        self.tau = check_tau(self.tau)
        self.delta = check_delta(self.delta)
        if self.train_size is not None and self.train_size < self.batch_size:
            raise ValueError(f"train_size must be >= batch_size={self.batch_size}, got train_size={self.train_size}")
        if self.classes is not None and self.classes < 2:
            raise ValueError(f"classes must be an integer >= 2 (C'-way training), got classes={self.classes!r}")
        for name in ("n_per_class", "test_per_class", "image_size", "ref_train", "ref_test", "epochs",
                     "proj_dim", "g_pairs", "lp_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={getattr(self, name)!r}")
        for name in ("ref_batch", "batch_size"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {name}={getattr(self, name)!r}")
        if self.ref_batch > self.ref_train:
            raise ValueError(f"ref_batch must be <= ref_train={self.ref_train}, got ref_batch={self.ref_batch}")
        for name in ("class_seed", "data_seed", "ref_seed", "init_seed", "order_seed", "aug_seed", "theory_seed",
                     "eval_every", "beta_dirs", "theory_evals", "threads", "label_noise_seed", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {name}={getattr(self, name)!r}")
        for name in ("width", "lr", "fd_rel"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {name}={getattr(self, name)!r}")
        for name in ("momentum", "weight_decay", "warmup_epochs", "grad_clip", "aug_strength", "lp_l2"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={getattr(self, name)!r}")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got label_noise={self.label_noise!r}")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got momentum={self.momentum!r}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be <= epochs={self.epochs}, got warmup_epochs={self.warmup_epochs!r}")
        if self.device != "cpu" and not (self.device == "auto" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'auto', 'cuda' or 'cuda:N', got device={self.device!r}")

    # ---------------------------------------------------------------------------------------------------
    @property
    def contrastive(self) -> str:
        """The run's self-supervised model: CL if trained, else DCL."""
        return next(c for c in CONTRASTIVE if c in self.losses)

    def pair_list(self) -> list[tuple[str, str]]:
        """(CL, X) for every other trained model X, then the extra ``pairs`` (deduplicated, order kept)."""
        cl = self.contrastive
        out = [(cl, x) for x in self.losses if x != cl]
        for p in self.pairs:
            ab = _split_pair(p)
            if ab not in out and ab[::-1] not in out and ab[0] != ab[1]:
                out.append(ab)
        return out

    def train_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the run's TrainConfig (out_dir None: this CLI writes its own files)."""
        return self.train.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Flat dict (the run keys, then the training keys): what ``config.json`` holds and the loaders read."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "train"}
        d["pairs"] = list(self.pairs)
        t = self.train.to_dict()
        d.update({k: t[k] for k in TRAIN_KEYS})
        return d


class _TrainKey:
    """A training key of RunConfig: read and written through ``cfg.train``; on the class, TrainConfig's default
    (``RunConfig.batch_size`` == ``TrainConfig.batch_size`` == 64)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.default = TrainConfig.__dataclass_fields__[name].default

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self.default if obj is None else getattr(obj.train, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.train, self.name, value)


for _k in TRAIN_KEYS:
    setattr(RunConfig, _k, _TrainKey(_k))
del _k

#: every key of a flat RunConfig (config files, flags, config.json): run keys, then the training keys
RUN_CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig) if f.name != "train") + TRAIN_KEYS


# -------------------------------------------------------------------------------------------------------
# field kinds and coercion
_KINDS: dict[str, str] = {
    "dataset": "str", "data_root": "optstr", "classes": "optint", "class_seed": "int", "train_size": "optint", "n_per_class": "int",
    "test_per_class": "int", "image_size": "int", "data_seed": "int", "ref_train": "int", "ref_test": "int",
    "ref_seed": "int", "ref_batch": "int", "losses": "strlist", "pairs": "strlist", "arch": "str",
    "width": "float", "proj_hidden": "optint", "proj_dim": "int", "batch_size": "int", "tau": "float",
    "anchors": "str", "epochs": "int", "optimizer": "str", "lr": "float", "momentum": "float",
    "weight_decay": "float", "warmup_epochs": "float", "grad_clip": "float", "aug_strength": "float",
    "eval_every": "int", "device": "str", "threads": "int", "bf16": "bool", "init_seed": "int", "order_seed": "int",
    "aug_seed": "int", "delta": "float", "theory": "bool", "theory_evals": "int", "g_pairs": "int", "beta_dirs": "int",
    "fd_rel": "float", "theory_seed": "int", "surrogate": "bool", "surrogate_constants": "bool",
    "lp_iters": "int", "lp_l2": "float", "out": "str", "quiet": "bool", "label_noise": "float",
    "label_noise_seed": "int", "checkpoint_every": "int", "save_weights": "optbool",
    "figures": "bool",
}


def _coerce(name: str, v: Any, kind: str) -> Any:
    bad = ValueError(f"{name} must be {_KIND_WORDS[kind]}, got {name}={v!r}")
    if kind in ("optstr", "optint", "optbool") and v is None:
        return None
    if kind in ("str", "optstr"):
        if isinstance(v, Path):
            return str(v)
        if not isinstance(v, str) or not v:
            raise bad
        return v
    if kind in ("int", "optint"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad
        return int(v)
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad
        return float(v)
    if kind in ("bool", "optbool"):
        if not isinstance(v, bool):
            raise bad
        return v
    if kind == "strlist":
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
            raise bad
        parts = [t for s in v for t in s.replace(",", " ").split() if t]  # "CL,NSCL" or ["CL", "NSCL"]
        return tuple(t.upper() for t in parts)
    raise AssertionError(kind)


_KIND_WORDS = {"str": "a non-empty string", "optstr": "a string or absent", "int": "an integer",
               "optint": "an integer or absent", "float": "a number", "bool": "true or false",
               "optbool": "true, false or absent (auto)",
               "strlist": "a list of names"}


def _split_pair(p: str) -> tuple[str, str]:
    parts = [s.strip().upper() for s in str(p).replace(":", "-").split("-")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"pairs must look like 'CL-SCL', got pair {p!r}")
    return parts[0], parts[1]


# -------------------------------------------------------------------------------------------------------
# config file (TOML or JSON)
def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file -- TOML (one level of tables, flattened) or JSON, a run's own ``config.json``
    included (runio.config.load_config) -- and check its keys against the RunConfig fields.

    Raises a one-line ValueError for a missing / unreadable file, a syntax error, an unknown key, a key given
    twice (e.g. in two tables) or a nested table.
    """
    doc = load_config(path)
    check_keys(doc, RUN_CONFIG_KEYS, f" in {str(path)!r} (RunConfig)")
    return doc


# -------------------------------------------------------------------------------------------------------
# command line
def _bool_flag(p: argparse.ArgumentParser, name: str, help: str) -> None:
    dest = name.replace("-", "_")
    p.add_argument(f"--{name}", dest=dest, action="store_true", default=argparse.SUPPRESS, help=help)
    p.add_argument(f"--no-{name}", dest=dest, action="store_false", default=argparse.SUPPRESS)


def build_parser(prog: str = "python -m experiments.bound_vs_empirical") -> argparse.ArgumentParser:
    """The CLI; every option defaults to SUPPRESS so that only flags actually given override the TOML file."""
    d = RunConfig()
    S = argparse.SUPPRESS
    p = OneLineParser(prog=prog, raise_errors=True, description="Train CL and NSCL (and optionally SCL, CE, DCL) in lockstep and compare "
                "measured CKA / RSA with the certified lower bounds of Cors. 1-2 (Thm. 1), Lem. 7 and Thm. 2.",
                argument_default=S)
    p.add_argument("--config", metavar="FILE", help="TOML or JSON file with any of the options below, or a run's "
                   "config.json (flags win)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (default {d.dataset})")
    g.add_argument("--data-root", dest="data_root", help="dataset directory (cifar10/100, folder, fashion-mnist)")
    g.add_argument("--classes", type=int, help="C'-way training: number of classes drawn at random (default: all)")
    g.add_argument("--class-seed", dest="class_seed", type=int)
    g.add_argument("--train-size", dest="train_size", type=int,
                   help="train on a fixed class-balanced subset of this many images (default: all)")
    g.add_argument("--n-per-class", dest="n_per_class", type=int, help=f"synthetic: train images per class ({d.n_per_class})")
    g.add_argument("--test-per-class", dest="test_per_class", type=int, help=f"synthetic: test images per class ({d.test_per_class})")
    g.add_argument("--image-size", dest="image_size", type=int, help=f"synthetic: image side ({d.image_size})")
    g.add_argument("--data-seed", dest="data_seed", type=int)
    g.add_argument("--ref-train", dest="ref_train", type=int, help=f"train reference set size ({d.ref_train})")
    g.add_argument("--ref-test", dest="ref_test", type=int, help=f"test reference set size ({d.ref_test})")
    g.add_argument("--ref-seed", dest="ref_seed", type=int)
    g.add_argument("--ref-batch", dest="ref_batch", type=int, help=f"reference batch for loss gap / Lem. 7 ({d.ref_batch})")
    g = p.add_argument_group("model and training")
    g.add_argument("--losses", nargs="+", help=f"models to train, e.g. CL NSCL SCL CE DCL (default {' '.join(d.losses)})")
    g.add_argument("--pairs", nargs="+", help="extra pairs to measure, e.g. NSCL-SCL")
    g.add_argument("--arch", help=f"one of {', '.join(ARCHS)} ({d.arch})")
    g.add_argument("--width", type=float, help=f"width multiplier ({d.width})")
    g.add_argument("--proj-hidden", dest="proj_hidden", type=int)
    g.add_argument("--proj-dim", dest="proj_dim", type=int)
    g.add_argument("--batch-size", "-B", dest="batch_size", type=int, help=f"B ({d.batch_size})")
    g.add_argument("--tau", type=float, help=f"temperature ({d.tau})")
    g.add_argument("--anchors", help="both (SimCLR, 2B anchors) or first (paper, B anchors)")
    g.add_argument("--epochs", type=int, help=f"({d.epochs})")
    g.add_argument("--optimizer", help="sgd or lars (default sgd; plain SGD is what Thm. 2 assumes)")
    g.add_argument("--lr", type=float, help=f"base learning rate eta ({d.lr}); warm-up then cosine per step")
    g.add_argument("--momentum", type=float, help=f"({d.momentum})")
    g.add_argument("--weight-decay", dest="weight_decay", type=float)
    g.add_argument("--warmup-epochs", dest="warmup_epochs", type=float)
    g.add_argument("--grad-clip", dest="grad_clip", type=float)
    g.add_argument("--aug-strength", dest="aug_strength", type=float)
    g.add_argument("--eval-every", dest="eval_every", type=int, help="steps between evaluations (0 = every epoch)")
    g.add_argument("--device", help="cpu (default), auto, cuda, cuda:N")
    g.add_argument("--threads", type=int, help="torch CPU threads for this process (0 = torch's default; 1 is "
                   "much faster for tiny models on a busy machine)")
    _bool_flag(g, "bf16", "bf16 autocast (CUDA only)")
    g.add_argument("--init-seed", dest="init_seed", type=int)
    g.add_argument("--order-seed", dest="order_seed", type=int)
    g.add_argument("--aug-seed", dest="aug_seed", type=int)
    g.add_argument("--label-noise", dest="label_noise", type=float,
                   help="random-label control: each training label the supervised losses (NSCL, SCL, CE) see is "
                        "replaced with probability p by a uniform draw (1 = random labels; evaluation and probes "
                        f"use the true labels) ({d.label_noise})")
    g.add_argument("--label-noise-seed", dest="label_noise_seed", type=int)
    g = p.add_argument_group("theory")
    g.add_argument("--delta", type=float, help=f"confidence delta of Cor. 3 ({d.delta})")
    _bool_flag(g, "theory", "estimate G, beta; check Lem. 7 and Thm. 2 (default on)")
    g.add_argument("--theory-evals", dest="theory_evals", type=int,
                   help=f"evaluations (evenly spaced, first and last included) with the costly checks: G, beta, "
                        f"Lem. 7, Thm. 2, linear probe, L_Sigma, M_Sigma ({d.theory_evals}; 0 = all)")
    g.add_argument("--g-pairs", dest="g_pairs", type=int)
    g.add_argument("--beta-dirs", dest="beta_dirs", type=int)
    g.add_argument("--fd-rel", dest="fd_rel", type=float)
    g.add_argument("--theory-seed", dest="theory_seed", type=int)
    _bool_flag(g, "surrogate", "run the Sigma-space surrogate alongside (App. C)")
    _bool_flag(g, "surrogate-constants", "estimate L_Sigma and M_Sigma for Eqs. 8-9 (default on)")
    g = p.add_argument_group("probe and output")
    g.add_argument("--lp-iters", dest="lp_iters", type=int)
    g.add_argument("--lp-l2", dest="lp_l2", type=float)
    g.add_argument("--out", help=f"output directory ({d.out})")
    g.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                   help=f"epochs between checkpoints (out/ckpt.pt; 0 = none) ({d.checkpoint_every})")
    _bool_flag(g, "figures", "draw alignment / theory / surrogate figures (PNG + PDF) at the end (default on)")
    _bool_flag(g, "save-weights", "write weights_init.pt / weights_final.pt (default: on for models with at most "
               "5M parameters)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint "
                   "(refused if the config differs; a finished run is left as it is)")
    _bool_flag(p, "quiet", "no progress bar, no table")
    _show_defaults(p, d)
    return p


def _show_defaults(p: argparse.ArgumentParser, d: "RunConfig") -> None:
    """--help names every option's RunConfig default (the options default to SUPPRESS, so argparse cannot)."""
    for a in p._actions:
        if not a.option_strings or a.option_strings[0].startswith("--no-") or a.dest in ("help", "config"):
            continue
        try:
            v = getattr(d, a.dest)
        except AttributeError:
            continue
        shown = (" ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) or "none"
        if a.help is None or (shown not in a.help and "default" not in a.help):
            a.help = (f"{a.help} " if a.help else "") + f"(default: {shown})".replace("%", "%%")


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    """RunConfig from a mapping of field names (one-line ValueError for unknown keys / bad values)."""
    return RunConfig(**d)


def parse_cli(argv: Sequence[str] | None = None) -> tuple[RunConfig, bool]:
    """(config, resume): defaults <- TOML (``--config``) <- flags, and whether ``--resume`` was given.
    Raises a one-line ValueError for any bad input."""
    ns = vars(build_parser().parse_args(argv))
    merged: dict[str, Any] = {}
    path = ns.pop("config", None)
    resume = bool(ns.pop("resume", False))
    if path is not None:
        merged.update(load_toml(path))
    merged.update(ns)
    return config_from_dict(merged), resume


def parse_config(argv: Sequence[str] | None = None) -> RunConfig:
    """defaults <- TOML (``--config``) <- flags (``--resume`` is ignored here, see :func:`parse_cli`)."""
    return parse_cli(argv)[0]
