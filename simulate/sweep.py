"""Parameter sweeps of the coupled Sigma-space descent (Thm. 1, Cors. 1-2 and every per-step claim).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 4.1 / App. D.

Every grid point of (classes C, temperature tau, batch size B, step size eta, seed) is one
``simulate.run.run_sigma_descent`` run with a small config (N = n_per_class * C reference samples, T steps);
runs execute in a process pool (``jobs`` workers, one torch thread each). ``sweep.csv`` gets one row per run:
the options, the final drift ||Sigma_T^CL - Sigma_T^NSCL||_F, the Thm. 1 bound (Eq. 2 and its exact unrolled
form) and drift / bound, the actual CKA / RSA, the paper (Cors. 1-2) and sharper certificates, and every
claim's holds / max_ratio from the run's checks.json. The sweep is resumable: a run whose ``run_id`` (the axis
values plus a hash of the full config) already has a row is skipped. Heat-maps over two chosen axes (cells:
mean over the runs that share the cell) are written as PNG + PDF with ``simulate/style.mplstyle``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import math
import multiprocessing
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from runio import as_float, read_csv, write_csv, write_json
from runio.cli import OneLineParser, fail, parse_with_config, record
from runio.outdir import OutDirLock
from runio.progress import progress

from theory.constants import check_positive_int

from .config import (
    DIAG_MODES,
    PROJECTIONS,
    SIGMA_MODES,
    VIEWS,
    NonFiniteError,
    SigmaConfig,
    derive_seeds,
    validate_config,
)
from .run import run_sigma_descent

__all__ = [
    "AXES",
    "parse_values",
    "make_tasks",
    "run_one",
    "read_rows",
    "run_sweep",
    "plot_heatmaps",
    "main",
]

AXES = ("classes", "tau", "batch_size", "eta", "seed")
_AXIS_ALIASES = {"C": "classes", "B": "batch_size", "batch-size": "batch_size", "seeds": "seed"}
CSV_NAME = "sweep.csv"
STYLE = Path(__file__).with_name("style.mplstyle")


# ----------------------------------------------------------------------------------------------------------
# grid


def parse_values(spec: str, kind: type = float) -> list:
    """Comma list of values or ranges: "0.1,0.5", "0-4" (integers, inclusive), "lin:a:b:n", "log:a:b:n".

    ``kind`` is int or float; ValueError (one line) on anything else.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"expected a comma list of values, got {spec!r}")
    out: list = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            if part.startswith(("lin:", "log:")):
                mode, a, b, n = part.split(":")
                vals = (np.linspace if mode == "lin" else np.geomspace)(float(a), float(b), int(n))
                out.extend(kind(round(v)) if kind is int else float(v) for v in vals)
            elif kind is int and "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(kind(part) if kind is float else int(part))
        except ValueError:
            raise ValueError(f"cannot parse {part!r} in {spec!r} as {kind.__name__} values or a range") from None
    if not out:
        raise ValueError(f"expected at least one value, got {spec!r}")
    return list(dict.fromkeys(out))  # unique, order kept


def _axis_name(name: str) -> str:
    n = _AXIS_ALIASES.get(name, name)
    if n not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {name!r}")
    return n


def _config_hash(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]


