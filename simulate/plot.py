"""Figures of a Sigma-space run: drift vs the Thm. 1 bounds, and CKA / RSA vs the Cor. 1-2 certificates.

Reads a run directory (steps.csv, evals.csv written by ``simulate.run.run_sigma_descent``) and writes
PNG + PDF with the project style ``simulate/style.mplstyle`` (``STYLE``; one style for all figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import runio

__all__ = ["STYLE", "read_csv", "plot_sigma_run"]

STYLE = str(Path(__file__).with_name("style.mplstyle"))


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a CSV as float arrays (empty or non-numeric cells -> NaN)."""
    rows = runio.read_csv(path, numeric=False)
    if not rows:
        return {}
    return {k: np.asarray([runio.as_float(r.get(k)) for r in rows], dtype=np.float64) for k in rows[0]}


def _positive(x: np.ndarray) -> np.ndarray:
    y = np.array(x, dtype=np.float64)
    y[~(y > 0) | ~np.isfinite(y)] = np.nan
    return y


def _few_or_line(ax, x: np.ndarray, y: np.ndarray, ls: str, color: str, label: str, marker: str | None = None) -> None:
    """A curve on a log axis; with fewer than 3 finite points, markers only (a straight segment between two
    points on a log axis would show a shape nobody measured)."""
    ok = np.isfinite(y)
    if ok.sum() < 3:
        ax.plot(np.asarray(x)[ok], y[ok], ls="none", marker=marker or "D", color=color, label=label)
    else:
        ax.plot(x, y, ls, marker=marker, color=color, label=label)


def plot_sigma_run(run_dir: str | Path, out_stem: str | Path | None = None, style: str = STYLE) -> list[Path]:
    """Two panels: (a) ||Sigma^CL - Sigma^NSCL||_F per step with the Thm. 1 bounds (closed Eq. 2, exact unrolled,
    measured-injection recurrence), log scale; (b) CKA and RSA at the eval points with their certificates
    as 1 - value on a log axis (paper (1 - rho)/(1 + rho) and sqrt(1 - rho^2) with the Thm. 1 bound, and with the
    measured drift; vacuous certificates sit in the shaded band at the top).
    Returns the written paths (``out_stem``.png / .pdf; default run_dir/sigma_descent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    steps = read_csv(run / "steps.csv")
    evals = read_csv(run / "evals.csv") if (run / "evals.csv").is_file() else {}
    stem = Path(out_stem) if out_stem is not None else run / "sigma_descent"
    with plt.style.context(style):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9.0, 4.8))
        # the paper's forms are proved only when every anchor has its own row (theory.bounds.THM1_PREMISE)
        shared = int(np.sum(steps["row_mult_max"] > 1)) if steps and "row_mult_max" in steps else 0
        outside = f" [premise m = 1 failed on {shared} steps]" if shared else ""
        if steps:
            t = steps["step"] + 1
            curves = [("drift_fro", r"measured $\|\Sigma^{\mathrm{CL}}-\Sigma^{\mathrm{NSCL}}\|_F$", "-", "k"),
                      ("bound_thm1_closed", "Thm. 1 (Eq. 2)" + outside, "-", "#D55E00"),
                      ("bound_thm1_unrolled", "Thm. 1 unrolled" + outside, "--", "#E69F00"),
                      ("bound_thm1_mult", "Thm. 1 sharp, row multiplicities (valid with shared rows)", "-.", "#56B4E9"),
                      ("bound_thm1_gap", "recurrence, measured term (A)", ":", "#009E73")]
            for key, lab, ls, col in curves:
                if key not in steps:
                    continue
                y = _positive(steps[key])
                if not np.isfinite(y).any():  # e.g. Delta_{C,delta} undefined: the bound is +inf at every step
                    why = "infinite" if np.isposinf(steps[key]).any() else "not positive"
                    a0.plot([], [], ls, color=col, label=f"{lab}: {why} at every step, not drawn")
                    continue
                _few_or_line(a0, t, y, ls, col, lab)
            a0.set_yscale("log")
            a0.set_xlabel("step t")
            a0.set_ylabel("Frobenius drift")
            a0.set_title("(a) similarity drift vs Thm. 1")
            a0.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1)
        if evals and "cka" in evals:
            # 1 - alignment on a log axis: actual values and certificates span many decades (a certificate
            # <= 0 is vacuous: 1 - lb >= 1, drawn at the top and shaded).
            te = evals["step"]

            def gap(v: np.ndarray) -> np.ndarray:  # values below 1e-13 are float64 round-off of 1 - 1
                g = _positive(1.0 - np.asarray(v, dtype=np.float64))
                g[g < 1e-13] = np.nan
                return g

            _few_or_line(a1, te, gap(evals["cka"]), "-", "#0072B2", "1 − CKA (measured)", marker="o")
            _few_or_line(a1, te, gap(evals["rsa"]), "-", "#CC79A7", "1 − RSA (measured)", marker="s")
            for key, lab, ls, col in (("cka_lb_paper", "CKA cert. (1-rho)/(1+rho), Thm. 1 bound (Cor. 1)" + outside, ":", "#0072B2"),
                                      ("rsa_lb_paper", "RSA cert. (1-r)/(1+r), Thm. 1 bound (Cor. 2)" + outside, ":", "#CC79A7"),
                                      ("cka_lb_sharp", r"CKA cert. $\sqrt{1-\rho^2}$, Thm. 1 bound" + outside, "-.", "#56B4E9"),
                                      ("rsa_lb_sharp", r"RSA cert. $\sqrt{1-r^2}$, Thm. 1 bound" + outside, "-.", "#E69F00"),
                                      ("cka_lb_meas", "CKA cert. (1-rho)/(1+rho), measured drift", "--", "#0072B2"),
                                      ("rsa_lb_meas", "RSA cert. (1-r)/(1+r), measured drift", "--", "#CC79A7"),
                                      ("cka_lb_mult", r"CKA cert. $\sqrt{1-\rho^2}$, row-multiplicity bound", "-", "#009E73"),
                                      ("rsa_lb_mult", r"RSA cert. $\sqrt{1-r^2}$, row-multiplicity bound", "-", "#F0E442")):
                if key in evals:
                    _few_or_line(a1, te, np.minimum(gap(evals[key]), 1.0), ls, col,
                                 lab.replace("(1-rho)/(1+rho)", r"$(1-\rho)/(1+\rho)$").replace(
                                     "(1-r)/(1+r)", r"$(1-r)/(1+r)$"))
            # vacuous certificates (<= 0) sit at 1 - lb = 1; the band above it carries the label, clear of curves
            a1.axhspan(1.0, 30.0, color="0.92", zorder=0)
            a1.text(0.5, 5.5, "vacuous region (certificate ≤ 0)", transform=a1.get_yaxis_transform(), ha="center",
                    va="center", fontsize=7, color="0.3")
            a1.set_yscale("log")
            a1.set_ylim(top=30.0)
            a1.set_xlabel("step t")
            a1.set_ylabel("1 − alignment (lower is better)")
            a1.set_title("(b) CKA / RSA: measured vs certified")
            a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1,
                      title="1 − value < 1e-13 is float64 round-off: not drawn", title_fontsize=6.5)
        # never Path.with_suffix: a stem such as "tau0.5" would be cut at its dot
        paths = [stem.parent / (stem.name + ".png"), stem.parent / (stem.name + ".pdf")]
        for p in paths:
            fig.savefig(p)
        plt.close(fig)
    return paths
