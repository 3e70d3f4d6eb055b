"""Regenerate the paper's figures and tables from result files only (no training, no simulation).

``python -m figures [--runs DIR ...] [--out DIR]`` searches the given directories (default ``./runs``)
recursively for result directories:

* encoder runs of ``python -m experiments.bound_vs_empirical`` (config.json + metrics.csv, models.csv), and
* Sigma-space runs of ``python -m simulate.sigma_descent`` (steps.csv + checks.json, evals.csv),

and writes what those files support:

  fig2_alignment        Fig. 2 style: CKA / RSA of every pair over epochs, one column per encoder run
  fig3_heatmap_*        Fig. 3 (CKA) / Fig. 7 (RSA) style: CL-NSCL alignment vs C' and epoch (runs that differ
                        only in the number of classes C'), train and test reference sets
  fig4_tau_*            Fig. 4 style: CL-NSCL CKA / RSA over epochs per tau (runs that differ only in tau)
  fig5_batch_*          Fig. 5 style: per batch size B (runs that differ only in B and the learning rate)
  fig6_weight_gap       Fig. 6 style: mean relative weight gap over epochs
  table1.md / .csv      Tab. 1 style: NCCC and linear-probe accuracy (%) per model at the last evaluation
  bounds_<run>          measured alignment vs the Cor. 1-2 certificates of each encoder run
  sigma_drift_<run>     Sigma-space drift vs the Thm. 1 bounds of each simulate run

With no result directory it prints one line naming the commands that produce them and exits with status 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from runio import atomic_write_text, read_csv, read_json, write_csv

__all__ = ["EncoderRun", "find_runs", "sweep_groups", "regenerate", "main", "SWEEP_IGNORE", "COMMANDS"]

COMMANDS = ("python -m experiments.bound_vs_empirical --out runs/bve", "python -m simulate.sigma_descent --out runs/sigma")
MAX_HEATMAP_COLUMNS = 12
#: config keys that never distinguish runs for a sweep (outputs, measurement options)
SWEEP_IGNORE = {"out", "quiet", "pairs", "eval_every", "theory", "theory_evals", "g_pairs", "beta_dirs", "fd_rel",
                "theory_seed", "surrogate", "surrogate_constants", "lp_iters", "lp_l2", "ref_train", "ref_test",
                "ref_seed", "ref_batch", "device", "bf16", "delta", "losses", "threads"}


# ----------------------------------------------------------------------------------------------------------
# discovery
class EncoderRun:
    """One bound_vs_empirical result directory, read back from its files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        doc = read_json(path / "config.json")
        self.config: dict[str, Any] = doc.get("config", {})
        self.resolved: dict[str, Any] = doc.get("resolved", {})
        self.metrics = read_csv(path / "metrics.csv")
        self.models = read_csv(path / "models.csv") if (path / "models.csv").is_file() else []
        self.name = path.name
        spe = self.resolved.get("steps_per_epoch")
        if spe:  # fractional epochs: several evaluations per epoch stay distinct points
            for r in self.metrics + self.models:
                if r.get("step") is not None:
                    r["epoch"] = float(r["step"]) / float(spe)

    @property
    def C(self) -> int:
        return int(self.resolved.get("C") or self.config.get("classes") or 0)

    @property
    def contrastive(self) -> str:
        return str(self.resolved.get("contrastive", "CL"))

    def label(self) -> str:
        c = self.config
        return f"{self.name}: {c.get('dataset')} C'={self.C} τ={c.get('tau')} B={c.get('batch_size')}"


def _is_encoder_run(p: Path) -> bool:
    if not ((p / "config.json").is_file() and (p / "metrics.csv").is_file()):
        return False
    try:
        doc = read_json(p / "config.json")
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "losses" in doc.get("config", {})


def _is_sigma_run(p: Path) -> bool:
    return (p / "steps.csv").is_file() and (p / "checks.json").is_file()


