"""A sweep file: one base ``bound_vs_empirical`` run and a grid over any of its options -> named grid points.

Read by ``python -m experiments.sweep CONFIG.toml`` (see experiments/sweep.py for the CLI and the CSV layout).

File layout (TOML)::

    [sweep]                      # how to run (none of these changes a run's numbers)
    name = "fig3_classes"        # default: the file's stem
    description = "Fig. 3/7: CL-NSCL alignment vs C'"
    out = "runs/small/fig3_classes"   # default runs/<scale>/<name>; relative to the working directory
    scale = "small"              # small | paper (a label; dry-run cost estimates use it)
    launcher = "local"           # local | slurm | submitit-local
    jobs = 2                     # local: concurrent runs (CPU) ; GPUs: one run per visible GPU
    threads = 1                  # torch CPU threads per run (local launcher)
    nproc_per_node = 1           # > 1: each run is launched by torchrun (DDP) with this many processes
    [base]                       # RunConfig fields (experiments/config.py), plus the pseudo-keys below
    dataset = "fashion-mnist"
    epochs = 3
    [grid]                       # the product of every axis, in file order (the first varies slowest)
    classes = [2, 5, 10]
    class_seed = [0, 1]
    lr_rule = ["linear", "sqrt", "fourth_root", "constant"]
    data = [ {name = "fmnist", dataset = "fashion-mnist"},   # a "bundle" axis: each value is a table of
             {name = "synth", dataset = "synthetic"} ]        # fields set together, named by its ``name``
    [slurm]                      # passed to submitit's executor.update_parameters (slurm launcher only)
    timeout_min = 1440
    slurm_partition = "gpu"

Pseudo-keys (allowed in ``[base]``, ``[grid]`` and bundles):

* ``lr_rule``: the learning rate as a function of B (paper Sec. 5, Fig. 5): ``linear`` 0.3 B/256,
  ``sqrt`` 0.3 sqrt(B)/256, ``fourth_root`` 0.3 B^(1/4)/256, ``constant`` 0.3, ``paper`` 0.3 floor(B/256)
  (the Methods paragraph), ``none`` (``lr`` as given). ``lr_base`` replaces the 0.3.
* ``seed``: s sets (init_seed, order_seed, aug_seed) = (3 s, 3 s + 1, 3 s + 2); s = 0 gives the defaults.
* ``n_train_hint`` / ``classes_hint`` / ``image_size_hint``: training-set size, class count and image side of a
  ``folder`` dataset, used only by the dry-run cost estimate (the loader is not run for a dry run).

Run directories are named by the grid values only, ``key-value`` parts joined by ``__`` in grid order
(``C-5__cseed-1__tau-0p5__lr-sqrt``): a dot becomes ``p`` and a minus sign ``m`` so no tool cuts the name at a
dot; strings outside ``[A-Za-z0-9+-]`` (single inner ``_`` allowed) get a short hash of the raw value; the name does not depend on the other
grid points (stable when the grid grows). A grid without axes has one point named ``base``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LR_RULES", "PSEUDO_KEYS", "GridPoint", "SweepSpec", "lr_from_rule", "load_sweep", "parse_sweep",
           "expand_grid", "point_name", "value_label", "parse_shard", "select_shard"]

#: learning rate as a function of B (Sec. 5 and Fig. 5); the constant 0.3 is ``lr_base``
LR_RULES = ("linear", "sqrt", "fourth_root", "constant", "paper", "none")
PSEUDO_KEYS = ("lr_rule", "lr_base", "seed", "n_train_hint", "classes_hint", "image_size_hint")
LAUNCHERS = ("local", "slurm", "submitit-local")
SCALES = ("small", "paper")
_SWEEP_KEYS = {"name": str, "description": str, "out": str, "scale": str, "launcher": str, "jobs": int,
               "threads": int, "nproc_per_node": int, "gpus": (str, int, list)}
#: short names used in run-directory names
ABBREV = {"classes": "C", "class_seed": "cseed", "batch_size": "B", "lr_rule": "lr", "dataset": "data",
          "label_noise": "noise", "epochs": "ep", "losses": "losses", "n_per_class": "npc", "data_seed": "dseed",
          "init_seed": "iseed", "order_seed": "oseed", "aug_seed": "aseed", "train_size": "ntrain",
          "weight_decay": "wd", "warmup_epochs": "warm", "optimizer": "opt", "image_size": "img"}


def lr_from_rule(rule: str, batch_size: int, base: float = 0.3) -> float:
    """Learning rate of ``rule`` at batch size B (paper Sec. 5 'Effect of batch size'; Methods: 0.3 floor(B/256)).

    >>> lr_from_rule("sqrt", 1024)   # 0.3 * 32 / 256
    0.0375
    """
    if rule not in LR_RULES or rule == "none":
        raise ValueError(f"lr_rule must be one of {LR_RULES[:-1]}, got lr_rule={rule!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size!r}")
    if not (isinstance(base, (int, float)) and not isinstance(base, bool) and math.isfinite(base) and base > 0):
        raise ValueError(f"lr_base must be a finite number > 0, got lr_base={base!r}")
    B = batch_size
    factor = {"linear": B / 256, "sqrt": math.sqrt(B) / 256, "fourth_root": B ** 0.25 / 256, "constant": 1.0,
              "paper": math.floor(B / 256)}[rule]
    if factor <= 0:
        raise ValueError(f"lr_rule='paper' needs batch_size >= 256 (0.3 floor(B/256) = 0), got batch_size={B}")
    return float(base) * factor


# ----------------------------------------------------------------------------------------------------------
# naming
def value_label(v: Any) -> str:
    """A file-name-safe, readable, injective-enough label of one grid value (no dots).

    1 -> '1', 0.5 -> '0p5', -0.1 -> 'm0p1', 1e-06 -> '1em06', True -> 'on', None -> 'none',
    ['CL', 'NSCL'] -> 'CL+NSCL', 'fashion-mnist' -> 'fashion-mnist', 'small_cnn' -> 'small_cnn',
    'a/b' -> 'a-b-<hash>', 'a__b' -> 'a-b-<hash>' (``__`` separates the parts of a name).
    """
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int):
        return str(v).replace("-", "m")
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            s = str(int(v))
        else:
            s = repr(v)
        return s.replace("-", "m").replace("+", "").replace(".", "p")
    if isinstance(v, (list, tuple)):
        return "+".join(value_label(x) for x in v)
    s = str(v)
    if re.fullmatch(r"[A-Za-z0-9+-]+(_[A-Za-z0-9+-]+)*", s):  # single inner underscores: 'small_cnn', 'fourth_root'
        return s
    safe = re.sub(r"[^A-Za-z0-9+-]+", "-", s).strip("-")[:24] or "x"
    return f"{safe}-{hashlib.sha1(s.encode()).hexdigest()[:6]}"


def point_name(axes: dict[str, Any]) -> str:
    """Directory name of a grid point from its axis values (grid order): ``key-value`` joined by ``__``."""
    if not axes:
        return "base"
    return "__".join(f"{ABBREV.get(k, k.replace('_', ''))}-{value_label(v)}" for k, v in axes.items())


# ----------------------------------------------------------------------------------------------------------
@dataclass
class GridPoint:
    """One run of a sweep: ``name`` (its directory), ``axes`` (grid values, by axis), ``config`` (RunConfig fields,
    ``out`` set to the run directory), ``hints`` (cost-estimate hints) and ``lr_rule``."""

    name: str
    axes: dict[str, Any]
    config: dict[str, Any]
    hints: dict[str, Any] = field(default_factory=dict)
    lr_rule: str = "none"


@dataclass
class SweepSpec:
    """A parsed sweep file (see the module docstring)."""

    name: str
    path: str
    out: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    description: str = ""
    scale: str = "small"
    launcher: str = "local"
    jobs: int = 1
    threads: int = 1
    nproc_per_node: int = 1
    gpus: Any = "auto"
    slurm: dict[str, Any] = field(default_factory=dict)

    @property
    def runs_dir(self) -> Path:
        return Path(self.out) / "runs"


def _norm(k: str) -> str:
    return k.strip().replace("-", "_")


def _known_fields() -> set[str]:
    from .config import RunConfig

    return set(RunConfig.keys())  # the flat keys (the training keys live in RunConfig.train)


def parse_sweep(raw: dict[str, Any], path: str | Path = "<dict>") -> SweepSpec:
    """SweepSpec from the TOML mapping; one-line ValueError naming the offending key for anything malformed."""
    where = f"in {str(path)!r}"
    known = _known_fields()
    for top in raw:
        if top not in ("sweep", "base", "grid", "slurm"):
            raise ValueError(f"unknown table [{top}] {where} (expected [sweep], [base], [grid], [slurm])")
        if not isinstance(raw[top], dict):
            raise ValueError(f"[{top}] must be a table {where}, got {type(raw[top]).__name__}")
    sw = {_norm(k): v for k, v in raw.get("sweep", {}).items()}
    for k, v in sw.items():
        if k not in _SWEEP_KEYS:
            raise ValueError(f"unknown key {k!r} in [sweep] {where} (known: {', '.join(sorted(_SWEEP_KEYS))})")
        if isinstance(v, bool) or not isinstance(v, _SWEEP_KEYS[k]):
            raise ValueError(f"[sweep] {k} has the wrong type {where}, got {k}={v!r}")
    name = sw.get("name") or Path(str(path)).stem
    scale = sw.get("scale", "small")
    if scale not in SCALES:
        raise ValueError(f"[sweep] scale must be one of {SCALES}, got scale={scale!r}")
    launcher = sw.get("launcher", "local")
    if launcher not in LAUNCHERS:
        raise ValueError(f"[sweep] launcher must be one of {LAUNCHERS}, got launcher={launcher!r}")
    for k in ("jobs", "threads", "nproc_per_node"):
        if k in sw and sw[k] < 1:
            raise ValueError(f"[sweep] {k} must be an integer >= 1, got {k}={sw[k]!r}")
    base = {}
    for k, v in raw.get("base", {}).items():
        nk = _norm(k)
        if nk not in known and nk not in PSEUDO_KEYS:
            raise ValueError(f"unknown key {k!r} in [base] {where} (a RunConfig field or one of {PSEUDO_KEYS})")
        if nk == "out":
            raise ValueError(f"[base] must not set out {where}: run directories are <[sweep] out>/runs/<point name>")
        base[nk] = v
    grid: dict[str, list[Any]] = {}
    for k, vals in raw.get("grid", {}).items():
        nk = _norm(k)
        if not isinstance(vals, list) or not vals:
            raise ValueError(f"[grid] {k} must be a non-empty list of values {where}, got {k}={vals!r}")
        if all(isinstance(x, dict) for x in vals):  # bundle axis
            names = []
            for b in vals:
                if not isinstance(b.get("name"), str) or not b["name"]:
                    raise ValueError(f"[grid] {k}: every table needs a non-empty name = \"...\" {where}, got {b!r}")
                for bk in b:
                    if bk != "name" and _norm(bk) not in known and _norm(bk) not in PSEUDO_KEYS:
                        raise ValueError(f"[grid] {k}: unknown key {bk!r} in table {b['name']!r} {where}")
                names.append(b["name"])
            if len(set(names)) != len(names):
                raise ValueError(f"[grid] {k}: table names must be distinct {where}, got {names}")
        elif any(isinstance(x, dict) for x in vals):
            raise ValueError(f"[grid] {k} mixes tables and plain values {where}")
        else:
            if nk not in known and nk not in PSEUDO_KEYS:
                raise ValueError(f"unknown grid axis {k!r} {where} (a RunConfig field, one of {PSEUDO_KEYS}, "
                                 f"or a list of tables)")
            if nk == "out":
                raise ValueError(f"[grid] must not vary out {where}")
            labels = [value_label(x) for x in vals]
            if len(set(labels)) != len(labels):
                raise ValueError(f"[grid] {k} repeats a value {where}, got {vals!r}")
        grid[nk] = vals
    slurm = dict(raw.get("slurm", {}))
    out = sw.get("out") or str(Path("runs") / scale / name)
    return SweepSpec(name=name, path=str(path), out=out, base=base, grid=grid, description=sw.get("description", ""),
                     scale=scale, launcher=launcher, jobs=sw.get("jobs", 1), threads=sw.get("threads", 1),
                     nproc_per_node=sw.get("nproc_per_node", 1), gpus=sw.get("gpus", "auto"), slurm=slurm)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and parse a sweep TOML file (one-line ValueError if missing, unreadable or malformed)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"sweep file not found: {str(p)!r}") from None
    except IsADirectoryError:
        raise ValueError(f"sweep file {str(p)!r} is a directory, expected a .toml file") from None
    except OSError as e:
        raise ValueError(f"sweep file {str(p)!r} cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"sweep file {str(p)!r} is not valid TOML: {str(e).splitlines()[0]}") from None
    return parse_sweep(raw, p)


def _resolve(values: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Split pseudo-keys off: returns (RunConfig fields, cost hints, lr_rule)."""
    cfg = {k: v for k, v in values.items() if k not in PSEUDO_KEYS}
    hints = {k: values[k] for k in ("n_train_hint", "classes_hint", "image_size_hint") if k in values}
    rule = values.get("lr_rule", "none")
    if rule not in LR_RULES:
        raise ValueError(f"{where}: lr_rule must be one of {LR_RULES}, got lr_rule={rule!r}")
    if "seed" in values:
        s = values["seed"]
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"{where}: seed must be an integer >= 0, got seed={s!r}")
        clash = [k for k in ("init_seed", "order_seed", "aug_seed") if k in values]
        if clash:
            raise ValueError(f"{where}: seed and {clash[0]} are both given; use one")
        cfg.update(init_seed=3 * s, order_seed=3 * s + 1, aug_seed=3 * s + 2)
    if rule != "none":
        from .config import RunConfig

        B = cfg.get("batch_size", RunConfig().to_dict()["batch_size"])
        cfg["lr"] = lr_from_rule(rule, B, values.get("lr_base", 0.3))
    return cfg, hints, rule


