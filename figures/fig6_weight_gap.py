"""Fig. 6: mean relative weight gap (Sec. 5.1) between the contrastive model and each supervised model over
epochs (the same runs as Fig. 2); random-label control in its own column."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog, group_runs
from .plotting import integer_epochs, Missing, Output, draw_curves, legend_below, pair_label, plt, series, style
from ._encoder import column_title, pair_colors, pair_rows, settings_columns

NAME = "fig6_weight_gap"
CAPTION = ("Weight-space gap: mean over layers of ||W_CL - W_X||_F / ||W_CL||_F between the contrastive model "
           "and each supervised model X, over epochs.")
NEEDS = ("an encoder run with >= 2 losses and weight_gap_mean in metrics.csv "
         "(python -m experiments.sweep configs/small/fig6_weight_gap.toml)")


def select(cat: Catalog) -> list:
    sel = [r for r in cat.encoder if len(r.losses) >= 3]
    return sel or [r for r in cat.encoder if any(m.get("weight_gap_mean") is not None for m in r.metrics)]


def make(cat: Catalog, out: Output) -> list[Path]:
    runs = select(cat)
    if not runs:
        raise Missing(NEEDS)
    groups = group_runs(runs, set(), by=lambda r: 0, min_values=1)
    written = []
    p = plt()
    with style():
        for g in groups:
            cols = settings_columns(g)
            fig, axes = p.subplots(1, len(cols), figsize=(3.6 * len(cols) + 0.6, 3.0), squeeze=False,
                                   sharey="row")
            for j, (title, rs) in enumerate(cols):
                for pair, col in pair_colors(rs):
                    curves = [series(pair_rows(r, pair, "train"), "epoch", "weight_gap_mean") for r in rs]
                    draw_curves(axes[0, j], curves, pair_label(pair), col)
                axes[0, j].set_title(column_title(title, rs), fontsize=8)
                axes[0, j].set_xlabel("epoch")
            axes[0, 0].set_ylabel("mean relative weight gap")
            integer_epochs(axes.ravel())
            legend_below(fig, axes.ravel())
            fig.suptitle("Weight-space gap between the contrastive and the supervised models (Sec. 5.1)",
                         fontsize=9, x=0.01, ha="left")
            written += out.save(fig, NAME + (f"__{g.suffix}" if g.suffix else ""))
    return written
