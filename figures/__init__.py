"""Every figure and table of the paper and the companion blog, regenerated from result files only.

``python -m figures [--only NAME ...] [--runs DIR ...] [--out DIR] [--formats png pdf]`` searches the ``--runs``
directories (default ``./runs``) recursively for result directories, recognised by their ``config.json``
(figures.discover: encoder runs of ``experiments.bound_vs_empirical`` / ``experiments.sweep``, Sigma-space runs of
``simulate.sigma_descent`` / ``simulate.sweep``), groups them by config values and writes every figure the runs
support. A figure whose inputs are missing is skipped with ONE line naming the sweep config to run; nothing is
drawn empty.

One module per figure or table (each ``make(catalog, output) -> paths``):

  fig1_directions            Fig. 1 (App. A.2): weight vs representation directions, CKA/RSA/weight gap
  fig2_alignment             Fig. 2: CKA / RSA of the contrastive model with NSCL, SCL, CE over epochs
  fig3_classes               Figs. 3 / 7: CL-NSCL CKA / RSA heat-maps over C' and epoch, train and test
  fig4_tau                   Fig. 4: CL-NSCL RSA / CKA over epochs per tau
  fig5_batch                 Fig. 5: one panel per learning-rate scaling rule, one curve per batch size B
  fig6_weight_gap            Fig. 6: mean relative weight gap over epochs
  table1                     Tab. 1: NCCC and linear-probe accuracy (CSV, Markdown, LaTeX)
  blog_fig3_losses           blog Fig. 3: contrastive and NSCL losses with the loss-gap bound over training
  blog_fig4_gap_vs_classes   blog Fig. 4: loss gap vs C with log(1 + e^{2/tau}/(C - 1))
  blog_fig6_table            blog Fig. 6: CKA / RSA table across datasets and architectures
  sigma_fig3_classes, sigma_fig4_tau, sigma_fig5_batch   Sigma-space counterparts of Figs. 3-5
  per_run                    per-run bounds / theory / Sigma-drift figures (under per_run/)

Each figure's random-label control (runs with ``label_noise`` > 0 and otherwise the same config) is drawn beside
it. Output names are unique and readable (``fig4_tau__dataset=synthetic``); nothing is written twice.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from . import (
    blog_fig3_losses,
    blog_fig4_gap_vs_classes,
    blog_fig6_table,
    fig1_directions,
    fig2_alignment,
    fig3_classes,
    fig4_tau,
    fig5_batch,
    fig6_weight_gap,
    per_run,
    sigma_sweeps,
    table1,
)
from .discover import Catalog, EncoderRun, SigmaRun, find_runs, group_runs
from .plotting import Missing, Output

__all__ = ["FIGURES", "CAPTIONS", "regenerate", "main", "find_runs", "group_runs", "Catalog", "EncoderRun",
           "SigmaRun", "COMMANDS"]

COMMANDS = ("python -m experiments.sweep configs/small/<name>.toml (encoder runs)",
            "python -m simulate.sweep --out runs/small/sigma_<name> (Sigma-space runs)")

#: name -> (make function, caption); order = the order of the paper, then the blog, then Sigma-space
FIGURES: dict[str, tuple[Callable[[Catalog, Output], list[Path]], str]] = {
    "fig1_directions": (fig1_directions.make, fig1_directions.CAPTION),
    "fig2_alignment": (fig2_alignment.make, fig2_alignment.CAPTION),
    "fig3_classes": (fig3_classes.make, fig3_classes.CAPTION),
    "fig4_tau": (fig4_tau.make, fig4_tau.CAPTION),
    "fig5_batch": (fig5_batch.make, fig5_batch.CAPTION),
    "fig6_weight_gap": (fig6_weight_gap.make, fig6_weight_gap.CAPTION),
    "table1": (table1.make, table1.CAPTION),
    "blog_fig3_losses": (blog_fig3_losses.make, blog_fig3_losses.CAPTION),
    "blog_fig4_gap_vs_classes": (blog_fig4_gap_vs_classes.make, blog_fig4_gap_vs_classes.CAPTION),
    "blog_fig6_table": (blog_fig6_table.make, blog_fig6_table.CAPTION),
    "sigma_fig3_classes": (sigma_sweeps.make_classes, sigma_sweeps.CAPTIONS["sigma_fig3_classes"]),
    "sigma_fig4_tau": (sigma_sweeps.make_tau, sigma_sweeps.CAPTIONS["sigma_fig4_tau"]),
    "sigma_fig5_batch": (sigma_sweeps.make_batch, sigma_sweeps.CAPTIONS["sigma_fig5_batch"]),
    "per_run": (per_run.make, per_run.CAPTION),
}
CAPTIONS = {k: v[1] for k, v in FIGURES.items()}


def regenerate(roots: Sequence[str | Path], out: str | Path, only: Sequence[str] | None = None,
               catalog: Catalog | None = None, formats: Sequence[str] = ("png", "pdf"),
               dpi: float | None = None) -> dict[str, Any]:
    """Write every figure / table (or those in ``only``) that the runs under ``roots`` support into ``out``.

    Returns {"written": {figure: [paths]}, "skipped": {figure: one-line reason}, "encoder_runs": n,
    "sigma_runs": n, "summaries": {figure file stem: what it shows}}. ValueError for an unknown name in
    ``only``. ``formats``: image formats written per figure (png, pdf)."""
    names = list(FIGURES) if not only else list(only)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        raise ValueError(f"--only must name figures among {', '.join(FIGURES)}, got {bad[0]!r}")
    cat = catalog if catalog is not None else find_runs(roots)
    output = Output(out, formats, dpi)
    written: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    for n in names:
        before = len(output.written)
        try:
            FIGURES[n][0](cat, output)
        except Missing as e:
            skipped[n] = str(e)
            continue
        written[n] = output.written[before:]
    return {"written": written, "skipped": skipped, "encoder_runs": len(cat.encoder), "sigma_runs": len(cat.sigma),
            "summaries": output.summaries}


def main(argv: Sequence[str] | None = None) -> int:
    from runio.cli import OneLineParser, fail, parse_with_config
    from runio.outdir import check_out_dir

    p = OneLineParser(prog="python -m figures", description="Regenerate the paper's and the blog's "
                                "figures and tables from result files (no training).")
    p.add_argument("--runs", nargs="+", default=["runs"], help="directories searched recursively (default ./runs)")
    p.add_argument("--out", default=None, help="output directory (default: figures/ inside the first --runs)")
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"only these figures: {', '.join(FIGURES)}")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], choices=("png", "pdf", "svg"),
                   help="image formats of every figure (default png pdf)")
    p.add_argument("--quiet", action="store_true")
    a = parse_with_config(p, argv)
    if a.only:
        bad = [n for n in a.only if n not in FIGURES]
        if bad:
            p.error(f"--only must name figures among {', '.join(FIGURES)}, got {bad[0]!r}")
    missing = [r for r in a.runs if not Path(r).is_dir()]
    if missing:
        p.error(f"--runs must name existing directories, got {missing[0]!r} "
                f"({'a file' if Path(missing[0]).exists() else 'no such directory'})")
    try:  # --out checked before anything else: a file or a path below a file is one line, nothing written
        check_out_dir(Path(a.out) if a.out is not None else Path(a.runs[0]) / "figures")
    except ValueError as e:
        return fail(p.prog, e)
    cat = find_runs(a.runs)
    if not len(cat):
        print(f"figures: no result directories under {' '.join(a.runs)}; produce them with: "
              f"{'  or  '.join(COMMANDS)}", file=sys.stderr)
        return 1
    out = Path(a.out) if a.out is not None else Path(a.runs[0]) / "figures"
    try:
        res = regenerate(a.runs, out, a.only, catalog=cat, formats=a.formats)
    except ValueError as e:
        return fail(p.prog, e)
    if not a.quiet:
        print(f"{res['encoder_runs']} encoder run(s), {res['sigma_runs']} Sigma-space run(s) -> {out}")
        for n, paths in res["written"].items():
            shown = [x for x in paths if x.suffix != ".pdf"]
            print(f"  {n}: {len(paths)} file(s), e.g. {shown[0] if shown else paths[0]}" if paths else f"  {n}: -")
        for n, why in res["skipped"].items():
            print(f"  skipped {n}: needs {why}")
    return 0