def make_tasks(
    classes: Sequence[int],
    taus: Sequence[float],
    batch_sizes: Sequence[int],
    etas: Sequence[float],
    seeds: Sequence[int],
    n_per_class: int,
    base: dict | None = None,
) -> list[dict]:
    """One task per grid point: {"run_id", "axes": {...}, "config": SigmaConfig fields}.

    The seed gives (init_seed, batch_seed, aug_seed) via ``simulate.config.derive_seeds``; ``base`` holds the fixed
    SigmaConfig fields (steps, delta, sigma, ...). Every config is validated (ValueError, one line).
    """
    n_per_class = check_positive_int("n_per_class", n_per_class)
    base = dict(base or {})
    bad = sorted(set(base) & {"classes", "tau", "batch_size", "eta", "n", "init_seed", "batch_seed", "aug_seed"})
    if bad:
        raise ValueError(f"base config must not set swept fields {', '.join(bad)}")
    tasks = []
    for C in classes:
        for tau in taus:
            for B in batch_sizes:
                for eta in etas:
                    for seed in seeds:
                        i, b, a = derive_seeds(seed)
                        cfg = SigmaConfig(**base)
                        cfg = replace(cfg, classes=int(C), tau=float(tau), batch_size=int(B), eta=float(eta),
                                      n=int(n_per_class) * int(C), init_seed=i, batch_seed=b, aug_seed=a)  # fmt: skip
                        validate_config(cfg)
                        d = cfg.to_dict()
                        axes = {"classes": int(C), "tau": float(tau), "batch_size": int(B), "eta": float(eta),
                                "seed": int(seed)}  # fmt: skip
                        rid = f"C{C}_tau{tau:g}_B{B}_eta{eta:g}_s{seed}_{_config_hash(d)}"
                        tasks.append({"run_id": rid, "axes": axes, "config": d})
    return tasks


# ----------------------------------------------------------------------------------------------------------
# one run


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def run_one(task: dict, runs_dir: str | None) -> dict:
    """Run one grid point and return its CSV row (never raises for a diverging run: ``aborted`` is set)."""
    cfg = SigmaConfig.from_dict(task["config"])
    out = None if runs_dir is None else Path(runs_dir) / task["run_id"]
    row: dict = {"run_id": task["run_id"], **task["axes"]}
    row.update({f"cfg_{k}": v for k, v in task["config"].items() if k not in task["axes"]})
    try:
        res = run_sigma_descent(cfg, out, quiet=True)
    except NonFiniteError as e:
        row.update({"completed": False, "aborted": str(e)})
        return row
    ev = res.eval_rows[-1] if res.eval_rows else {}
    c = res.constants
    bound = as_float(ev.get("bound_closed"))
    bound_u = as_float(ev.get("bound_unrolled"))
    drift = float(res.drift)
    row.update(
        {
            "completed": bool(res.completed),
            "aborted": "",
            "eps": as_float(c.get("eps")),
            "Delta": as_float(c.get("Delta")),
            "bound_defined": math.isfinite(as_float(c.get("Delta"))),
            "drift": drift,
            "drift_full": as_float(res.drift_full),
            "bound_thm1": bound,
            "bound_thm1_unrolled": bound_u,
            "bound_thm1_gap": as_float(ev.get("bound_gap")),
            # nan where the bound is undefined (Delta undefined: eps >= 1 - 1/C; see bound_defined)
            "drift_over_bound": drift / bound if 0 < bound < math.inf else math.nan,
            "drift_over_bound_unrolled": drift / bound_u if 0 < bound_u < math.inf else math.nan,
            "cka": as_float(res.cka),
            "rsa": as_float(res.rsa),
        }
    )
    for k in ("k_cl_fro", "sigma_d", "rho_bound", "cka_lb_paper", "cka_lb_sharp", "cka_lb_meas", "cka_lb_meas_sharp",
              "cka_lb_exact", "r_bound", "rsa_lb_paper", "rsa_lb_sharp", "rsa_lb_meas", "rsa_lb_meas_sharp",
              "rsa_lb_exact"):  # fmt: skip
        row[k] = as_float(ev.get(k))
    for name, claim in (res.checks or {}).items():
        if name.startswith("_") or not isinstance(claim, dict) or "holds" not in claim:
            continue
        h = claim.get("holds")
        row[f"{name}_holds"] = "" if h is None else bool(h)
        row[f"{name}_max_ratio"] = as_float(claim.get("max_ratio"))
    row["wall_s"] = float(res.wall_s)
    return row


# ----------------------------------------------------------------------------------------------------------
# CSV


def read_rows(path: Path) -> list[dict]:
    """Rows of a sweep CSV as dicts of strings ([] if the file does not exist)."""
    return read_csv(path, numeric=False) if path.is_file() else []