def expand_grid(spec: SweepSpec) -> list[GridPoint]:
    """Every grid point, validated as a RunConfig (one-line ValueError naming the point), in grid order.

    Later settings override earlier ones: defaults < [base] < grid axes in file order (a bundle sets all its keys).
    """
    from .config import config_from_dict

    axes = list(spec.grid)
    points: list[GridPoint] = []
    names: dict[str, dict] = {}
    for combo in itertools.product(*(spec.grid[a] for a in axes)):
        values = dict(spec.base)
        labels: dict[str, Any] = {}
        for a, v in zip(axes, combo):
            if isinstance(v, dict):
                values.update({_norm(k): x for k, x in v.items() if k != "name"})
                labels[a] = v["name"]
            else:
                values[a] = v
                labels[a] = v
        if "lr_rule" in values and values["lr_rule"] != "none" and "lr" in values and "lr" in labels:
            raise ValueError("grid varies lr and sets lr_rule; use one of them")
        name = point_name(labels)
        if name in names:
            raise ValueError(f"two grid points get the same directory name {name!r}: {names[name]} and {labels}")
        names[name] = labels
        cfg, hints, rule = _resolve(values, f"grid point {name}")
        cfg["out"] = str(spec.runs_dir / name)
        cfg["quiet"] = True
        try:
            rc = config_from_dict(cfg)
        except ValueError as e:
            raise ValueError(f"grid point {name}: {str(e).splitlines()[0]}") from None
        points.append(GridPoint(name=name, axes=labels, config=rc.to_dict(), hints=hints, lr_rule=rule))
    return points


# ----------------------------------------------------------------------------------------------------------
# sharding
def parse_shard(spec: str) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n); one-line ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m:
        raise ValueError(f"--shard must look like i/n with 0 <= i < n, got {spec!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise ValueError(f"--shard must look like i/n with 0 <= i < n, got {spec!r}")
    return i, n


def select_shard(points: list[GridPoint], i: int, n: int) -> list[GridPoint]:
    """Round-robin shard i of n (point k goes to shard k mod n): the n shards partition the grid."""
    return [p for k, p in enumerate(points) if k % n == i]
