"""figures: regenerate every supported figure / table from result files only (a tiny encoder run, copies of it
with another C' / tau / B written into their config.json, and a tiny simulate-style run)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import figures
from experiments import bound_vs_empirical as bve

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
        "--classes", "3", "--n-per-class", "8", "--test-per-class", "4", "--ref-train", "9", "--ref-test", "6",
        "--ref-batch", "6", "--batch-size", "8", "--epochs", "2", "--theory-evals", "2", "--g-pairs", "2",
        "--lp-iters", "5", "--beta-dirs", "0", "--quiet", "--threads", "1"]


def _variant(src: Path, dst: Path, **changes) -> Path:
    """Copy a run and change config values (result files are all figures read: no retraining needed)."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / "config.json").read_text())
    for k, v in changes.items():
        doc["config"][k] = v
        if k == "classes":
            doc["resolved"]["C"] = v
    (dst / "config.json").write_text(json.dumps(doc))
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("runs")
    assert bve.main(TINY + ["--out", str(root / "base")]) == 0  # TINY has --threads 1 (undone by one_thread)
    base = root / "base"
    _variant(base, root / "c5", classes=5)
    _variant(base, root / "tau1", tau=1.0)
    _variant(base, root / "b16", batch_size=16, lr=0.2)
    sim = root / "sim"  # a simulate.sigma_descent-style result directory
    sim.mkdir()
    with open(sim / "steps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "eta", "drift_fro", "bound_thm1_unrolled", "bound_thm1_closed", "bound_thm1_gap"])
        for t in range(5):
            w.writerow([t, 1.0, 0.01 * (t + 1), 0.1 * (t + 1), 0.2 * (t + 1), 0.05 * (t + 1)])
    (sim / "checks.json").write_text("{}")
    (sim / "config.json").write_text(json.dumps({"config": {"n": 8}}))
    return root


def test_regenerate_every_supported_figure(runs, tmp_path):
    res = figures.regenerate([runs], tmp_path / "out")
    assert res["encoder_runs"] == 4 and res["sigma_runs"] == 1
    names = {p.name for p in res["written"]}
    for stem in ("fig2_alignment", "fig6_weight_gap", "fig3_heatmap_cka_train", "fig3_heatmap_cka_test",
                 "fig7_heatmap_rsa_train", "fig4_tau", "fig5_batch", "bounds_base", "sigma_drift_sim"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names, stem
    assert {"table1.md", "table1.csv"} <= names
    assert res["skipped"] == {}
    for p in res["written"]:
        assert p.is_file() and p.stat().st_size > 0
    with open(tmp_path / "out" / "table1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} == {"CL", "NSCL"} and len(rows) == 8
    assert all(0.0 <= float(r["NCCC"]) <= 100.0 and 0.0 <= float(r["LP"]) <= 100.0 for r in rows)


def test_sweep_groups_need_two_values(runs):
    enc, _ = figures.find_runs([runs])
    rs = [figures.EncoderRun(p) for p in enc]
    g = figures.sweep_groups(rs, {"tau"}, lambda r: r.config["tau"])
    assert len(g) == 1 and [r.config["tau"] for r in g[0]] == [0.5, 1.0]
    base_only = [r for r in rs if r.name == "base"]
    assert figures.sweep_groups(base_only, {"tau"}, lambda r: r.config["tau"]) == []


def test_cli_no_runs_exits_1_with_commands(tmp_path):
    r = subprocess.run([sys.executable, "-m", "figures", "--runs", str(tmp_path / "none")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "experiments.bound_vs_empirical" in lines[0] and "simulate.sigma_descent" in lines[0]


def test_cli_regenerates_from_run_dir(runs, tmp_path):
    r = subprocess.run([sys.executable, "-m", "figures", "--runs", str(runs / "base"), "--out", str(tmp_path / "f")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f" / "fig2_alignment.png").is_file()
    assert "skipped fig3_heatmap" in r.stdout
