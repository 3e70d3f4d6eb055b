"""Per-run figures: for each encoder run its measured alignment vs the Cor. 1-2 certificates over epochs and its
App. B panels (experiments.plot), for each Sigma-space run its drift vs Thm. 1 and its certificates
(simulate.plot). Written under ``per_run/`` as ``<run name>__bounds``, ``<run name>__theory``,
``<run name>__sigma``; run names are unique (figures.discover)."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog
from .plotting import Missing, Output

NAME = "per_run"
CAPTION = "One figure per run: measured alignment vs the certified bounds (encoder runs), Σ-drift vs Thm. 1."
NEEDS = "any run (python -m experiments.bound_vs_empirical --out runs/bve, python -m simulate.sigma_descent)"


def _stem(out: Output, name: str) -> Path:
    """Claim name.png / name.pdf in ``out`` and return the stem for a plotting function that appends them."""
    out._claim(f"{name}.png")
    out._claim(f"{name}.pdf")
    return out.dir / name


def make(cat: Catalog, out: Output) -> list[Path]:
    if not len(cat):
        raise Missing(NEEDS)
    from experiments import plot as eplot
    from simulate.plot import plot_sigma_run

    written: list[Path] = []
    for r in cat.encoder:
        stem = _stem(out, f"per_run/{r.name}__bounds")
        written += eplot.plot_alignment_run(r.metrics, stem, contrastive=r.contrastive, x="epoch")
        if r.theory:
            stem = _stem(out, f"per_run/{r.name}__theory")
            written += eplot.plot_theory_run(r.theory, stem, x="epoch")
    for r in cat.sigma:
        stem = _stem(out, f"per_run/{r.name}__sigma")
        written += plot_sigma_run(r.path, stem)
    return written
