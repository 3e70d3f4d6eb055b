"""Shared drawing helpers of the figures package: the style, the output writer (unique names, nothing written
twice), tables as CSV + Markdown + LaTeX, legends below the panels, curves over epochs with replicate bands,
log-axis curves that never join two points by a misleading straight line, and annotated heat-maps."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from runio import as_float, atomic_write_text, write_csv

__all__ = ["STYLE", "Missing", "Output", "style", "plt", "MODEL_COLOR", "ordered_colors", "legend_below",
           "series", "summarize", "integer_epochs", "replicate_note", "mean_band", "draw_curves", "heatmap", "fmt_cells", "MATH", "pair_label"]

STYLE = str(Path(__file__).with_name("style.mplstyle"))
#: fixed colours per model / pair partner (Okabe-Ito, as the style's cycle)
MODEL_COLOR = {"NSCL": "#D55E00", "SCL": "#009E73", "CE": "#CC79A7", "DCL": "#0072B2", "CL": "#0072B2"}
#: rendered maths for loss names and bounds
MATH = {k: rf"$\mathcal{{L}}^{{\mathrm{{{k}}}}}$" for k in ("CL", "DCL", "NSCL", "SCL", "CE")}


class Missing(Exception):
    """A figure's inputs are not among the runs found: the message names what to run (one line)."""


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as _plt

    return _plt


@contextmanager
def style():
    with plt().style.context(STYLE):
        yield


class Output:
    """Writes a figure's files into one directory; every name is unique, nothing is written twice.

    ``save(fig, name)`` writes name.png and name.pdf (names are used as given: no suffix cutting, so
    ``fig4_tau=0.1`` stays whole)."""

    def __init__(self, out: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: float | None = None) -> None:
        self.dir = Path(out)
        self.formats = tuple(formats)
        self.dpi = dpi  # None: the style's savefig.dpi
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._seen: set[Path] = set()
        #: name -> what the saved figure shows (axes labels, titles, legend entries): for tests and reports
        self.summaries: dict[str, dict] = {}

    def _claim(self, rel: str) -> Path:
        p = (self.dir / rel).resolve()
        if p in self._seen:
            raise ValueError(f"output name written twice: {rel}")
        self._seen.add(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(p)
        return p

    def save(self, fig, name: str) -> list[Path]:
        self.summaries[name] = summarize(fig)
        paths = [self._claim(f"{name}.{ext}") for ext in self.formats]
        for p in paths:  # no creation date in a PDF: the same inputs give the same bytes
            kw = {"dpi": self.dpi} if self.dpi else {}
            fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None, **kw)
        plt().close(fig)
        return paths

    def csv(self, name: str, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
        p = self._claim(f"{name}.csv")
        write_csv(p, list(rows), columns=list(columns) if columns else None)
        return p

    def table(self, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str) -> list[Path]:
        """CSV + Markdown + LaTeX (booktabs) of one table; cells are written as given (strings)."""
        rows = [[("" if c is None else str(c)) for c in r] for r in rows]
        p_csv = self.csv(name, [dict(zip(header, r)) for r in rows], header)
        md = [caption, "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        p_md = self._claim(f"{name}.md")
        atomic_write_text(p_md, "\n".join(md) + "\n")

        def tex(s: str) -> str:
            s = s.replace("\\", r"\textbackslash{}")
            for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("τ", r"$\tau$"),
                         ("η", r"$\eta$"), ("′", "'"), ("–", "--"), ("−", "-")):
                s = s.replace(a, b)
            return s

        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex(caption)}}}",
                 r"\begin{tabular}{" + "l" * 1 + "r" * (len(header) - 1) + "}", r"\toprule",
                 " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(tex(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        p_tex = self._claim(f"{name}.tex")
        atomic_write_text(p_tex, "\n".join(lines) + "\n")
        return [p_csv, p_md, p_tex]


def summarize(fig) -> dict:
    """Axes labels, titles, line labels and legend entries of a figure (what a reader can see)."""
    axes = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            axes.append({"colorbar": ax.get_ylabel() or ax.get_xlabel()})
            continue
        axes.append({"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "title": ax.get_title("left") or ax.get_title() or ax.get_title("right"),
                     "lines": [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")],
                     "texts": [t.get_text() for t in ax.texts], "n_images": len(ax.images)})
    legends = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    legends += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return {"axes": axes, "legend": legends, "suptitle": title}


def ordered_colors(n: int) -> list:
    """n colours for an ordered sweep (small -> large value), colour-blind safe (viridis, light end cut)."""
    cmap = plt().get_cmap("viridis")
    if n == 1:
        return [cmap(0.35)]
    return [cmap(x) for x in np.linspace(0.05, 0.85, n)]


def legend_below(fig, axes: Iterable, ncol: int | None = None, extra: Sequence = ()) -> None:
    """One legend for the whole figure, below the panels (never on top of the data); duplicate labels merged.
    ``extra``: additional (handle, label) pairs (e.g. line-style keys)."""
    handles, labels = [], []
    for ax in np.ravel(list(axes)):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    for h, lab in extra:
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    if not handles:
        return
    ncol = ncol or min(len(labels), 4)
    try:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol)
    except ValueError:  # matplotlib < 3.7: below the figure; savefig's tight bbox keeps it
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol)


