"""Fig. 3 (CKA) and Fig. 7 (RSA): CL-NSCL alignment as a heat-map over the number of training classes C'
(rows) and the epoch (columns), train reference set (green) and test reference set (purple); runs that differ
only in C' (and the class-subset seed, whose replicates are averaged: "n=" in the cell). The random-label
control, where run, is a second row of panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .discover import Catalog, by_value, group_runs
from .plotting import Missing, Output, heatmap, plt, style
from ._encoder import cl_pair, run_curve, settings_columns

NAME = "fig3_classes"
CAPTION = ("CL–NSCL alignment increases with the number of training classes C′: heat-maps over C′ (rows) and "
           "epoch (columns); train reference set green, test purple (Fig. 3 CKA, Fig. 7 RSA).")
NEEDS = ("encoder runs that differ only in the number of classes C' "
         "(python -m experiments.sweep configs/small/fig3_classes.toml)")
MAX_COLUMNS = 12


def epoch_columns(runs) -> list[float]:
    """The evaluation epochs of the runs; at most MAX_COLUMNS evenly spaced ones, first and last kept."""
    ep = sorted({float(x) for r in runs for x in run_curve(r, "cka")[0]})
    if len(ep) > MAX_COLUMNS:
        keep = np.unique(np.round(np.linspace(0, len(ep) - 1, MAX_COLUMNS)).astype(int))
        ep = [ep[i] for i in keep]
    return ep


def grid(runs, metric: str, split: str, epochs: list[float]):
    """(C' values, grid[C', epoch] mean over replicates, counts)."""
    rows, G, N = [], [], []
    for C, reps in by_value(runs, lambda r: r.C):
        vals = np.full((len(reps), len(epochs)), np.nan)
        for k, r in enumerate(reps):
            x, y = run_curve(r, metric, split=split)
            m = {round(float(a), 9): float(b) for a, b in zip(x, y)}
            vals[k] = [m.get(round(e, 9), np.nan) for e in epochs]
        rows.append(C)
        with np.errstate(all="ignore"):
            G.append(np.nanmean(vals, 0))
        N.append(np.sum(np.isfinite(vals), 0))
    return rows, np.array(G), np.array(N)


def make(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(cat.encoder, {"classes", "class_seed"}, by=lambda r: r.C)
    if not groups:
        raise Missing(NEEDS)
    written = []
    p = plt()
    with style():
        for g in groups:
            sfx = f"__{g.suffix}" if g.suffix else ""
            cols = settings_columns(g)
            epochs = epoch_columns(g.runs)
            elabels = [f"{e:g}" if float(e).is_integer() else f"{e:.2g}" for e in epochs]
            for metric, fig_no in (("cka", "fig3"), ("rsa", "fig7")):
                fig, axes = p.subplots(len(cols), 2, figsize=(2 * (0.5 * len(epochs) + 2.4), 0.42 * len(
                    {r.C for r in g.runs}) * len(cols) + 1.3 * len(cols) + 0.4), squeeze=False)
                table = []
                grids = {(i, split): grid(rs, metric, split, epochs) for i, (_, rs) in enumerate(cols)
                         for split in ("train", "test")}
                allv = np.concatenate([G[np.isfinite(G)] for _, G, _ in grids.values()])
                vr = (float(allv.min()), float(allv.max())) if allv.size else None  # one scale: control comparable
                for i, (ctitle, rs) in enumerate(cols):
                    for j, (split, cmap) in enumerate((("train", "Greens"), ("test", "Purples"))):
                        Cs, G, N = grids[(i, split)]
                        heatmap(axes[i, j], fig, G, elabels, [str(c) for c in Cs], cmap,
                                f"{cl_pair(rs[0]).replace('-', '–')} {metric.upper()} ({split})", "epoch",
                                "classes C′", counts=N, vrange=vr)
                        axes[i, j].set_title(f"{split} reference set, {ctitle}", fontsize=8)
                        for c, row in zip(Cs, G):
                            table.append({"labels": ctitle, "split": split, "C": c,
                                          **{f"epoch_{e:g}": v for e, v in zip(epochs, row)}})
                fig.suptitle(f"Fig. {fig_no[3:]}: CL–NSCL {metric.upper()} vs number of classes C′ — "
                             f"{g.runs[0].describe(('dataset', 'arch')).split(', C')[0]}", fontsize=9, x=0.01,
                             ha="left")
                name = f"{fig_no}_{metric}_vs_classes{sfx}"
                written += out.save(fig, name)
                written.append(out.csv(name, table))
    return written
