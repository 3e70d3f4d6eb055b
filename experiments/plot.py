"""Per-run figures of one encoder run (experiments.bound_vs_empirical): alignment, theory and surrogate plots.
The paper's figures over several runs are the figures package (python -m figures).

Every function takes plain rows (dicts from a run in memory, or read back from its CSV files with ``read_rows``),
writes ``stem``.png and ``stem``.pdf with the project style (simulate/style.mplstyle when present) and returns
the written paths. Nothing here trains or measures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from runio import as_float, read_csv

__all__ = [
    "STYLE",
    "THM1_NOTE",
    "read_rows",
    "plot_alignment_run",
    "plot_theory_run",
    "plot_surrogate_run",
]

_STYLE_PATH = Path(__file__).resolve().parent.parent / "simulate" / "style.mplstyle"
STYLE = str(_STYLE_PATH) if _STYLE_PATH.is_file() else "default"
THM1_NOTE = "Thm 1 is proved for the Σ-space surrogate, not for the network"
# fixed colours per model / pair partner (Okabe-Ito, as the style's cycle)
_COLOR = {"NSCL": "#D55E00", "SCL": "#009E73", "CE": "#CC79A7", "DCL": "#0072B2", "CL": "#0072B2"}
_EXTRA = ["#E69F00", "#56B4E9", "#000000", "#F0E442"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style():
    return _plt().style.context(STYLE)


def _save(fig, stem: str | Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    # never Path.with_suffix: a stem such as "tau0.5" would be cut at its dot
    paths = [stem.parent / (stem.name + ".png"), stem.parent / (stem.name + ".pdf")]
    for p in paths:  # no creation date in the PDF: the same figure gives the same bytes (resume tests)
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    _plt().close(fig)
    return paths


#: rows of a result CSV: numeric cells -> float, empty cells -> None, other cells stay strings
read_rows = read_csv


def _series(rows: Iterable[Mapping], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((as_float(r.get(x)), as_float(r.get(y))) for r in rows)
    if not pts:
        return np.zeros(0), np.zeros(0)
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


#: values above this are drawn at the cap with an "off scale" marker (log axes spanning > 1e300 break matplotlib)
LOG_CAP = 1e30


def _positive(y: np.ndarray) -> np.ndarray:
    """Values for a log axis: <= 0 and non-finite -> NaN (not drawn); > LOG_CAP -> LOG_CAP (see _mark_capped)."""
    y = np.array(y, dtype=np.float64)
    big = y > LOG_CAP  # includes +inf
    y[~(y > 0) | (~np.isfinite(y) & ~big)] = np.nan
    y[big] = LOG_CAP
    return y


def _log_plot(ax, xs: np.ndarray, ys: np.ndarray, fmt: str, **kw) -> None:
    """Plot on a log axis; points beyond LOG_CAP (e.g. an exponential bound, or inf) sit at the cap as '^'."""
    y = _positive(ys)
    if not np.any(np.isfinite(y)):
        if kw.get("label") and np.isposinf(np.asarray(ys, dtype=np.float64)).any():
            ax.plot([], [], fmt, color=kw.get("color", "k"), label=f"{kw['label']}: infinite, not drawn")
        return
    if np.isfinite(y).sum() < 3:  # one or two points: markers (a lone point has no line; two joined points on
        ok = np.isfinite(y)     # a log axis would show a shape nobody measured)
        mk = kw.pop("marker", None) or next((c for c in fmt if c in "osD^v*xp+"), "D")
        ax.plot(np.asarray(xs)[ok], y[ok], ls="none", marker=mk, ms=6 if mk == "o" else 4, **kw)  # big under small
    else:
        ax.plot(xs, y, fmt, **kw)
    capped = np.array(ys, dtype=np.float64) > LOG_CAP
    if capped.any():
        ax.plot(np.asarray(xs)[capped], y[capped], "^", color=kw.get("color", "k"), ms=6)
        ax.annotate(f"> {LOG_CAP:.0e} (off scale)", (np.asarray(xs)[capped][0], LOG_CAP), fontsize=6.5,
                    xytext=(2, -10), textcoords="offset points")


def _log_panel(ax, rows: Sequence[Mapping], curves: Sequence[tuple[str, str, str, str]], title: str,
               ylabel: str = "", x: str = "step") -> None:
    """One log-scale panel over ``x``: a curve per (column, label, line format, colour) via :func:`_log_plot`;
    the legend sits below the panel (never on the data)."""
    for key, lab, ls, col in curves:
        xs, ys = _series(rows, x, key)
        if not any(r.get(key) is not None and r.get(key) != "" for r in rows):  # listed, with the reason
            ax.plot([], [], ls, color=col, label=f"{lab}: not available (Δ undefined or not estimated)")
            continue
        _log_plot(ax, xs, ys, ls, color=col, label=lab)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)


def _partner_color(pair: str, i: int) -> str:
    b = pair.split("-")[-1]
    return _COLOR.get(b, _EXTRA[i % len(_EXTRA)])


def _first_vacuous(x: np.ndarray, lb: np.ndarray) -> float | None:
    bad = np.flatnonzero(np.isfinite(x) & ~(lb > 0))
    return float(x[bad[0]]) if bad.size else None


# ----------------------------------------------------------------------------------------------------------
# one encoder run
def plot_alignment_run(rows: Sequence[Mapping], stem: str | Path, contrastive: str = "CL",
                       x: str | None = None) -> list[Path]:
    """CKA and RSA over epochs (``x="step"`` for steps) for every pair (train reference set solid, test dashed)
    with the CL-NSCL lower bounds of Cors. 1-2 overlaid (paper (1 - rho)/(1 + rho) dotted, sharper
    sqrt(1 - rho^2) dash-dot). They are the Sigma-surrogate's theorems evaluated with this run's numbers, NOT
    certificates for the network: the legend and the title say so, and a measured value below one is marked.
    A bound <= 0 is vacuous: it is drawn at 0 and the first such point is marked with a vertical line."""
    if x is None:
        x = "epoch" if rows and all(r.get("epoch") not in (None, "") for r in rows) else "step"
    plt = _plt()
    pairs = list(dict.fromkeys(str(r["pair"]) for r in rows))
    cl_ns = f"{contrastive}-NSCL"
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), sharex=True)
        for ax, metric, lbs, name in ((axes[0], "cka", ("cka_lb", "cka_lb_sharp"), "CKA (Cor. 1)"),
                                      (axes[1], "rsa", ("rsa_lb", "rsa_lb_sharp"), "RSA (Cor. 2)")):
            for i, p in enumerate(pairs):
                col = _partner_color(p, i)
                for split, ls in (("train", "-"), ("test", "--")):
                    sel = [r for r in rows if str(r["pair"]) == p and r.get("split") == split]
                    if not sel:
                        continue
                    xs, ys = _series(sel, x, metric)
                    ax.plot(xs, ys, ls, color=col, marker="o" if split == "train" else None,
                            label=f"{p} ({split})")
            sel = [r for r in rows if str(r["pair"]) == cl_ns and r.get("split") == "train"]
            for key, ls, lab in ((lbs[0], ":", "Σ-surrogate bound, paper (1-ρ)/(1+ρ)"),
                                 (lbs[1], "-.", "Σ-surrogate bound, sharper √(1-ρ²)")):
                if not sel or all(r.get(key) is None for r in sel):
                    continue
                xs, lb = _series(sel, x, key)
                ax.plot(xs, np.where(lb > 0, lb, 0.0), ls, color="k", lw=1.1, label=f"{cl_ns} {lab}")
                xv = _first_vacuous(xs, lb)
                if xv is not None:
                    ax.axvline(xv, color="0.5", lw=0.8, ls=ls)
                    ax.annotate(f"vacuous (≤ 0) first at {x} {xv:g}", (xv, 0.3), rotation=90, fontsize=6.5,
                                color="0.35", ha="right", va="bottom")
                _, meas = _series(sel, x, metric)
                bad = np.isfinite(meas) & np.isfinite(lb) & (meas < lb - 1e-9)
                if bad.any():  # the network's measured value is below the formula: not a certificate for it
                    ax.plot(xs[bad], meas[bad], "x", color="k", ms=6, mew=1.2,
                            label=f"measured below {lab.split(',')[1].strip()}" if key.endswith("sharp") else
                            "measured below paper bound")
            lo = min([-0.03] + [float(v) - 0.03 for r in rows if (v := r.get(metric)) not in (None, "")])
            ax.set_ylim(lo, 1.03)  # RSA can be negative: never cut measured values off
            ax.set_xlabel("step" if x == "step" else x)
            ax.set_title(name)
        axes[0].set_ylabel("alignment with the contrastive model")
        handles, labels = [], []  # one legend below both panels: never on top of the curves
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=6.5)
        fig.suptitle(f"Measured alignment vs the Σ-surrogate's lower bounds (not certificates for the network).  "
                     f"Note: {THM1_NOTE}.", fontsize=8.5, x=0.01, ha="left")
        return _save(fig, stem)


def plot_theory_run(rows: Sequence[Mapping], stem: str | Path, x: str = "step") -> list[Path]:
    """App. B on the network: (a) Lem. 7 gradient gap vs (G/tau) Delta and the realised bound, (b) Thm. 2
    ||w^CL - w^NSCL|| vs its bound, (c) loss gap vs the companion bound. Log scales; G and beta are empirical
    lower estimates of the suprema, so the bounds drawn are not certificates. The contrastive model is named
    by the rows' ``kind`` (CL or DCL); a bound evaluated once is a marker; an infinite one is named, not drawn."""
    plt = _plt()
    k = str(next((r["kind"] for r in rows if r.get("kind")), "CL"))
    K = rf"\mathrm{{{k}}}"
    N = r"\mathrm{NSCL}"
    with _style():
        fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.4))
        _log_panel(axes[0], rows, (("lem7_lhs_at_cl", rf"$\|\nabla\ell^{{{K}}}-\nabla\ell^{{{N}}}\|$ at $w^{{{K}}}$",
                                    "-o", "#0072B2"),
                                   ("lem7_lhs_at_nscl", rf"same at $w^{{{N}}}$", "-s", "#D55E00"),
                                   ("lem7_bound_at_cl", r"$(\hat G/\tau)\,\Delta$ (Lem. 7)", "--", "k"),
                                   ("lem7_realized_bound_at_cl", r"$(\hat G/\tau)\cdot$ mean $2\alpha$ (proof, measured $\alpha$)",
                                    ":", "#009E73")),
                   "(a) Lem. 7, last training batch", "gradient gap (norm)", x)
        _log_panel(axes[1], rows, (("thm2_e", rf"$\|w^{{{K}}} - w^{{{N}}}\|$", "-o", "#0072B2"),
                                   ("thm2_bound", r"Thm. 2 bound ($\hat G$, $\hat\beta$ running max)", "--", "k")),
                   "(b) Thm. 2, weight drift", "parameter distance", x)
        _log_panel(axes[2], rows, (("lossgap_gap_clmodel", f"gap, {k}-trained encoder", "-o", "#0072B2"),
                                   ("lossgap_gap_nsclmodel", "gap, NSCL-trained encoder", "-s", "#D55E00"),
                                   ("lossgap_bound_counts_clmodel", "bound, batch counts", "--", "k"),
                                   ("lossgap_bound_companion_clmodel",
                                    r"companion bound $\log(1+n\,e^{2/\tau}/(N-n))$", ":", "0.4")),
                   rf"(c) loss gap $\mathcal{{L}}^{{{K}}} - \mathcal{{L}}^{{{N}}}$, reference batch",
                   "loss gap (nats)", x)
        fig.suptitle(r"App. B on the network; $\hat G$, $\hat\beta$ are empirical lower estimates of the suprema",
                     fontsize=8.5, x=0.01, ha="left")
        return _save(fig, stem)


