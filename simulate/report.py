"""Verdict tables of checks.json: one run, and several runs side by side (--compare)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


import runio

from .claims import CLAIM_ORDER
from .config import SigmaConfig


def _fmt_ratio(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if x == math.inf:
        return "inf"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _holds_str(h: Any, vacuous: bool = False) -> str:
    """yes / NO / n/a; a certificate whose lower bound never exceeded 0 reads "vacuous", not "yes"."""
    if h is None:
        return "n/a"
    if h and vacuous:
        return "vacuous"
    return "yes" if h else "NO"


def format_verdict_table(doc: dict, width: int = 110) -> str:
    """Markdown verdict table of a checks.json: claim, evaluated, max LHS/RHS, holds, note."""
    lines = ["| claim | evaluated | max LHS/RHS | holds | violations | premise failed (there: max ratio, violations) | note |",
             "|---|---:|---:|:---:|---:|---:|---|"]
    for cid in CLAIM_ORDER:
        if cid not in doc:
            continue
        o = doc[cid]
        note = o.get("note", "")
        if len(note) > width:
            note = note[: width - 3] + "..."
        note = note.replace("|", "\\|")  # markdown cell
        pf = str(o["premise_failed"])
        if o["premise_failed"]:
            pf += f" (max {_fmt_ratio(o.get('max_ratio_outside_premise'))}, {o.get('violations_outside_premise', 0)} viol.)"
        mx = _fmt_ratio(o["max_ratio"])
        if o.get("kind") == "eq" and o["evaluated"]:
            mx = f"{_fmt_ratio(o.get('min_ratio'))}..{mx} (dev {_eq_dev(o):.2g})"
        lines.append(f"| {cid} | {o['evaluated']} | {mx} | {_holds_str(o['holds'], bool(o.get('vacuous')))} | "
                     f"{o['violations']} | {pf} | {note} |")
    return "\n".join(lines)


def load_checks(run_dir: str | Path) -> tuple[dict, dict]:
    """(checks.json, config.json) of a run directory (ValueError if missing)."""
    d = Path(run_dir)
    out = []
    for name in ("checks.json", "config.json"):
        p = d / name
        if not p.is_file():
            raise ValueError(f"{p} not found (not a sigma_descent output directory?)")
        out.append(runio.read_json(p))
    return out[0], out[1]


_LABEL_KEYS = ("views", "view_slots", "sigma", "replacement", "project", "diag", "eta_schedule", "eta", "tau",
               "batch_size", "n", "classes", "steps", "separation")


def _eq_dev(o: dict) -> float:
    """max |LHS/RHS - 1| of an "==" claim."""
    lo, hi = o.get("min_ratio"), o.get("max_ratio")
    return max(abs(float(lo) - 1.0) if lo is not None else 0.0, abs(float(hi) - 1.0) if hi is not None else 0.0)


def _cell(o: dict | None) -> str:
    if o is None or o.get("evaluated", 0) == 0 or o.get("holds") is None:
        return "n/a"
    if o.get("kind") == "eq":
        val = f"dev={_eq_dev(o):.2g}"
    else:
        val = _fmt_ratio(o["max_ratio"])
    if o["holds"]:
        return f"{_holds_str(True, bool(o.get('vacuous')))} {val}"
    return f"NO {val} ({o['violations']}/{o['evaluated']})"


def _run_label(cfg: dict, differing: list[str], fallback: str) -> str:
    d = SigmaConfig().to_dict()
    parts = []
    for k in differing:
        if k == "view_slots" and cfg.get("views") == "identity":
            continue
        if cfg.get(k) != d.get(k):
            v = cfg.get(k)
            parts.append(k if v is True else (f"no-{k}" if v is False else f"{k}={v}"))
    return ", ".join(parts) if parts else ("defaults" if differing else fallback)


def compare_checks(run_dirs: list[str | Path]) -> str:
    """Markdown table of several runs' checks side by side; a column is labelled by its options that differ
    from the SigmaConfig defaults (among the options that differ between the runs).

    Cell: "yes 0.42" (holds, max LHS/RHS), "NO 1.7 (12/3000)" (violations / evaluated), "n/a"; for the "=="
    claims the range min..max of LHS/RHS.
    """
    if not run_dirs:
        raise ValueError("compare needs at least one run directory")
    docs = [load_checks(d) for d in run_dirs]
    cfgs = [c["config"] for _, c in docs]
    differing = [k for k in _LABEL_KEYS if len({json.dumps(c.get(k)) for c in cfgs}) > 1]
    labels = [_run_label(c, differing, Path(d).name) for d, c in zip(run_dirs, cfgs)]
    lines = ["| claim | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for cid in CLAIM_ORDER:
        lines.append(f"| {cid} | " + " | ".join(_cell(ch.get(cid)) for ch, _ in docs) + " |")
    common = {k: cfgs[0].get(k) for k in _LABEL_KEYS if k not in differing}
    lines.append("")
    lines.append("common options: " + ", ".join(f"{k}={v}" for k, v in common.items()))
    lines.append("cells: holds + max LHS/RHS (ratio <= 1 holds; '==' claims: dev = max abs(LHS/RHS - 1), violated when "
                 "> 1e-9); NO = violated (violations/evaluated); vacuous = held, but the certified lower bound was <= 0 at "
                 "every evaluated point; n/a = not evaluated (premise never held / not applicable)")
    return "\n".join(lines)