def run_sweep(
    tasks: Sequence[dict],
    out_dir: Path | str,
    jobs: int = 2,
    keep_runs: bool = True,
    quiet: bool = False,
    x: str = "tau",
    y: str = "classes",
    plots: bool = True,
) -> dict:
    """Run the tasks not yet in ``out_dir/sweep.csv`` (resumable), then draw the heat-maps.

    Returns {"ran": n_new, "skipped": n_existing, "rows": all rows (dicts of strings/values), "figures": paths}.
    ``jobs`` > 1 uses a spawn-context ProcessPoolExecutor whose workers run torch single-threaded; jobs = 1 runs
    in this process (torch set to one thread for the duration).
    """

    from theory.constants import check_positive_int

    from .adversarial import torch_threads

    jobs = check_positive_int("jobs", jobs)
    x, y = _axis_name(x), _axis_name(y)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / CSV_NAME
    rows = read_rows(csv_path)
    done = {r["run_id"] for r in rows}
    todo = [t for t in tasks if t["run_id"] not in done]
    runs_dir = str(out / "runs") if keep_runs else None
    bar = progress(total=len(todo), quiet=quiet, desc="sweep", unit="run")

    def _collect(row: dict) -> None:
        rows.append(row)
        write_csv(csv_path, rows)  # after every run: an interrupted sweep keeps its finished rows
        bar.update(1)

    try:
        if jobs == 1 or len(todo) <= 1:
            with torch_threads(1):
                for t in todo:
                    _collect(run_one(t, runs_dir))
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as ex:
                futs = [ex.submit(run_one, t, runs_dir) for t in todo]
                for f in cf.as_completed(futs):
                    _collect(f.result())
    finally:
        bar.close()
    ids = [t["run_id"] for t in tasks]
    order = {r: i for i, r in enumerate(ids)}
    rows.sort(key=lambda r: order.get(r["run_id"], len(order)))
    if todo:
        write_csv(csv_path, rows)
    figs = plot_heatmaps(rows, out, x, y) if plots else []
    return {"ran": len(todo), "skipped": len(tasks) - len(todo), "rows": rows, "figures": figs}


# ----------------------------------------------------------------------------------------------------------
# heat-maps


