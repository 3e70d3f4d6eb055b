"""Blog Fig. 3: (top) the contrastive loss (DCL or CL), the NSCL loss of the same model and the companion
paper's bound on the contrastive loss, L^NSCL + log(1 + e^{2/tau}/(C - 1)), over training; (bottom) the NSCL
loss of the contrastive-trained and of the NSCL-trained model side by side. One column per dataset / number of
classes; measured on the run's fixed reference batch (theory.csv; a ``split`` column, where present, adds the
test set as dashed curves)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from .discover import Catalog, by_value, group_runs
from .plotting import integer_epochs, MATH, MODEL_COLOR, Missing, Output, draw_curves, legend_below, plt, series, style

NAME = "blog_fig3_losses"
CAPTION = ("Contrastive and NSCL losses with the loss-gap bound over training (top); NSCL loss of a "
           "contrastive-trained and an NSCL-trained model (bottom).")
NEEDS = ("encoder runs with theory.csv loss-gap columns (theory = true) "
         "(python -m experiments.sweep configs/small/blog_fig3_lossgap_training.toml)")


def select(cat: Catalog) -> list:
    return [r for r in cat.encoder if any(t.get("lossgap_loss_kind_clmodel") is not None for t in r.theory)]


def _rows(run, split: str) -> list[dict]:
    rows = run.theory
    if any("split" in t for t in rows):
        return [t for t in rows if t.get("split") == split]
    return rows if split == "train" else []


def _plus(rows, a: str, b: str) -> list[dict]:
    out = []
    for t in rows:
        if t.get(a) is not None and t.get(b) is not None:
            out.append({"epoch": t["epoch"], "v": float(t[a]) + float(t[b])})
    return out


def make(cat: Catalog, out: Output) -> list[Path]:
    runs = select(cat)
    if not runs:
        raise Missing(NEEDS)
    vary = {"classes", "class_seed", "dataset", "data_root"}
    # the runs over class counts / datasets, as the blog (CIFAR-10 vs CIFAR-100); else every setting alone
    groups = (group_runs(runs, vary, by=lambda r: (str(r.config.get("dataset")), r.C))
              or group_runs(runs, vary, by=lambda r: 0, min_values=1))
    written = []
    p = plt()
    with style():
        for g in groups:
            cols = by_value(g.runs, lambda r: (r.label_noise, str(r.config.get("dataset")), r.C))
            fig, axes = p.subplots(2, len(cols), figsize=(2.9 * len(cols) + 0.8, 5.2), squeeze=False, sharex="col")
            for j, ((noise, ds, C), rs) in enumerate(cols):
                kind = rs[0].contrastive
                for split, ls in (("train", "-"), ("test", "--")):
                    data = [_rows(r, split) for r in rs]
                    if not any(data):
                        continue
                    a0, a1 = axes[0, j], axes[1, j]
                    # colour = the model evaluated, marker = the loss (circle: contrastive, square: NSCL)
                    draw_curves(a0, [series(d, "epoch", "lossgap_loss_kind_clmodel") for d in data],
                                f"{MATH[kind]} of the {kind}-trained model", MODEL_COLOR[kind], ls=ls)
                    draw_curves(a0, [series(d, "epoch", "lossgap_loss_nscl_clmodel") for d in data],
                                f"{MATH['NSCL']} of the {kind}-trained model", MODEL_COLOR[kind], ls=ls, marker="s",
                                mfc="white")
                    draw_curves(a0, [series(_plus(d, "lossgap_loss_nscl_clmodel", "lossgap_bound_balanced_clmodel"),
                                            "epoch", "v") for d in data],
                                r"bound $\mathcal{L}^{\mathrm{NSCL}} + \log(1 + e^{2/\tau}/(C-1))$", "k", ls=ls,
                                marker="none", lw=1.0)
                    draw_curves(a1, [series(d, "epoch", "lossgap_loss_nscl_clmodel") for d in data],
                                f"{MATH['NSCL']} of the {kind}-trained model", MODEL_COLOR[kind], ls=ls, marker="s",
                                mfc="white")
                    draw_curves(a1, [series(d, "epoch", "lossgap_loss_nscl_nsclmodel") for d in data],
                                f"{MATH['NSCL']} of the NSCL-trained model", MODEL_COLOR["NSCL"], ls=ls, marker="s")
                tau = float(rs[0].config["tau"])
                lab = f"{ds}, C = {C}, τ = {tau:g}" + (f"\nrandom labels p = {noise:g}" if noise > 0 else "")
                if len(rs) > 1:
                    lab += f"\nmean of {len(rs)} runs (band = min–max)"
                axes[0, j].set_title(lab, fontsize=8)
                axes[1, j].set_xlabel("epoch")
            axes[0, 0].set_ylabel("loss (reference batch)")
            axes[1, 0].set_ylabel(r"$\mathcal{L}^{\mathrm{NSCL}}$ (reference batch)")
            extra = []
            if any(_rows(r, "test") for r in g.runs):  # split keys only when both splits are drawn
                extra = [(Line2D([], [], color="0.3", ls="-"), "train"), (Line2D([], [], color="0.3", ls="--"), "test")]
            integer_epochs(axes.ravel())
            legend_below(fig, axes.ravel(), extra=extra, ncol=3)
            fig.suptitle("Contrastive vs NSCL loss during training, with the loss-gap bound", fontsize=9, x=0.01,
                         ha="left")
            written += out.save(fig, NAME + (f"__{g.suffix}" if g.suffix else ""))
    return written
