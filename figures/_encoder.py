"""Helpers shared by the encoder-run figures: rows of one pair, curves over epochs, sweep figures with one curve
per swept value (replicates averaged with a band) and the random-label control in its own column."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .discover import EncoderRun, Group, by_value, fmt_value
from .plotting import (MODEL_COLOR, integer_epochs, replicate_note, draw_curves, legend_below, ordered_colors,
                       pair_label, plt, series)

__all__ = ["cl_pair", "pair_rows", "run_curve", "final_value", "sweep_figure", "METRIC_LABEL", "settings_columns",
           "pair_colors", "column_title"]

METRIC_LABEL = {"cka": "CKA", "rsa": "RSA", "weight_gap_mean": "mean relative weight gap"}


def cl_pair(run: EncoderRun) -> str:
    """The run's contrastive-NSCL pair name as in metrics.csv ("CL-NSCL" or "DCL-NSCL")."""
    return f"{run.contrastive}-NSCL"


def pair_rows(run: EncoderRun, pair: str, split: str | None = "train") -> list[dict]:
    return [r for r in run.metrics if str(r.get("pair")) == pair and (split is None or r.get("split") == split)]


def run_curve(run: EncoderRun, metric: str, pair: str | None = None, split: str | None = "train"):
    """(epochs, values) of ``metric`` of ``pair`` (default: contrastive-NSCL) on the ``split`` reference set."""
    return series(pair_rows(run, pair or cl_pair(run), split), "epoch", metric)


def final_value(runs: Sequence[EncoderRun], metric: str, split: str = "train") -> float:
    """Mean over replicates of the last evaluation's ``metric`` (contrastive-NSCL pair)."""
    vals = []
    for r in runs:
        _, y = run_curve(r, metric, split=split)
        if len(y):
            vals.append(float(y[-1]))
    return float(np.mean(vals)) if vals else float("nan")


def settings_columns(group: Group) -> list[tuple[str, list[EncoderRun]]]:
    """[(column title, runs)]: the real-label runs, then each random-label control level beside them."""
    cols = []
    if group.main:
        cols.append(("real labels", group.main))
    for p, rs in by_value(group.controls, lambda r: r.label_noise):
        cols.append((f"random-label control (p={p:g})", rs))
    return cols


def pair_colors(runs: Sequence[EncoderRun]) -> list[tuple[str, str]]:
    """[(pair, colour)]: every model pair in the runs' metrics.csv (first-seen order), coloured by its second
    (supervised) model."""
    pairs = dict.fromkeys(str(m["pair"]) for r in runs for m in r.metrics)
    return [(pair, MODEL_COLOR.get(pair.split("-")[-1], "k")) for pair in pairs]


def column_title(title: str, runs: Sequence[EncoderRun]) -> str:
    """Panel title of one settings column: the setting, the column's name and, for replicates, how many."""
    return (f"{runs[0].describe()}\n{title}"
            + (f", mean of {len(runs)} runs (band = min–max)" if len(runs) > 1 else ""))


def sweep_figure(group: Group, value: Callable[[EncoderRun], Any], value_label: Callable[[Any], str],
                 title: str, metrics: Sequence[str] = ("rsa", "cka"), split: str = "train",
                 panels: Sequence[tuple[str, list[EncoderRun]]] | None = None, sharey: bool = True):
    """Rows = metrics, columns = panels (default: real labels | random-label control); in each panel one curve
    per swept value (ordered colours; replicates -> mean and min-max band), x = epoch. Returns (fig, table rows
    of final values per curve). ``sharey``: one y-scale per row (else per panel, said in the title)."""
    p = plt()
    panels = list(panels) if panels is not None else settings_columns(group)
    allvals = sorted({value(r) for _, rs in panels for r in rs})
    colors = dict(zip(allvals, ordered_colors(len(allvals))))
    fig, axes = p.subplots(len(metrics), len(panels), figsize=(3.4 * len(panels) + 0.6, 2.5 * len(metrics) + 0.6),
                           squeeze=False, sharex="col", sharey="row" if sharey else False)
    table = []
    counts = []
    for j, (ptitle, rs) in enumerate(panels):
        for v, reps in by_value(rs, value):
            for i, m in enumerate(metrics):
                counts.append(draw_curves(axes[i, j], [run_curve(r, m, split=split) for r in reps], value_label(v),
                                          colors[v]))
            row = {"panel": ptitle, "value": fmt_value(v), "n_runs": len(reps), "runs": " ".join(r.name for r in reps)}
            for m in metrics:
                for sp in ("train", "test"):
                    row[f"{m}_{sp}_final"] = final_value(reps, m, sp)
            table.append(row)
        axes[0, j].set_title(ptitle, fontsize=8.5)
        axes[-1, j].set_xlabel("epoch")
    for i, m in enumerate(metrics):
        axes[i, 0].set_ylabel(f"{pair_label(cl_pair(panels[0][1][0]))} {METRIC_LABEL.get(m, m)}")
    integer_epochs(axes.ravel())
    legend_below(fig, axes.ravel(), ncol=min(len(allvals), 6))
    scale = "" if sharey else "; y-scales differ per panel"
    fig.suptitle(title + f" ({split} reference set{scale}{replicate_note(counts)})", fontsize=9, x=0.01, ha="left")
    return fig, table