def _grid(rows: list[dict], x: str, y: str, col: str) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Cell means of column ``col`` over runs sharing (x, y); counts. Non-numeric / missing -> excluded."""
    xs = sorted({as_float(r[x]) for r in rows})
    ys = sorted({as_float(r[y]) for r in rows})
    S = np.zeros((len(ys), len(xs)))
    N = np.zeros((len(ys), len(xs)), dtype=int)
    for r in rows:
        v = as_float(r.get(col))
        if not math.isfinite(v):
            continue
        i, j = ys.index(as_float(r[y])), xs.index(as_float(r[x]))
        S[i, j] += v
        N[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        M = np.where(N > 0, S / np.maximum(N, 1), np.nan)
    return xs, ys, M, N


def _panel(ax, fig, rows, x, y, col, title, log=False, vmin=None, vmax=None, cmap="viridis"):
    xs, ys, M, N = _grid(rows, x, y, col)
    data = M.copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(M > 0, np.log10(M), np.nan)
    im = ax.imshow(np.ma.masked_invalid(data), origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(False)
    ax.set_title(title)
    vals = np.unique(M[np.isfinite(M)])
    # enough significant digits that cells of different value read differently (CKA 1 - 1e-5 is not "1")
    d = next((k for k in range(3, 10) if len({f"{v:.{k}g}" for v in vals}) == len(vals)), 10)
    for i in range(len(ys)):
        for j in range(len(xs)):
            txt = "n/a" if not np.isfinite(M[i, j]) else f"{M[i, j]:.{d}g}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="k",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "w", "ec": "none", "alpha": 0.6})  # fmt: skip
    name = title.split(") ", 1)[-1] if title.startswith("(") else title  # the panel's words, not the column name
    fig.colorbar(im, ax=ax, shrink=0.85, label=f"log$_{{10}}$({name})" if log else name)


def plot_heatmaps(rows: list[dict], out_dir: Path | str, x: str = "tau", y: str = "classes") -> list[Path]:
    """heatmap_drift_bound.{png,pdf}: drift / Thm. 1 bound (Eq. 2; exact unrolled), log10 colour scale;
    heatmap_certificates.{png,pdf}: actual CKA / RSA and their paper (Cors. 1-2) and sharper certificates
    (colour range [-1, 1]; a certificate <= 0 is vacuous). Cells: mean over runs with the same (x, y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = _axis_name(x), _axis_name(y)
    rows = [r for r in rows if str(r.get("completed", "")) in ("1", "True", "true")]
    out = Path(out_dir)
    if not rows:
        return []
    paths: list[Path] = []
    style = str(STYLE) if STYLE.is_file() else "default"
    with plt.style.context(style):
        fig, axs = plt.subplots(1, 2, figsize=(9.0, 3.6))
        _panel(axs[0], fig, rows, x, y, "drift_over_bound", "(a) drift / Thm. 1 bound (Eq. 2)", log=True)
        _panel(axs[1], fig, rows, x, y, "drift_over_bound_unrolled", "(b) drift / exact unrolled bound", log=True)
        for ext in ("png", "pdf"):
            p = out / f"heatmap_drift_bound.{ext}"
            fig.savefig(p)
            paths.append(p)
        plt.close(fig)
        fig, axs = plt.subplots(2, 3, figsize=(12.0, 6.6))
        panels = [("cka", "CKA (actual)"), ("cka_lb_paper", "CKA certificate, Cor. 1"),
                  ("cka_lb_sharp", "CKA certificate, sharp"), ("rsa", "RSA (actual)"),
                  ("rsa_lb_paper", "RSA certificate, Cor. 2"), ("rsa_lb_sharp", "RSA certificate, sharp")]  # fmt: skip
        for ax, (col, title) in zip(axs.ravel(), panels):
            _panel(ax, fig, rows, x, y, col, title, vmin=-1.0, vmax=1.0, cmap="RdBu")
        for ext in ("png", "pdf"):
            p = out / f"heatmap_certificates.{ext}"
            fig.savefig(p)
            paths.append(p)
        plt.close(fig)
    return paths


# ----------------------------------------------------------------------------------------------------------
# CLI


_DESCRIPTION = "``python -m simulate.sweep``: grid of coupled Sigma-space runs -> sweep.csv + heat-maps (resumable)."


def build_parser() -> OneLineParser:
    """The sweep CLI: swept axes, fixed options (defaults = SigmaConfig's), run options."""
    D = SigmaConfig()  # ONE default regime: the fixed options default to simulate.sigma_descent's
    ap = OneLineParser(prog="python -m simulate.sweep", description=_DESCRIPTION + " Every fixed option defaults to "
                       "SigmaConfig's value (the simulate.sigma_descent default regime); the default grid varies C "
                       "and tau around it.")
    g = ap.add_argument_group("swept axes (comma lists; ints 'a-b'; 'lin:a:b:n', 'log:a:b:n')")
    g.add_argument("--classes", default=f"10,{D.classes}", help="C values")
    g.add_argument("--tau", default=f"1.0,{D.tau}", help="temperatures")
    g.add_argument("--batch-size", default=str(D.batch_size), help="B values")
    g.add_argument("--eta", default=str(D.eta), help="constant step sizes")
    g.add_argument("--seeds", default="0", help="seeds (each gives init/batch/aug seeds via derive_seeds)")
    g = ap.add_argument_group("fixed options (SigmaConfig fields; see simulate/config.py)")
    g.add_argument("--n-per-class", type=int, default=D.n // D.classes,
                   help="reference samples per class (N = n_per_class * C)")
    g.add_argument("--steps", type=int, default=D.steps, help="T")
    g.add_argument("--delta", type=float, default=D.delta, help="confidence delta")
    g.add_argument("--views", default=D.views, choices=VIEWS, help="view slots or x' = x")
    g.add_argument("--view-slots", type=int, default=D.view_slots, help="V with --views slots")
    g.add_argument("--sigma", default=D.sigma, choices=SIGMA_MODES, help="ordered or symmetric Sigma")
    g.add_argument("--no-replacement", action="store_true", help="distinct samples within a batch")
    g.add_argument("--project", default=D.project, choices=PROJECTIONS,
                   help="clip onto [-1, 1] (Sec. 4.1's box) or none (Eq. 1 exactly)")
    g.add_argument("--diag", default=D.diag, choices=DIAG_MODES, help="Sigma(i,i) fixed at 1 or free")
    g.add_argument("--separation", type=float, default=D.separation, help="class-mean norm of Sigma_0")
    g.add_argument("--embed-dim", type=int, default=D.embed_dim, help="embedding dimension of Sigma_0")
    g.add_argument("--aug-noise", type=float, default=D.aug_noise, help="view-slot perturbation of Sigma_0")
    g.add_argument("--eval-every", type=int, default=0, help="0: evaluate only at the end")
    g.add_argument("--lemma5-trials", type=int, default=50, help="Monte-Carlo trials for Lem. 5 per run")
    g.add_argument("--no-checks", action="store_true", help="skip the per-step claim checks")
    g = ap.add_argument_group("run")
    g.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    g.add_argument("--out", default="runs/sweep", help="output directory")
    g.add_argument("--x", default="tau", help=f"heat-map x axis, one of {', '.join(AXES)}")
    g.add_argument("--y", default="classes", help="heat-map y axis")
    g.add_argument("--no-keep-runs", action="store_true", help="do not keep the per-run folders")
    g.add_argument("--quick", action="store_true", help="tiny grid (2 x 2 runs, 10 steps) to check the pipeline")
    g.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    return ap


def base_config(args: argparse.Namespace) -> dict:
    """The fixed SigmaConfig fields of every grid point from the parsed options."""
    return {
        "steps": args.steps, "delta": args.delta, "views": args.views, "sigma": args.sigma,
        "view_slots": args.view_slots, "replacement": not args.no_replacement, "project": args.project,
        "diag": args.diag, "separation": args.separation, "aug_noise": args.aug_noise,
        "embed_dim": args.embed_dim, "eval_every": args.eval_every, "lemma5_trials": args.lemma5_trials,
        "checks": not args.no_checks, "plot": False,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulate.sweep``: grid of coupled Sigma-space runs -> sweep.csv + heat-maps (resumable)."""
    ap = build_parser()
    args = parse_with_config(ap, argv)
    lock = None
    try:
        if args.quick:
            args.classes, args.tau, args.batch_size, args.eta, args.seeds = "2,3", "0.5,1.0", "32", "1.0", "0"
            args.steps, args.n_per_class, args.lemma5_trials, args.embed_dim = 10, 8, 10, 8
        base = base_config(args)
        tasks = make_tasks(
            parse_values(args.classes, int), parse_values(args.tau, float), parse_values(args.batch_size, int),
            parse_values(args.eta, float), parse_values(args.seeds, int), args.n_per_class, base,
        )  # fmt: skip
        lock = OutDirLock(args.out).acquire()  # one sweep per --out; stale *.tmp of a killed sweep removed
        res = run_sweep(tasks, args.out, jobs=args.jobs, keep_runs=not args.no_keep_runs, quiet=args.quiet,
                        x=args.x, y=args.y)  # fmt: skip
        # the run record (after --quick filled in its values): python -m simulate.sweep --config OUT/config.json
        write_json(Path(args.out) / "config.json", record(args, exclude=("config", "out", "quiet", "quick"),
                                                          command_line=[ap.prog, *(sys.argv[1:] if argv is None else argv)]))
    except ValueError as e:
        return fail(ap.prog, e)
    finally:
        if lock is not None:
            lock.release()
    if not args.quiet:
        print(f"{res['ran']} run(s) done, {res['skipped']} skipped (already in {Path(args.out) / CSV_NAME})")
        for p in res["figures"]:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
