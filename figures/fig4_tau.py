"""Fig. 4: CL-NSCL RSA (top) and CKA (bottom) over epochs, one curve per temperature tau (runs that differ only
in tau); the random-label control beside it."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog, group_runs
from .plotting import Missing, Output, style
from ._encoder import sweep_figure

NAME = "fig4_tau"
CAPTION = "Higher τ increases the CL–NSCL alignment: RSA and CKA over epochs, one curve per τ."
NEEDS = "encoder runs that differ only in tau (python -m experiments.sweep configs/small/fig4_tau.toml)"


def make(cat: Catalog, out: Output) -> list[Path]:
    groups = group_runs(cat.encoder, {"tau"})
    if not groups:
        raise Missing(NEEDS)
    written = []
    with style():
        for g in groups:
            fig, table = sweep_figure(g, lambda r: float(r.config["tau"]), lambda v: f"τ = {v:g}",
                                      "Effect of the temperature τ on CL–NSCL alignment")
            name = NAME + (f"__{g.suffix}" if g.suffix else "")
            written += out.save(fig, name)
            written.append(out.csv(name, table))
    return written
