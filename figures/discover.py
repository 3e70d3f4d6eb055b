"""Find result directories by their ``config.json`` and group them by config values (never by folder names).

Two kinds of run directory are recognised, whatever their folder names or nesting:

* encoder runs of ``python -m experiments.bound_vs_empirical`` (also as grid points of ``experiments.sweep``):
  ``config.json`` whose ``config`` has a ``losses`` key, and ``metrics.csv``;
* Sigma-space runs of ``python -m simulate.sigma_descent`` / ``simulate.sweep``: ``config.json`` whose ``config``
  has ``view_slots``, and ``steps.csv`` (plus ``evals.csv`` / ``checks.json``).

Every run gets a unique readable ``name``: its path relative to the common parent of all runs found, ``/``
replaced by ``__`` (``bs/linear/B32`` and ``bs/sqrt/B32`` stay apart; dots as in ``tau0.1`` are kept).

Grouping (``group_runs``): runs that agree on every config key except the swept keys, the replicate keys (seeds)
and the keys that never change a result (``IGNORE``) form one group; the random-label control (``label_noise``
> 0) of a group is grouped with it and drawn beside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from runio import read_csv, read_json

__all__ = ["EncoderRun", "SigmaRun", "Catalog", "Group", "find_runs", "group_runs", "by_value", "IGNORE",
           "ENCODER_SEEDS", "SIGMA_SEEDS", "CONTROL_KEY", "fmt_value", "safe_name"]

#: config keys that never distinguish runs (outputs, measurement options, devices, threads)
IGNORE = frozenset({
    "out", "quiet", "pairs", "eval_every", "theory", "theory_evals", "g_pairs", "beta_dirs", "fd_rel",
    "theory_seed", "surrogate", "surrogate_constants", "lp_iters", "lp_l2", "ref_train", "ref_test", "ref_seed",
    "ref_batch", "device", "bf16", "delta", "losses", "threads", "data_root", "checkpoint_every", "ckpt_every",
    "resume", "compile", "channels_last", "dtype", "plot", "checks", "stop_after", "save_sigma",
    "lemma5_trials", "save_weights", "config", "digest", "figures",
})
#: replicate keys: runs that differ only in these are repeats of one setting (averaged, never dropped)
ENCODER_SEEDS = frozenset({"init_seed", "order_seed", "aug_seed", "data_seed", "label_noise_seed", "seed"})
SIGMA_SEEDS = frozenset({"init_seed", "batch_seed", "aug_seed", "seed"})
#: the random-label control: label_noise = p > 0 (p = 1: labels drawn uniformly at random)
CONTROL_KEY = "label_noise"


def fmt_value(v: Any) -> str:
    """Short readable form of a config value (0.1 -> "0.1", 1.0 -> "1", lists joined by "+")."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(fmt_value(x) for x in v)
    return str(v)


