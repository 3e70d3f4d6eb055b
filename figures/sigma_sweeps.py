"""Sigma-space counterparts of Figs. 3-5 from ``simulate.sweep`` (or single ``simulate.sigma_descent``) runs:
1 - CKA and 1 - RSA between Sigma^CL and Sigma^NSCL (log scale: in Sigma-space the alignment is 1 - 1e-7 and
more) against the number of classes C (heat-map over C and step), the temperature tau (curves over steps) and
the batch size B per step-size scaling eta ∝ B^k (one panel per rule). Seeds are averaged (band = min-max)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .discover import Catalog, by_value, fmt_value, group_runs
from .plotting import replicate_note, Missing, Output, draw_curves, heatmap, legend_below, ordered_colors, plt, series, style
from .scaling import families

__all__ = ["make_classes", "make_tau", "make_batch", "NEEDS"]

NEEDS = {
    "sigma_fig3_classes": "Sigma-space runs that differ only in C (python -m simulate.sweep --classes 2,5,10,20 ...; "
                          "bash docs/figures/sigma_small.sh)",
    "sigma_fig4_tau": "Sigma-space runs that differ only in tau (python -m simulate.sweep --tau 0.1,0.5,1 ...; "
                      "bash docs/figures/sigma_small.sh)",
    "sigma_fig5_batch": "Sigma-space runs that differ only in B and eta (python -m simulate.sweep "
                        "--batch-size 16,32,64 --eta ...; bash docs/figures/sigma_small.sh)",
}
CAPTIONS = {
    "sigma_fig3_classes": "Σ-space counterpart of Fig. 3/7: 1 − CKA and 1 − RSA between Σ^CL and Σ^NSCL over C "
                          "and step (lower = more aligned).",
    "sigma_fig4_tau": "Σ-space counterpart of Fig. 4: 1 − CKA / 1 − RSA over steps, one curve per τ.",
    "sigma_fig5_batch": "Σ-space counterpart of Fig. 5: 1 − CKA / 1 − RSA over steps per batch size B, one panel "
                        "per step-size rule η ∝ B^k.",
}


#: 1 - value below this is float64 round-off (at step 0 the two runs are identical by construction)
ROUNDOFF = 1e-13


def _gap_rows(run, metric: str) -> list[dict]:
    """1 - metric per evaluated step; step 0 (Sigma^CL = Sigma^NSCL by construction) and round-off left out."""
    out = []
    for r in run.evals:
        if r.get(metric) is None or r.get("step") is None or float(r["step"]) == 0:
            continue
        v = 1.0 - float(r[metric])
        if v > ROUNDOFF:
            out.append({"step": r["step"], "v": v})
    return out


def _curve(run, metric: str):
    return series(_gap_rows(run, metric), "step", "v")


def _setting(run, skip: tuple = ()) -> str:
    """The run's setting in words, without the swept keys ``skip``."""
    c = run.config
    parts = {"classes": f"C={c.get('classes')}", "n": f"N/C={int(c.get('n', 0)) // max(int(c.get('classes') or 1), 1)}",
             "tau": f"τ={fmt_value(c.get('tau'))}", "batch_size": f"B={c.get('batch_size')}",
             "eta": f"η={fmt_value(c.get('eta'))}", "steps": f"T={c.get('steps')}",
             "project": f"project={c.get('project')}"}
    return ", ".join(v for k, v in parts.items() if k not in skip)


def _curves_figure(panels, value, value_label, title):
    p = plt()
    allvals = sorted({value(r) for _, rs in panels for r in rs})
    colors = dict(zip(allvals, ordered_colors(len(allvals))))
    fig, axes = p.subplots(2, len(panels), figsize=(3.4 * len(panels) + 0.6, 5.4), squeeze=False, sharex="col",
                           sharey="row")
    table = []
    counts = []
    for j, (ptitle, rs) in enumerate(panels):
        for v, reps in by_value(rs, value):
            for i, m in enumerate(("cka", "rsa")):
                counts.append(draw_curves(axes[i, j], [_curve(r, m) for r in reps], value_label(v), colors[v],
                                          log=True))
            table.append({"panel": ptitle, "value": fmt_value(v), "n_runs": len(reps),
                          "runs": " ".join(r.name for r in reps),
                          **{f"one_minus_{m}_final": float(np.mean([_curve(r, m)[1][-1] for r in reps
                                                                    if len(_curve(r, m)[1])] or [np.nan]))
                             for m in ("cka", "rsa")}})
        axes[0, j].set_title(ptitle, fontsize=8)
        axes[1, j].set_xlabel("step t")
    axes[0, 0].set_ylabel(r"$1 - \mathrm{CKA}(\Sigma^{\mathrm{CL}}, \Sigma^{\mathrm{NSCL}})$")
    axes[1, 0].set_ylabel(r"$1 - \mathrm{RSA}(\Sigma^{\mathrm{CL}}, \Sigma^{\mathrm{NSCL}})$")
    legend_below(fig, axes.ravel(), ncol=min(len(allvals), 6))
    fig.suptitle(title + replicate_note(counts), fontsize=9, x=0.01, ha="left")
    return fig, table


