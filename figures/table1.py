"""Table 1: nearest class-centre classifier (NCCC) and linear-probe (LP) test accuracy (%) of every model at
its run's last evaluation that has them; the runs of Fig. 2 (>= 3 losses), or every encoder run if there are
none. CSV (long form) + Markdown + LaTeX (rows = models, columns = runs)."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog
from .plotting import Missing, Output

NAME = "table1_accuracy"
CAPTION = ("Nearest class-centre classifier (NCCC) and linear-probe (LP) test accuracy (%), all-way "
           "classification, at the last evaluation.")
NEEDS = "an encoder run with models.csv (python -m experiments.sweep configs/small/table1_accuracy.toml)"


def select(cat: Catalog) -> list:
    runs = [r for r in cat.encoder if r.models]
    return [r for r in runs if len(r.losses) >= 3] or runs


def _last(rows: list[dict], key: str):
    vals = [m for m in rows if m.get(key) is not None and m.get(key) != ""]
    return vals[-1] if vals else None


def make(cat: Catalog, out: Output) -> list[Path]:
    runs = select(cat)
    if not runs:
        raise Missing(NEEDS)
    long_rows = []
    models: list[str] = []
    cells: dict[tuple[str, str], tuple[str, str]] = {}
    for r in runs:
        for name in dict.fromkeys(str(m["model"]) for m in r.models):
            sel = [m for m in r.models if str(m.get("model")) == name]
            nc, lp = _last(sel, "nccc"), _last(sel, "linear_probe")
            nccc = f"{100 * float(nc['nccc']):.2f}" if nc else "-"
            lpv = f"{100 * float(lp['linear_probe']):.2f}" if lp else "-"
            ep = nc.get("epoch") if nc else None
            long_rows.append({"run": r.name, "setting": r.describe(), "model": name,
                              "epoch": "" if ep is None else f"{float(ep):g}", "NCCC": nccc, "LP": lpv})
            if name not in models:
                models.append(name)
            cells[(r.name, name)] = (nccc, lpv)
    written = [out.csv(NAME + "_long", long_rows, ["run", "setting", "model", "epoch", "NCCC", "LP"])]
    header = ["model"] + [f"{r.describe()} {k}" for r in runs for k in ("NCCC", "LP")]
    rows = [[m] + [v for r in runs for v in cells.get((r.name, m), ("-", "-"))] for m in models]
    written += out.table(NAME, header, rows, CAPTION)
    return written