def series(rows: Iterable[Mapping], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float arrays sorted by x; rows where either is missing are left out. For duplicate x the LAST
    row wins (an end-of-epoch evaluation after an earlier one at the same x)."""
    d: dict[float, float] = {}
    for r in rows:
        raw = r.get(y)
        if raw is None or raw == "":
            continue
        xv = as_float(r.get(x))
        if math.isfinite(xv):
            d[xv] = as_float(raw)
    if not d:
        return np.zeros(0), np.zeros(0)
    xs = np.array(sorted(d))
    return xs, np.array([d[v] for v in xs], dtype=np.float64)


def mean_band(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Replicates -> (x, mean, min, max) at every x any replicate has (NaN-aware: at an x only some replicates
    evaluated, the mean of those; no point is dropped)."""
    common = sorted(set.union(*[set(np.round(x, 9)) for x, _ in curves])) if curves else []
    xs = np.array(common, dtype=np.float64)
    Y = np.full((len(curves), len(xs)), np.nan)
    for i, (x, y) in enumerate(curves):
        m = {round(float(a), 9): float(b) for a, b in zip(x, y)}
        Y[i] = [m.get(round(float(a), 9), np.nan) for a in xs]
    with np.errstate(all="ignore"):
        return xs, np.nanmean(Y, 0), np.nanmin(Y, 0), np.nanmax(Y, 0)


def draw_curves(ax, curves: Sequence[tuple[np.ndarray, np.ndarray]], label: str, color, log: bool = False,
                ls: str = "-", marker: str = "o", **kw) -> int:
    """One setting over x: a single curve, or the mean of its replicates with a min-max band (the label stays
    the same). On a log axis, values <= 0 are left out, and fewer than 3 points are drawn as markers only: a
    straight segment between two points on a log axis would claim a shape nobody measured. Returns the number
    of replicates drawn (the caller says "mean of n, band = min-max" once per figure: see ``replicate_note``)."""
    curves = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not curves:
        return 0
    if len(curves) == 1:
        x, y = curves[0]
        lo = hi = None
    else:
        x, y, lo, hi = mean_band(curves)
    if log:
        ok = np.isfinite(y) & (y > 0)
        x, y = x[ok], y[ok]
        if lo is not None:
            lo, hi = lo[ok], hi[ok]
            lo = np.where(lo > 0, lo, np.nan)
    if not len(x):
        return 0
    few = len(x) < 3 and log
    ax.plot(x, y, ls="none" if few else ls, marker=marker, ms=3.5 if len(x) < 25 else 0, color=color,
            label=label, **kw)
    if lo is not None and len(x) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
    if log:
        ax.set_yscale("log")
    return len(curves)


def replicate_note(counts: Sequence[int]) -> str:
    """Suffix for a figure title when some curves average replicates (seeds / identical configs)."""
    n = sorted({c for c in counts if c > 1})
    if not n:
        return ""
    return f"; curves with {'/'.join(map(str, n))} replicates: mean, band = min–max"


def integer_epochs(axes) -> None:
    """Integer tick labels on epoch axes whose data are whole epochs (no "0.25" ticks for 2 epochs)."""
    from matplotlib.ticker import MaxNLocator

    for ax in np.ravel(list(axes)):
        xs = [x for ln in ax.get_lines() for x in np.asarray(ln.get_xdata(), dtype=float)]
        if xs and all(float(x).is_integer() for x in xs):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def fmt_cells(G: np.ndarray) -> tuple[str, int]:
    """Cell-label format with enough decimals that cells of different value read differently (2..5)."""
    vals = np.unique(np.round(G[np.isfinite(G)], 12))
    for d in range(2, 6):
        if len(np.unique(np.round(vals, d))) == len(vals):
            return f"{{:.{d}f}}", d
    return "{:.5f}", 5


def heatmap(ax, fig, G: np.ndarray, xs: Sequence[str], ys: Sequence[str], cmap: str, cbar_label: str,
            xlabel: str, ylabel: str, log: bool = False, counts: np.ndarray | None = None,
            vrange: tuple[float, float] | None = None) -> None:
    """Annotated heat-map, rows = ys (bottom to top), columns = xs. NaN cells blank ("n/a" written).

    Colour range = data range (so differences show); text white on dark cells, black on light ones; decimals
    chosen so distinct values read distinct. ``log``: colour by log10 of the value, cells in scientific
    notation (for 1 - CKA of the Sigma-space runs). ``counts`` > 1 is written under the value ("n=3")."""
    G = np.asarray(G, dtype=np.float64)
    data = np.where(G > 0, np.log10(np.where(G > 0, G, 1.0)), np.nan) if log else G
    fin = np.isfinite(data)
    vmin, vmax = (float(np.nanmin(data)), float(np.nanmax(data))) if fin.any() else (0.0, 1.0)
    if vrange is not None:  # one colour scale shared by the panels of a figure (given in data units)
        vmin, vmax = (math.log10(vrange[0]), math.log10(vrange[1])) if log else vrange
    if vmax - vmin < 1e-12:
        vmin, vmax = vmin - 0.5 * max(abs(vmin), 1e-3), vmax + 0.5 * max(abs(vmax), 1e-3)
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(list(xs))
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels(list(ys))
    fmt, _ = fmt_cells(G) if not log else ("{:.1e}", 1)
    cm = im.cmap
    norm = im.norm
    fs = 6.5 if len(xs) <= 8 else 5.5
    for i in range(G.shape[0]):
        for j in range(G.shape[1]):
            if not np.isfinite(data[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=fs, color="0.4")
                continue
            r, g, b, _ = cm(norm(data[i, j]))
            lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
            txt = fmt.format(G[i, j])
            if counts is not None and counts[i, j] > 1:
                txt += f"\nn={int(counts[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fs, color="white" if lum < 0.5 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.formatter.set_useOffset(False)  # no "x1e-5 + 0.9999" offset: ticks read as values
    cb.update_ticks()
    cb.set_label(f"log$_{{10}}$({cbar_label})" if log else cbar_label)


def pair_label(pair: str) -> str:
    """"DCL-NSCL" -> "DCL–NSCL" (en dash, as in the paper)."""
    return pair.replace("-", "–")
