"""Fig. 2: CKA (top) and RSA (bottom) between the contrastive model and each supervised model (NSCL, SCL, CE)
over epochs; train reference set solid, test dashed; random-label control in its own column."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from .discover import Catalog, group_runs
from .plotting import integer_epochs, Missing, Output, draw_curves, legend_below, pair_label, plt, style
from ._encoder import column_title, pair_colors, pair_rows, settings_columns
from .plotting import series

NAME = "fig2_alignment"
CAPTION = ("Alignment during training: CKA / RSA between the contrastive model and the NSCL-, SCL- and "
           "CE-trained models (same initialisation, batches and augmentations).")
NEEDS = ("an encoder run with >= 3 losses, e.g. losses CL/DCL, NSCL, SCL, CE "
         "(python -m experiments.sweep configs/small/fig2_losses.toml)")


def select(cat: Catalog) -> list:
    return [r for r in cat.encoder if len(r.losses) >= 3]


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
            fig, axes = p.subplots(2, len(cols), figsize=(3.6 * len(cols) + 0.6, 5.0), squeeze=False,
                                   sharex="col", sharey="row")
            for j, (title, rs) in enumerate(cols):
                for pair, col in pair_colors(rs):
                    for split, ls in (("train", "-"), ("test", "--")):
                        for i, metric in enumerate(("cka", "rsa")):
                            curves = [series(pair_rows(r, pair, split), "epoch", metric) for r in rs]
                            draw_curves(axes[i, j], curves, pair_label(pair), col, ls=ls,
                                        marker="o" if split == "train" else "none")
                axes[0, j].set_title(column_title(title, rs), fontsize=8)
                axes[1, j].set_xlabel("epoch")
            axes[0, 0].set_ylabel("CKA")
            axes[1, 0].set_ylabel("RSA")
            keys = [(Line2D([], [], color="0.3", ls="-", marker="o"), "train reference set"),
                    (Line2D([], [], color="0.3", ls="--"), "test reference set")]
            integer_epochs(axes.ravel())
            legend_below(fig, axes.ravel(), extra=keys, ncol=3)
            fig.suptitle("Alignment with the contrastive model during training", fontsize=9, x=0.01, ha="left")
            name = NAME + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
    return written
