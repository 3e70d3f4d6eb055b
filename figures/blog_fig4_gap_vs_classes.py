"""Blog Fig. 4: the loss gap L^DCL - L^NSCL (or L^CL - L^NSCL) of the contrastive-trained model against the
number of classes C (runs over class subsets), at every evaluated epoch, with the bound log(1 + e^{2/tau}/(C-1))
(the blog's log(1 + e^2/(C - 1)) at tau = 1) drawn as a curve over C; random-label control dashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .discover import Catalog, by_value, group_runs
from .plotting import Missing, Output, legend_below, ordered_colors, plt, series, style
from .blog_fig3_losses import _rows, select

NAME = "blog_fig4_gap_vs_classes"
CAPTION = ("The loss gap between the contrastive and the NSCL loss of the contrastive-trained model against the "
           "number of classes C, with the bound log(1 + e^{2/τ}/(C − 1)).")
NEEDS = ("encoder runs with theory.csv loss-gap columns that differ only in the number of classes C' "
         "(python -m experiments.sweep configs/small/blog_fig4_lossgap_classes.toml)")


def make(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(select(cat), {"classes", "class_seed"}, by=lambda r: r.C)
    if not groups:
        raise Missing(NEEDS)
    written = []
    p = plt()
    with style():
        for g in groups:
            tau = float(g.runs[0].config["tau"])
            kind = g.runs[0].contrastive
            fig, ax = p.subplots(figsize=(5.0, 3.6))
            epochs = sorted({float(e) for r in g.runs for e in series(_rows(r, "train"), "epoch",
                                                                        "lossgap_gap_clmodel")[0]})
            colors = dict(zip(epochs, ordered_colors(len(epochs))))
            table = []
            for noise, rs_all in by_value(g.runs, lambda r: r.label_noise):
                for e in epochs:
                    xs, ys = [], []
                    for C, reps in by_value(rs_all, lambda r: r.C):
                        vals = []
                        for r in reps:
                            x, y = series(_rows(r, "train"), "epoch", "lossgap_gap_clmodel")
                            vals += [float(v) for a, v in zip(x, y) if abs(a - e) < 1e-9]
                        if vals:
                            xs.append(C)
                            ys.append(float(np.mean(vals)))
                            table.append({"label_noise": noise, "epoch": e, "C": C, "gap": ys[-1],
                                          "bound": float(np.log1p(np.exp(2 / tau) / (C - 1))), "n": len(vals)})
                    if xs:
                        lab = f"epoch {e:g}" + (f", random labels p={noise:g}" if noise > 0 else "")
                        ls = ("--" if noise > 0 else "-") if len(xs) >= 3 else "none"  # 2 points on log axes: markers
                        ax.plot(xs, ys, ls=ls, marker="o", color=colors[e], label=lab)
            Cs = sorted({r.C for r in g.runs})
            grid = np.linspace(min(Cs), max(Cs), 200)
            ax.plot(grid, np.log1p(np.exp(2 / tau) / (grid - 1)), color="k", lw=1.2,
                    label=rf"bound $\log(1 + e^{{2/\tau}}/(C-1))$, $\tau$ = {tau:g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(Cs)
            ax.set_xticklabels([str(c) for c in Cs])
            ax.minorticks_off()
            ax.set_xlabel("number of classes C")
            ax.set_ylabel(rf"$\mathcal{{L}}^{{\mathrm{{{kind}}}}} - \mathcal{{L}}^{{\mathrm{{NSCL}}}}$ "
                          f"({kind}-trained model)")
            ax.set_title(f"Loss gap vs number of classes — {g.runs[0].config.get('dataset')}", fontsize=9)
            legend_below(fig, [ax], ncol=3)
            name = NAME + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written
