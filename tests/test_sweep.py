"""Tests for simulate/sweep.py (grid of coupled Sigma-space runs, resumable CSV, heat-maps)."""

from __future__ import annotations

import math

import pytest

from simulate.sweep import main, make_tasks, parse_values, read_rows, run_one, run_sweep

TINY = {"steps": 5, "eval_every": 0, "lemma5_trials": 5, "embed_dim": 8, "plot": False}


def test_parse_values():
    assert parse_values("0.1, 0.5,1", float) == [0.1, 0.5, 1.0]
    assert parse_values("0-3", int) == [0, 1, 2, 3]
    assert parse_values("2,2,5", int) == [2, 5]
    assert parse_values("log:0.1:10:3", float) == pytest.approx([0.1, 1.0, 10.0])
    assert parse_values("lin:2:6:3", int) == [2, 4, 6]
    assert parse_values("1e-3", float) == [0.001]
    for bad, kind in [("", float), ("a", float), ("3-1", int), ("0.5", int)]:
        with pytest.raises(ValueError):
            parse_values(bad, kind)


def test_make_tasks_ids_and_validation():
    tasks = make_tasks([2, 3], [0.5], [32], [1.0], [0, 1], n_per_class=8, base=TINY)
    assert len(tasks) == 4 and len({t["run_id"] for t in tasks}) == 4
    assert tasks[0]["config"]["n"] == 16 and tasks[2]["config"]["n"] == 24
    # a different fixed option gives a different run id (resume never mixes configs)
    other = make_tasks([2], [0.5], [32], [1.0], [0], n_per_class=8, base={**TINY, "steps": 6})
    assert other[0]["run_id"] != tasks[0]["run_id"]
    with pytest.raises(ValueError):
        make_tasks([2], [-1.0], [32], [1.0], [0], n_per_class=8, base=TINY)
    with pytest.raises(ValueError):
        make_tasks([2], [0.5], [32], [1.0], [0], n_per_class=8, base={"tau": 0.3})


def test_run_one_row_matches_engine():
    from simulate.config import SigmaConfig
    from simulate.run import run_sigma_descent

    (task,) = make_tasks([2], [1.0], [32], [1.0], [0], n_per_class=8, base=TINY)
    row = run_one(task, None)
    res = run_sigma_descent(SigmaConfig.from_dict(task["config"]), None, quiet=True)
    assert row["drift"] == res.drift and row["cka"] == res.cka and row["rsa"] == res.rsa
    ev = res.eval_rows[-1]
    assert row["bound_thm1"] == ev["bound_closed"] and math.isfinite(row["bound_thm1"])
    assert row["drift_over_bound"] == pytest.approx(res.drift / ev["bound_closed"], rel=1e-15)
    assert row["cka_lb_paper"] == ev["cka_lb_paper"] and row["rsa_lb_sharp"] == ev["rsa_lb_sharp"]
    for name in ("L1", "L2", "L3_batch", "L6", "L8", "Thm1"):
        h = res.checks[name]["holds"]  # None = n/a (e.g. L8 / Thm1 outside their premise: shared rows) -> ""
        assert row[f"{name}_holds"] == ("" if h is None else h)
    # batches with replacement share anchor rows: Thm. 1 is outside its premise (n/a), its multiplicity form holds
    assert row["Thm1_holds"] == "" and row["Thm1_mult_holds"] is True


def test_sweep_2x2_rows_heatmaps_and_resume(tmp_path):
    tasks = make_tasks([2, 3], [0.5, 1.0], [32], [1.0], [0], n_per_class=8, base=TINY)
    res = run_sweep(tasks, tmp_path, jobs=2, quiet=True, x="tau", y="classes")
    assert res["ran"] == 4 and res["skipped"] == 0
    rows = read_rows(tmp_path / "sweep.csv")
    assert len(rows) == 4 and [r["run_id"] for r in rows] == [t["run_id"] for t in tasks]
    assert all(r["completed"] == "1" for r in rows)
    for stem in ("heatmap_drift_bound", "heatmap_certificates"):
        for ext in ("png", "pdf"):
            assert (tmp_path / f"{stem}.{ext}").stat().st_size > 0
    assert all((tmp_path / "runs" / t["run_id"] / "checks.json").is_file() for t in tasks)
    before = (tmp_path / "sweep.csv").read_text()
    again = run_sweep(tasks, tmp_path, jobs=2, quiet=True, plots=False)
    assert again["ran"] == 0 and again["skipped"] == 4
    assert (tmp_path / "sweep.csv").read_text() == before
    # extending the grid runs only the new point
    more = make_tasks([2, 3], [0.5, 1.0, 2.0], [32], [1.0], [0], n_per_class=8, base=TINY)
    ext = run_sweep(more, tmp_path, jobs=1, quiet=True, plots=False)
    assert ext["ran"] == 2 and len(read_rows(tmp_path / "sweep.csv")) == 6


def test_cli_errors(tmp_path, capsys):
    assert main(["--tau", "0.5,x", "--out", str(tmp_path), "--quiet"]) == 2  # exit status 2, one line
    assert main(["--quick", "--x", "steps", "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