def plot_surrogate_run(rows: Sequence[Mapping], stem: str | Path) -> list[Path]:
    """App. C alongside the network: (a) ||Sigma_network - Sigma_surrogate||_F per model with the Eq. 9 / Eq. 7
    bounds (estimated constants); (b) CL-NSCL drift of the surrogate and of the network vs the Thm. 1 bounds."""
    plt = _plt()
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
        a = axes[0]
        models = [m for m in dict.fromkeys(str(r["model"]) for r in rows) if m != "CL-NSCL"]
        for i, m in enumerate(models):
            sel = [r for r in rows if str(r["model"]) == m]
            col = _COLOR.get(m, _EXTRA[i % len(_EXTRA)])
            xs, ys = _series(sel, "step", "net_vs_sur_fro")
            _log_plot(a, xs, ys, "-o", color=col, label=f"{m}: ‖Σ_net − Σ_sur‖_F")
            xs, ys = _series(sel, "step", "net_move_fro")
            _log_plot(a, xs, ys, ":", color=col, label=f"{m}: ‖Σ_net − Σ_0‖_F")
            for key, ls in (("eq9_bound", "--"), ("eq7_bound", "-.")):
                xs, ys = _series(sel, "step", key)
                _log_plot(a, xs, ys, ls, color=col, lw=0.9, label=f"{m}: {key.split('_')[0]} bound")
        a.set_yscale("log")
        a.set_xlabel("step")
        a.set_title("(a) network vs Σ-space surrogate (App. C)")
        a.legend(fontsize=6)
        _log_panel(axes[1], [r for r in rows if str(r["model"]) == "CL-NSCL"],
                   (("sur_drift_fro", "surrogate ‖Σ^CL − Σ^NSCL‖_F", "-o", "#0072B2"),
                    ("net_drift_fro", "network, same items", "-s", "#D55E00"),
                    ("thm1_bound", "Thm. 1 (Eq. 2)", "--", "k"),
                    ("thm1_bound_sharp", "Thm. 1 sharper (premise m = 1: each anchor its own row, checked)", ":",
                     "0.4")),
                   "(b) CL–NSCL drift on the training items")
        fig.suptitle(f"Note: {THM1_NOTE}; L_Σ, M_Σ are empirical lower estimates", fontsize=8.5, x=0.01, ha="left")
        return _save(fig, stem)
