"""Blog Fig. 3: the contrastive loss (DCL or CL), the NSCL loss of the same model and the companion paper's bound
on the contrastive loss, L^NSCL + log(1 + e^{2/tau}/(C - 1)), over training on the train reference batch (top row)
and on the test reference batch (middle row); (bottom) the NSCL loss of the contrastive-trained and of the
NSCL-trained model side by side (train solid, test dashed). One column per dataset / number of classes; read from
theory.csv: ``lossgap_*`` (train batch) and ``lossgap_test_*`` (test batch; runs made before it existed draw the
train row only). Writes ``blog_fig3_losses[__suffix].csv`` with every plotted value and its run names.
"""

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
    """theory.csv rows of one reference batch, with the loss-gap columns under their train names
    (``lossgap_test_X`` -> ``lossgap_X`` for the test batch); [] where the run did not measure that split."""
    rows = run.theory
    if split == "train":
        return rows
    out = []
    for t in rows:
        if t.get("lossgap_test_loss_kind_clmodel") is None:
            continue
        out.append({"epoch": t["epoch"], **{"lossgap_" + k[len("lossgap_test_"):]: v for k, v in t.items()
                                            if k.startswith("lossgap_test_")}})
    return out


def _plus(rows, a: str, b: str) -> list[dict]:
    out = []
    for t in rows:
        if t.get(a) is not None and t.get(b) is not None:
            out.append({"epoch": t["epoch"], "v": float(t[a]) + float(t[b])})
    return out


SPLITS = (("train", "-"), ("test", "--"))


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
            fig, axes = p.subplots(3, len(cols), figsize=(2.9 * len(cols) + 0.8, 7.2), squeeze=False, sharex="col")
            table: list[dict] = []
            for j, ((noise, ds, C), rs) in enumerate(cols):
                kind = rs[0].contrastive
                tau = float(rs[0].config["tau"])
                for i, (split, ls) in enumerate(SPLITS):
                    data = [_rows(r, split) for r in rs]
                    if not any(data):
                        axes[i, j].text(0.5, 0.5, f"no {split}-batch loss\nin these runs", ha="center", va="center",
                                        transform=axes[i, j].transAxes, fontsize=7, color="0.4")
                        continue
                    a0, a1 = axes[i, j], axes[2, j]
                    n_have = sum(1 for d in data if d)
                    if n_have < len(rs):  # runs made before the test batch existed: say how many curves are in
                        a0.text(0.98, 0.5, f"{split}: {n_have} of {len(rs)} runs", ha="right", va="center",
                                transform=a0.transAxes, fontsize=7, color="0.4")
                    # colour = the model evaluated, marker = the loss (circle: contrastive, square: NSCL)
                    draw_curves(a0, [series(d, "epoch", "lossgap_loss_kind_clmodel") for d in data],
                                f"{MATH[kind]} of the {kind}-trained model", MODEL_COLOR[kind], ls=ls)
                    draw_curves(a0, [series(d, "epoch", "lossgap_loss_nscl_clmodel") for d in data],
                                f"{MATH['NSCL']} of the {kind}-trained model", MODEL_COLOR[kind], ls=ls, marker="s",
                                mfc="white")
                    draw_curves(a0, [series(_plus(d, "lossgap_loss_nscl_clmodel", "lossgap_bound_balanced_clmodel"),
                                            "epoch", "v") for d in data],
                                r"bound $\mathcal{L}^{\mathrm{NSCL}} + \log(1 + e^{2/\tau}/(C-1))$", "k",
                                ls=ls, marker="none", lw=1.0)
                    draw_curves(a1, [series(d, "epoch", "lossgap_loss_nscl_clmodel") for d in data],
                                f"{MATH['NSCL']} of the {kind}-trained model", MODEL_COLOR[kind], ls=ls, marker="s",
                                mfc="white")
                    draw_curves(a1, [series(d, "epoch", "lossgap_loss_nscl_nsclmodel") for d in data],
                                f"{MATH['NSCL']} of the NSCL-trained model", MODEL_COLOR["NSCL"], ls=ls, marker="s")
                    for r, d in zip(rs, data):
                        for t in d:
                            table.append({"dataset": ds, "C": C, "label_noise": noise, "tau": tau, "split": split,
                                          "run": r.name, "epoch": t["epoch"], "kind": kind,
                                          "loss_kind_clmodel": t.get("lossgap_loss_kind_clmodel"),
                                          "loss_nscl_clmodel": t.get("lossgap_loss_nscl_clmodel"),
                                          "gap_clmodel": t.get("lossgap_gap_clmodel"),
                                          "bound_balanced": t.get("lossgap_bound_balanced_clmodel"),
                                          "loss_nscl_nsclmodel": t.get("lossgap_loss_nscl_nsclmodel")})
                lab = f"{ds}, C = {C}, τ = {tau:g}" + (f"\nrandom labels p = {noise:g}" if noise > 0 else "")
                if len(rs) > 1:
                    lab += f"\nmean of {len(rs)} runs (band = min–max)"
                axes[0, j].set_title(lab, fontsize=8)
                axes[2, j].set_xlabel("epoch")
            axes[0, 0].set_ylabel("loss, train reference batch")
            axes[1, 0].set_ylabel("loss, test reference batch")
            axes[2, 0].set_ylabel(r"$\mathcal{L}^{\mathrm{NSCL}}$ (train —, test - -)")
            extra = [(Line2D([], [], color="0.3", ls="-"), "train batch"),
                     (Line2D([], [], color="0.3", ls="--"), "test batch")]
            integer_epochs(axes.ravel())
            legend_below(fig, axes.ravel(), extra=extra, ncol=3)
            fig.suptitle("Contrastive vs NSCL loss during training, with the loss-gap bound (train and test)",
                         fontsize=9, x=0.01, ha="left")
            name = NAME + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written