def make_tau(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(cat.sigma, {"tau"}, by=lambda r: float(r.config["tau"]))
    if not groups:
        raise Missing(NEEDS["sigma_fig4_tau"])
    written = []
    with style():
        for g in groups:
            fig, table = _curves_figure([(_setting(g.runs[0], ("tau",)), g.runs)],
                                        lambda r: float(r.config["tau"]), lambda v: f"τ = {v:g}",
                                        "Σ-space: effect of the temperature τ on CL–NSCL alignment (lower = "
                                        "more aligned)")
            name = "sigma_fig4_tau" + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written


def _B(r) -> int:
    return int(r.config["batch_size"])


def _eta(r) -> float:
    e = r.config["eta"]
    return float(e[0] if isinstance(e, list) else e)


def make_batch(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(cat.sigma, {"batch_size", "eta"}, by=_B)
    if not groups:
        raise Missing(NEEDS["sigma_fig5_batch"])
    written = []
    with style():
        for g in groups:
            panels = [(f"{lab}; {_setting(rs[0], ('batch_size', 'eta'))}", rs) for lab, rs in families(g.runs, _B, _eta)]
            fig, table = _curves_figure(panels, _B, lambda v: f"B = {v}",
                                        "Σ-space: effect of the batch size B under step-size scaling rules")
            for row in table:
                row["eta"] = " ".join(f"{_eta(r):g}" for r in g.runs if r.name in row["runs"].split())
            name = "sigma_fig5_batch" + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written


def make_classes(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(cat.sigma, {"classes", "n"}, by=lambda r: r.C)
    if not groups:
        raise Missing(NEEDS["sigma_fig3_classes"])
    written = []
    p = plt()
    with style():
        for g in groups:
            steps = sorted({float(s) for r in g.runs for s in _curve(r, "cka")[0]})
            if len(steps) > 12:
                keep = np.unique(np.round(np.linspace(0, len(steps) - 1, 12)).astype(int))
                steps = [steps[i] for i in keep]
            Cs = [c for c, _ in by_value(g.runs, lambda r: r.C)]
            fig, axes = p.subplots(1, 2, figsize=(2 * (0.6 * len(steps) + 2.6), 0.45 * len(Cs) + 1.6),
                                   squeeze=False)
            table = []
            for j, m in enumerate(("cka", "rsa")):
                G = np.full((len(Cs), len(steps)), np.nan)
                N = np.zeros_like(G)
                for i, (C, reps) in enumerate(by_value(g.runs, lambda r: r.C)):
                    vals = np.full((len(reps), len(steps)), np.nan)
                    for k, r in enumerate(reps):
                        x, y = _curve(r, m)
                        d = {round(float(a), 9): float(b) for a, b in zip(x, y)}
                        vals[k] = [d.get(round(s, 9), np.nan) for s in steps]
                    with np.errstate(all="ignore"):
                        G[i] = np.nanmean(vals, 0)
                    N[i] = np.sum(np.isfinite(vals), 0)
                    table.append({"metric": f"1-{m}", "C": C, **{f"step_{s:g}": v for s, v in zip(steps, G[i])}})
                heatmap(axes[0, j], fig, G, [f"{s:g}" for s in steps], [str(c) for c in Cs],
                        "Greens_r" if m == "cka" else "Purples_r", f"1 − {m.upper()}", "step t", "classes C",
                        log=True, counts=N)
                axes[0, j].set_title(rf"$1 - \mathrm{{{m.upper()}}}(\Sigma^{{\mathrm{{CL}}}}, \Sigma^{{\mathrm{{NSCL}}}})$",
                                     fontsize=8.5)
            fig.suptitle("Σ-space: CL–NSCL alignment vs number of classes C (darker = more aligned; step 0 left "
                         "out: the runs start identical) — " + _setting(g.runs[0], ("classes",)), fontsize=9, x=0.01,
                         ha="left")
            name = "sigma_fig3_classes" + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written
