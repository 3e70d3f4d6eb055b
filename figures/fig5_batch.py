"""Fig. 5: CL-NSCL alignment over epochs for several batch sizes B, one panel per learning-rate scaling rule
(eta proportional to B, sqrt(B), B^(1/4), constant), each with every B run under that rule; the random-label
control in extra panels. Every run of the sweep appears in at least one panel (figures.scaling)."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog, group_runs
from .plotting import Missing, Output, style
from ._encoder import sweep_figure
from .scaling import families

NAME = "fig5_batch"
CAPTION = ("Effect of the batch size B with scaled learning rates: one panel per scaling rule, one curve per B. "
           "The theory predicts alignment falling with B under η ∝ B and rising with B under the other rules.")
NEEDS = ("encoder runs that differ only in the batch size B and its learning rate "
         "(python -m experiments.sweep configs/small/fig5_batch.toml)")


def _b(r) -> int:
    return int(r.config["batch_size"])


def _lr(r) -> float:
    return float(r.config["lr"])


def make(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(cat.encoder, {"batch_size", "lr", "lr_rule", "lr_scaling"}, by=_b)
    if not groups:
        raise Missing(NEEDS)
    written = []
    with style():
        for g in groups:
            def with_lr(label, rs):  # the learning rates of the panel, in B order
                lrs = ", ".join(f"{lr:.3g}" for _, lr in sorted({(_b(r), _lr(r)) for r in rs}))
                return f"{label}\nη = {lrs}"

            panels = [(with_lr(label, rs), rs) for label, rs in families(g.main, _b, _lr)]
            panels += [(with_lr(f"{label}, random labels", rs), rs) for label, rs in families(g.controls, _b, _lr)]
            fig, table = sweep_figure(g, _b, lambda v: f"B = {v}", "Effect of the batch size B with scaled "
                                      "learning rates on CL–NSCL alignment", metrics=("cka", "rsa"),
                                      panels=panels, sharey=False)
            for row in table:
                row["lr"] = " ".join(f"{_lr(r):g}" for r in g.runs if r.name in row["runs"].split())
            name = NAME + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written