def safe_name(text: str) -> str:
    """File-name-safe, readable: letters, digits, '.', '-', '_', '=' kept; anything else -> '-'."""
    out = "".join(ch if ch.isalnum() or ch in "-_.=" else "-" for ch in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "run"


class _Run:
    """Shared part of a result directory: its path, config.json and unique name."""

    kind = "run"
    seed_keys: frozenset = frozenset()

    def __init__(self, path: Path, doc: dict) -> None:
        self.path = path
        self.doc = doc
        self.config: dict[str, Any] = dict(doc.get("config", {}))
        self.resolved: dict[str, Any] = dict(doc.get("resolved", {}))
        # a sweep runner may record the rule behind a value (e.g. the learning-rate scaling) next to the config
        # the grid point of experiments.sweep (point.json: axes, lr_rule) or a "sweep" entry of config.json
        sweep = doc.get("sweep")
        self.sweep: dict[str, Any] = dict(sweep) if isinstance(sweep, dict) else {}
        if (path / "point.json").is_file():
            try:
                point = read_json(path / "point.json")
            except (OSError, ValueError):
                point = {}
            if isinstance(point, dict):
                self.sweep.update({k: v for k, v in point.items() if k != "config"})
        self.name = path.name

    @property
    def label_noise(self) -> float:
        v = self.config.get(CONTROL_KEY)
        return float(v) if v not in (None, "") else 0.0

    @property
    def is_control(self) -> bool:
        return self.label_noise > 0

    def value(self, key: str) -> Any:
        if key in self.config:
            return self.config[key]
        if key in self.resolved:
            return self.resolved[key]
        return self.sweep.get(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class EncoderRun(_Run):
    """One ``experiments.bound_vs_empirical`` result directory, read back lazily from its files.

    ``metrics`` rows carry ``epoch`` as step / steps_per_epoch (several evaluations per epoch stay distinct)."""

    kind = "encoder"
    seed_keys = ENCODER_SEEDS

    def _rows(self, fname: str) -> list[dict]:
        p = self.path / fname
        if not p.is_file():
            return []
        rows = read_csv(p)
        spe = self.resolved.get("steps_per_epoch")
        if spe:
            for r in rows:
                if r.get("step") is not None and r.get("step") != "":
                    r["epoch"] = float(r["step"]) / float(spe)
        return rows

    @cached_property
    def metrics(self) -> list[dict]:
        return self._rows("metrics.csv")

    @cached_property
    def models(self) -> list[dict]:
        return self._rows("models.csv")

    @cached_property
    def theory(self) -> list[dict]:
        return self._rows("theory.csv")

    @cached_property
    def steps(self) -> list[dict]:
        return self._rows("steps.csv")

    @property
    def C(self) -> int:
        return int(self.resolved.get("C") or self.config.get("classes") or 0)

    @property
    def contrastive(self) -> str:
        c = self.resolved.get("contrastive")
        if c:
            return str(c)
        losses = [str(x) for x in self.config.get("losses", ())]
        return "DCL" if "DCL" in losses and "CL" not in losses else "CL"

    @property
    def losses(self) -> list[str]:
        return [str(x) for x in self.config.get("losses", ())]

    @property
    def epochs(self) -> float:
        return float(self.config.get("epochs") or 0)

    def describe(self, keys: Sequence[str] = ("dataset", "arch")) -> str:
        """Readable one-line setting, e.g. "synthetic, mlp, C'=10, τ=0.5, B=64"."""
        c = self.config
        parts = [fmt_value(c[k]) for k in keys if c.get(k) is not None]
        parts += [f"C'={self.C}", f"τ={fmt_value(c.get('tau'))}", f"B={c.get('batch_size')}"]
        if self.is_control:
            parts.append(f"random labels p={self.label_noise:g}")
        return ", ".join(parts)


class SigmaRun(_Run):
    """One Sigma-space result directory (``simulate.sigma_descent`` or a grid point of ``simulate.sweep``)."""

    kind = "sigma"
    seed_keys = SIGMA_SEEDS

    @cached_property
    def evals(self) -> list[dict]:
        p = self.path / "evals.csv"
        return read_csv(p) if p.is_file() else []

    @cached_property
    def steps(self) -> list[dict]:
        return read_csv(self.path / "steps.csv")

    @property
    def C(self) -> int:
        return int(self.config.get("classes") or 0)


def _read_doc(p: Path) -> dict | None:
    try:
        doc = read_json(p / "config.json")
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("config"), dict) else None


@dataclass
class Catalog:
    """Every run found under some roots, with unique names."""

    encoder: list[EncoderRun] = field(default_factory=list)
    sigma: list[SigmaRun] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.encoder) + len(self.sigma)


def find_runs(roots: Iterable[str | Path]) -> Catalog:
    """Every encoder and Sigma-space run directory under ``roots`` (each root itself or any sub-directory).

    Recognised by config.json content, not by folder names. Names are unique: the path relative to the common
    parent of all runs, with ``/`` -> ``__``."""
    found: dict[Path, _Run] = {}
    roots = [Path(r) for r in roots]
    for r in roots:
        if not r.is_dir():
            continue
        for d in [r, *sorted(x for x in r.rglob("*") if x.is_dir())]:
            if not (d / "config.json").is_file():
                continue
            doc = _read_doc(d)
            if doc is None:
                continue
            cfg = doc["config"]
            key = d.resolve()
            if key in found:
                continue
            if "losses" in cfg and (d / "metrics.csv").is_file():
                found[key] = EncoderRun(key, doc)
            elif "view_slots" in cfg and (d / "steps.csv").is_file():
                found[key] = SigmaRun(key, doc)
    runs = sorted(found.values(), key=lambda x: str(x.path))
    if runs:
        import os

        common = Path(os.path.commonpath([str(x.path) for x in runs]))
        rels = []
        for x in runs:
            rel = x.path.relative_to(common) if x.path != common else Path(x.path.name)
            if str(rel) in ("", "."):
                rel = Path(x.path.name)
            rels.append(rel.parts)
        # sweep runners put grid points under <sweep>/runs/<point>: the "runs" level says nothing, drop it
        short = [tuple(p for p in parts if p != "runs") or parts for parts in rels]
        use = short if len(set(short)) == len(short) else rels
        for x, parts in zip(runs, use):
            x.name = safe_name("__".join(parts))
        names = [x.name for x in runs]
        if len(set(names)) != len(names):  # cannot happen for distinct paths; guard the invariant
            raise ValueError(f"run names collide: {sorted(n for n in names if names.count(n) > 1)}")
    return Catalog([x for x in runs if isinstance(x, EncoderRun)], [x for x in runs if isinstance(x, SigmaRun)],
                   roots)


