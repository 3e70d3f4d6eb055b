"""Figures of a Sigma-space run: drift vs the Thm. 1 bounds, and CKA / RSA vs the Cor. 1-2 certificates.

Reads a run directory (steps.csv, evals.csv written by ``simulate.engine.run_sigma_descent``) and writes
PNG + PDF with the project style ``simulate/style.mplstyle`` (``STYLE``; one style for all figures).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

__all__ = ["STYLE", "read_csv", "plot_sigma_run"]

STYLE = str(Path(__file__).with_name("style.mplstyle"))


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a CSV as float arrays (empty cells -> NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        vals = []
        for r in rows:
            v = r.get(k, "")
            try:
                vals.append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                vals.append(math.nan)
        out[k] = np.asarray(vals, dtype=np.float64)
    return out


def _positive(x: np.ndarray) -> np.ndarray:
    y = np.array(x, dtype=np.float64)
    y[~(y > 0) | ~np.isfinite(y)] = np.nan
    return y


def plot_sigma_run(run_dir: str | Path, out_stem: str | Path | None = None, style: str = STYLE) -> list[Path]:
    """Two panels: (a) ||Sigma^CL - Sigma^NSCL||_F per step with the Thm. 1 bounds (closed Eq. 2, exact unrolled,
    measured-injection recurrence), log scale; (b) CKA and RSA at the eval points with their certificates
    (paper (1 - rho)/(1 + rho) with the Thm. 1 bound, and with the measured drift; vacuous ones drop below 0).
    Returns the written paths (``out_stem``.png / .pdf; default run_dir/sigma_descent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    steps = read_csv(run / "steps.csv")
    evals = read_csv(run / "evals.csv") if (run / "evals.csv").is_file() else {}
    stem = Path(out_stem) if out_stem is not None else run / "sigma_descent"
    with plt.style.context(style):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9.0, 4.4))
        if steps:
            t = steps["step"] + 1
            a0.plot(t, _positive(steps["drift_fro"]), label=r"measured $\|\Sigma^{CL}-\Sigma^{NSCL}\|_F$", color="k")
            a0.plot(t, _positive(steps["bound_thm1_closed"]), label="Thm. 1 (Eq. 2)", color="#D55E00")
            a0.plot(t, _positive(steps["bound_thm1_unrolled"]), "--", label="Thm. 1 unrolled", color="#E69F00")
            if "bound_thm1_gap" in steps:
                a0.plot(t, _positive(steps["bound_thm1_gap"]), ":", label="recurrence, measured term (A)",
                        color="#009E73")
            a0.set_yscale("log")
            a0.set_xlabel("step t")
            a0.set_ylabel("Frobenius drift")
            a0.set_title("(a) similarity drift vs Thm. 1")
            a0.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        if evals and "cka" in evals:
            te = evals["step"]
            a1.plot(te, evals["cka"], "o-", label="CKA", color="#0072B2")
            a1.plot(te, evals["rsa"], "s-", label="RSA", color="#CC79A7")
            for key, lab, ls, col in (("cka_lb_meas_sharp", r"CKA cert. $\sqrt{1-\rho^2}$ (measured drift)", "-.", "#0072B2"),
                                      ("rsa_lb_meas_sharp", r"RSA cert. $\sqrt{1-r^2}$ (measured drift)", "-.", "#CC79A7"),
                                      ("cka_lb_meas", "CKA cert. (1-rho)/(1+rho) (measured drift)", "--", "#0072B2"),
                                      ("rsa_lb_meas", "RSA cert. (1-r)/(1+r) (measured drift)", "--", "#CC79A7"),
                                      ("cka_lb_paper", "CKA cert. (Cor. 1, Thm. 1 bound)", ":", "#0072B2"),
                                      ("rsa_lb_paper", "RSA cert. (Cor. 2, Thm. 1 bound)", ":", "#CC79A7")):
                if key in evals:
                    a1.plot(te, evals[key], ls, label=lab, color=col)
            lo = np.nanmin(np.concatenate([evals["cka"], evals["rsa"]]))
            a1.set_ylim(max(0.0, min(lo, 1.0) - 0.05 * (1.0 - min(lo, 1.0)) - 1e-3), 1.0 + 1e-4)
            a1.set_xlabel("step t")
            a1.set_ylabel("alignment")
            a1.set_title("(b) CKA / RSA vs certificates")
            a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
        for p in paths:
            fig.savefig(p)
        plt.close(fig)
    return paths