def find_runs(roots: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(encoder run dirs, simulate run dirs) under ``roots`` (each root itself or any sub-directory), sorted."""
    enc: set[Path] = set()
    sig: set[Path] = set()
    for root in roots:
        r = Path(root)
        if not r.is_dir():
            continue
        for d in [r, *sorted(x for x in r.rglob("*") if x.is_dir())]:
            if _is_encoder_run(d):
                enc.add(d.resolve())
            elif _is_sigma_run(d):
                sig.add(d.resolve())
    return sorted(enc), sorted(sig)


# ----------------------------------------------------------------------------------------------------------
# grouping for sweeps
def _key(cfg: dict, vary: set[str]) -> str:
    return json.dumps({k: v for k, v in sorted(cfg.items()) if k not in SWEEP_IGNORE and k not in vary},
                      sort_keys=True, default=str)


def sweep_groups(runs: Sequence[EncoderRun], vary: set[str], by) -> list[list[EncoderRun]]:
    """Groups of >= 2 runs that agree on every config key except ``vary`` (and SWEEP_IGNORE) and take >= 2
    distinct values of ``by(run)``; within a group, one run per value (the first found)."""
    groups: dict[str, dict[Any, EncoderRun]] = {}
    for r in runs:
        g = groups.setdefault(_key(r.config, vary), {})
        g.setdefault(by(r), r)
    return [[g[k] for k in sorted(g)] for g in groups.values() if len(g) >= 2]


def _value_at(rows: Sequence[dict], pair: str, split: str, epoch: float, metric: str) -> float:
    """``metric`` of ``pair`` at the LAST evaluation of ``epoch`` (the end-of-epoch one); NaN if absent."""
    v = math.nan
    for r in rows:
        if r.get("pair") == pair and r.get("split") == split and r.get("epoch") == epoch and r.get(metric) is not None:
            v = float(r[metric])
    return v


#: Figs. 4 / 5: (file stem, config keys that may differ, swept value, curve label, title, why skipped if no group)
_SWEEP_FIGURES = (
    ("fig4_tau", {"tau"}, lambda r: float(r.config["tau"]), lambda r: f"τ={r.config['tau']}",
     "Effect of the temperature τ on CL–NSCL alignment", "needs >= 2 encoder runs that differ only in tau"),
    # batch size with its learning-rate scaling
    ("fig5_batch", {"batch_size", "lr"}, lambda r: int(r.config["batch_size"]),
     lambda r: f"B={r.config['batch_size']}, η={r.config['lr']:g}",
     "Effect of the batch size B (learning rate scaled with B) on CL–NSCL alignment",
     "needs >= 2 encoder runs that differ only in the batch size (and lr)"),
)


# ----------------------------------------------------------------------------------------------------------
def regenerate(roots: Sequence[str | Path], out: str | Path, quiet: bool = False) -> dict[str, Any]:
    """Write every figure / table the result files under ``roots`` support into ``out``.

    Returns {"written": [paths], "skipped": {figure: reason}, "encoder_runs": n, "sigma_runs": n}.
    """
    from experiments import plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    enc_dirs, sig_dirs = find_runs(roots)
    runs = [EncoderRun(p) for p in enc_dirs]
    written: list[Path] = []
    skipped: dict[str, str] = {}

    if runs:
        written += plot.plot_alignment_epochs([(r.label(), r.metrics) for r in runs], out / "fig2_alignment")
        written += plot.plot_weight_gap([(r.label(), r.metrics) for r in runs], out / "fig6_weight_gap")
        for r in runs:
            written += plot.plot_alignment_run(r.metrics, out / f"bounds_{_safe(r.name)}", contrastive=r.contrastive)
        written += _table1(runs, out)
        # Fig. 3 / 7: C' heat-maps
        groups = sweep_groups(runs, {"classes", "class_seed"}, lambda r: r.C)
        if groups:
            for gi, g in enumerate(groups):
                epochs = sorted({float(m["epoch"]) for r in g for m in r.metrics if m.get("epoch") is not None})
                if len(epochs) > MAX_HEATMAP_COLUMNS:  # evenly spaced columns, first and last kept
                    keep = np.unique(np.round(np.linspace(0, len(epochs) - 1, MAX_HEATMAP_COLUMNS)).astype(int))
                    epochs = [epochs[i] for i in keep]
                for split, cmap in (("train", "Greens"), ("test", "Purples")):
                    for metric, fig in (("cka", "fig3"), ("rsa", "fig7")):
                        grid = np.array([[_value_at(r.metrics, f"{r.contrastive}-NSCL", split, e, metric)
                                          for e in epochs] for r in g])
                        written += plot.plot_heatmap(
                            grid, [f"{e:g}" for e in epochs], [r.C for r in g],
                            out / f"{fig}_heatmap_{metric}_{split}{'' if gi == 0 else f'_{gi}'}",
                            f"CL–NSCL {metric.upper()} vs C' ({split} reference set)", cmap=cmap)
        else:
            skipped["fig3_heatmap"] = "needs >= 2 encoder runs that differ only in the number of classes C'"
        # Figs. 4 / 5: one curve per tau / per batch size
        for stem, vary, by, label, title, why in _SWEEP_FIGURES:
            groups = sweep_groups(runs, vary, by)
            for gi, g in enumerate(groups):
                written += plot.plot_sweep([(label(r), r.metrics) for r in g],
                                           out / f"{stem}{'' if gi == 0 else f'_{gi}'}", title,
                                           pair=f"{g[0].contrastive}-NSCL")
            if not groups:
                skipped[stem] = why
    else:
        for k in ("fig2_alignment", "fig3_heatmap", "fig4_tau", "fig5_batch", "fig6_weight_gap", "table1"):
            skipped[k] = "no encoder run (python -m experiments.bound_vs_empirical)"

    if sig_dirs:
        from simulate.plot import plot_sigma_run

        for d in sig_dirs:
            written += plot_sigma_run(d, out / f"sigma_drift_{_safe(d.name)}")
    else:
        skipped["sigma_drift"] = "no Sigma-space run (python -m simulate.sigma_descent)"
    return {"written": written, "skipped": skipped, "encoder_runs": len(runs), "sigma_runs": len(sig_dirs)}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _table1(runs: Sequence[EncoderRun], out: Path) -> list[Path]:
    """Tab. 1 style: NCCC and linear-probe test accuracy (%) per model at each run's last evaluation that has
    them. Markdown + CSV."""
    header = ["run", "model", "epoch", "NCCC", "LP"]
    rows = []
    for r in runs:
        models = list(dict.fromkeys(str(m["model"]) for m in r.models))
        for name in models:
            sel = [m for m in r.models if m.get("model") == name]
            nc = [m for m in sel if m.get("nccc") is not None]
            lp = [m for m in sel if m.get("linear_probe") is not None]
            last = nc[-1] if nc else (sel[-1] if sel else {})
            rows.append([r.label(), name, f"{last.get('epoch', float('nan')):g}" if last else "",
                         f"{100 * nc[-1]['nccc']:.2f}" if nc else "-",
                         f"{100 * lp[-1]['linear_probe']:.2f}" if lp else "-"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    md = atomic_write_text(out / "table1.md", "Nearest class-centre (NCCC) and linear-probe (LP) test accuracy (%), "
                           "last evaluation.\n\n" + "\n".join(lines) + "\n")
    cp = write_csv(out / "table1.csv", [dict(zip(header, row)) for row in rows], columns=header)
    return [md, cp]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m figures", description="Regenerate the paper's figures and tables "
                                "from result files (no training).")
    p.add_argument("--runs", nargs="+", default=["runs"], help="directories searched recursively (default ./runs)")
    p.add_argument("--out", default=None, help="output directory (default: runs/figures next to the first --runs)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    enc, sig = find_runs(a.runs)
    if not enc and not sig:
        print(f"figures: no result directories under {' '.join(a.runs)}; produce them with: "
              f"{'  and  '.join(COMMANDS)}", file=sys.stderr)
        return 1
    out = Path(a.out) if a.out is not None else Path(a.runs[0]) / "figures"
    res = regenerate(a.runs, out, quiet=a.quiet)
    if not a.quiet:
        print(f"{res['encoder_runs']} encoder run(s), {res['sigma_runs']} Sigma-space run(s) -> {out}")
        for path in res["written"]:
            print(f"  wrote {path}")
        for k, why in res["skipped"].items():
            print(f"  skipped {k}: {why}")
    return 0