# ----------------------------------------------------------------------------------------------------------
# grouping
@dataclass
class Group:
    """Runs that differ only in the swept keys, seeds and the random-label control.

    ``key``: the config values shared by the group; ``runs``: every run of the group (controls included);
    ``suffix``: the readable part of the output name that tells this group from the other groups of one figure
    ("" when a figure has one group)."""

    key: dict[str, Any]
    runs: list
    suffix: str = ""

    @property
    def main(self) -> list:
        return [r for r in self.runs if not r.is_control]

    @property
    def controls(self) -> list:
        return [r for r in self.runs if r.is_control]

    def title(self) -> str:
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in self.key.items() if k in self._differs) or ""

    _differs: tuple = ()


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return v


def group_runs(runs: Sequence, vary: Iterable[str], by: Callable[[Any], Any] | None = None,
               min_values: int = 2) -> list[Group]:
    """Groups of runs that agree on every config key except ``vary``, their seeds, ``IGNORE`` and the control
    key; a group is kept if its non-control runs (or, with none, its controls) take >= ``min_values`` distinct
    values of ``by(run)`` (default: the tuple of the ``vary`` values). Every run of a kept group is in it.

    Each group gets a ``suffix`` naming the config values that tell it from the other kept groups (readable,
    unique; "" if only one group)."""
    vary = set(vary)
    if by is None:
        keys = sorted(vary)

        def by(r):
            return tuple(_hashable(r.value(k)) for k in keys)

    buckets: dict[Any, list] = {}
    keydicts: dict[Any, dict] = {}
    for r in runs:
        skip = IGNORE | vary | r.seed_keys | {CONTROL_KEY}
        # a key set to None counts as absent: runs written before a new option existed group with later ones
        kd = {k: v for k, v in sorted(r.config.items()) if k not in skip and v is not None}
        if isinstance(r, EncoderRun):  # extra models do not change the lockstep pair; the contrastive loss does
            kd["contrastive"] = r.contrastive
        hk = _hashable(kd)
        buckets.setdefault(hk, []).append(r)
        keydicts[hk] = kd
    groups = []
    for hk, rs in buckets.items():
        main = [r for r in rs if not r.is_control] or rs
        if len({by(r) for r in main}) >= min_values:
            groups.append(Group(keydicts[hk], rs))
    # suffix: the keys whose values differ between kept groups
    if len(groups) > 1:
        allk = sorted({k for g in groups for k in g.key})
        differs = [k for k in allk if len({json.dumps(g.key.get(k), sort_keys=True, default=str) for g in groups}) > 1]
        for g in groups:
            g._differs = tuple(differs)
            g.suffix = safe_name("_".join(f"{k}={fmt_value(g.key.get(k))}" for k in differs))
    groups.sort(key=lambda g: g.suffix)
    seen: dict[str, int] = {}
    for g in groups:  # equal suffixes cannot arise from distinct keys; guard the unique-name promise anyway
        n = seen.get(g.suffix, 0)
        seen[g.suffix] = n + 1
        if n:
            g.suffix = f"{g.suffix}_{n + 1}" if g.suffix else f"group{n + 1}"
    return groups


def by_value(runs: Sequence, key: Callable[[Any], Any]) -> list[tuple[Any, list]]:
    """[(value, runs with that value)] sorted by value: the replicates (seeds) of one swept value together."""
    out: dict[Any, list] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return sorted(out.items(), key=lambda kv: kv[0])
