"""Table 1: nearest class-centre classifier (NCCC) and linear-probe (LP) test accuracy (%) of every model at
its run's last evaluation that has them; the runs of Fig. 2 (>= 3 losses), or every encoder run if there are
none. CSV (long form) + Markdown + LaTeX (rows = models, columns = runs)."""

from __future__ import annotations

from pathlib import Path

from .discover import Catalog, by_value, group_runs
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
    for r in runs:
        for name in dict.fromkeys(str(m["model"]) for m in r.models):
            sel = [m for m in r.models if str(m.get("model")) == name]
            nc, lp = _last(sel, "nccc"), _last(sel, "linear_probe")
            ep = nc.get("epoch") if nc else None
            long_rows.append({"run": r.name, "setting": r.describe(), "model": name,
                              "epoch": "" if ep is None else f"{float(ep):g}",
                              "NCCC": f"{100 * float(nc['nccc']):.2f}" if nc else "-",
                              "LP": f"{100 * float(lp['linear_probe']):.2f}" if lp else "-"})
            if name not in models:
                models.append(name)
    written = [out.csv(NAME + "_long", long_rows, ["run", "setting", "model", "epoch", "NCCC", "LP"])]
    # wide table: one column pair per setting; runs of one setting (seeds, repeated configs) are averaged
    groups = group_runs(runs, set(), by=lambda r: 0, min_values=1)
    header, cols = ["model"], []
    for g in groups:
        for p, rs in ((0.0, g.main), *[(q, c) for q, c in by_value(g.controls, lambda r: r.label_noise)]):
            if not rs:
                continue
            tag = rs[0].describe() + (f" (mean of {len(rs)})" if len(rs) > 1 else "")
            header += [f"{tag} NCCC", f"{tag} LP"]
            cols.append({r.name for r in rs})
    rows = []
    for m in models:
        row = [m]
        for names in cols:
            for key in ("NCCC", "LP"):
                vals = [float(x[key]) for x in long_rows if x["run"] in names and x["model"] == m and x[key] != "-"]
                row.append(f"{sum(vals) / len(vals):.2f}" if vals else "-")
        rows.append(row)
    written += out.table(NAME, header, rows, CAPTION)
    return written
