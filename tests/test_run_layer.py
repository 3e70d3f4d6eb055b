"""runio's shared run layer: config files, precedence, out-dir lock, stale temporary files, memory check, and
every CLI that writes an output directory re-running from its own config.json record."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runio.cli import OneLineParser, comma_list, explicit_dests, parse_with_config, record
from runio.config import load_config
from runio.files import atomic_write_text, remove_stale_tmp
from runio.memory import check_memory, format_bytes, sigma_run_bytes
from runio.outdir import LOCK_NAME, OutDirLock, check_out_dir

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------
# config files and precedence
def _parser() -> OneLineParser:
    p = OneLineParser(prog="prog")
    p.add_argument("--tau", type=float, default=0.5, help="temperature")
    p.add_argument("--taus", default="0.1,0.5", help="comma list")
    p.add_argument("--losses", nargs="+", default=["CL", "NSCL"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--plot", action="store_true")
    p.add_argument("--mode", choices=("a", "b"), default="a")
    return p


def test_defaults_then_file_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('tau = 0.25\nsteps = 7\n[more]\nlosses = ["CL", "NSCL", "SCL"]\ntaus = [0.2, 0.3]\nplot = true\n')
    ns = parse_with_config(_parser(), ["--config", str(f), "--steps", "3"])
    assert (ns.tau, ns.steps, ns.losses, ns.taus, ns.plot, ns.mode) == (0.25, 3, ["CL", "NSCL", "SCL"], "0.2,0.3",
                                                                         True, "a")
    ns = parse_with_config(_parser(), ["--steps", "3"])
    assert (ns.tau, ns.steps) == (0.5, 3)
    # a flag equal to its default still wins over the file
    assert parse_with_config(_parser(), ["--config", str(f), "--tau", "0.5"]).tau == 0.5
    assert explicit_dests(_parser(), ["--tau", "0.5", "--plot"]) == {"tau", "plot"}


def test_record_round_trip_json(tmp_path):
    ns = parse_with_config(_parser(), ["--tau", "0.125", "--losses", "CL", "SCL", "--mode", "b"])
    (tmp_path / "config.json").write_text(json.dumps(record(ns, command_line=["x"])))
    back = parse_with_config(_parser(), ["--config", str(tmp_path / "config.json")])
    assert {k: v for k, v in vars(back).items() if k != "config"} == {k: v for k, v in vars(ns).items()
                                                                      if k != "config"}


@pytest.mark.parametrize("doc,needle", [
    ({"mode": "c"}, "must be one of a, b"), ({"steps": 1.5}, "must be an integer"), ({"plot": "yes"}, "true or false"),
    ({"tau": "x"}, "invalid value"), ({"tau": True}, "must be a number"), ({"nope": 1}, "unknown config key 'nope'"),
])
def test_bad_config_values_exit_2_one_line(doc, needle, tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(SystemExit) as e:
        parse_with_config(_parser(), ["--config", str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and needle in err and err.startswith("prog: error: ")


def test_load_config_reads_run_records_and_normalises_keys(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {"batch-size": 4}, "resolved": {"x": 1}}))
    assert load_config(tmp_path / "config.json") == {"batch_size": 4}
    (tmp_path / "r.toml").write_text("batch-size = 4\n")
    assert load_config(tmp_path / "r.toml") == {"batch_size": 4}


def test_help_shows_defaults():
    text = _parser().format_help()
    assert "temperature (default: 0.5)" in text and "(default: 10)" in text


def test_comma_list():
    assert comma_list("0.1, 0.5,", float, "tau") == [0.1, 0.5]
    assert comma_list("2", int) == [2]


# ----------------------------------------------------------------------------------------------------------
# output directories
def test_check_out_dir(tmp_path):
    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # creates nothing


def test_lock_one_writer_and_cleanup(tmp_path):
    d = tmp_path / "new" / "out"
    with OutDirLock(d) as lk:
        assert lk.held and (d / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(ValueError, match="in use by another run"):
            OutDirLock(d).acquire()
    assert not (tmp_path / "new").exists()  # created by the lock, left empty: removed
    d.mkdir(parents=True)
    (d / "keep.txt").write_text("x")
    with OutDirLock(d):
        pass
    assert sorted(os.listdir(d)) == ["keep.txt"]  # an existing directory stays, only the lock file goes


def test_lock_released_when_holder_is_killed_and_stale_tmp_removed(tmp_path):
    d = tmp_path / "out"
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
            f"from runio.outdir import OutDirLock; OutDirLock({str(d)!r}).acquire(); print('locked', flush=True); "
            f"time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"pid {p.pid}"):
            OutDirLock(d).acquire()
        (d / "sub").mkdir()
        for name in (".checkpoint.pt.ab12cd.tmp", "sub/.steps.csv.x1y2.tmp"):
            (d / name).write_bytes(b"partial")
        (d / "results.tmp").write_text("not an atomic_write temporary: kept")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with OutDirLock(d) as lk:  # the kernel released the dead holder's lock
        assert sorted(x.name for x in lk.removed_tmp) == [".checkpoint.pt.ab12cd.tmp", ".steps.csv.x1y2.tmp"]
    assert sorted(os.listdir(d)) == ["results.tmp", "sub"] and os.listdir(d / "sub") == []


def test_atomic_write_leaves_no_tmp_and_remove_stale_tmp_pattern(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert os.listdir(tmp_path) == ["a.json"] and remove_stale_tmp(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------
# memory and the overflow of e^(2/tau)
def test_memory_check_and_estimate():
    assert sigma_run_bytes(1000, 10) == (6 * 1000 * 1000 + 10 * 10 * 2 * 10) * 8
    check_memory(1e9, "x", available=10 ** 10)  # fits: silent
    with pytest.raises(ValueError, match=r"x needs about 9\.3 GiB of memory, only 1\.0 GiB is available"):
        check_memory(10 * 10 ** 9, "x", available=2 ** 30)
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"


def test_delta_c_delta_overflow_is_inf_and_matches_formula_below():
    from theory.constants import delta_c_delta, eps_b_delta, exp_or_inf

    C, B, T, delta = 10, 512, 100, 0.05
    eps = eps_b_delta(B, T, delta)
    for tau in (0.5, 0.01, 0.003):  # below the overflow threshold: the closed form in logs, independently
        want = math.exp(math.log(2.0) + 2.0 / tau + math.log(1.0 / C + eps) - math.log(1 - 1.0 / C - eps))
        assert delta_c_delta(C, B, T, delta, tau) == pytest.approx(want, rel=1e-12)
    assert delta_c_delta(C, B, T, delta, 2.0 / 710.0) == math.inf  # e^710 overflows a float64
    assert exp_or_inf(709.0) == math.exp(709.0) and exp_or_inf(1e6) == math.inf


# ----------------------------------------------------------------------------------------------------------
# every CLI that writes an output directory re-runs from its own config.json
def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_sigma_descent_reruns_from_its_config_json(tmp_path):
    from simulate.sigma_descent import main

    args = ["--n", "12", "--classes", "3", "--batch-size", "6", "--steps", "4", "--embed-dim", "8", "--quiet",
            "--no-plot", "--lemma5-trials", "3", "--tau", "0.7", "--seed", "5"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(["--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    _same_files(tmp_path / "a", tmp_path / "b", ["steps.csv", "evals.csv", "checks.json"])


def test_adversarial_reruns_from_its_config_json(tmp_path, capsys):
    from simulate.adversarial import main

    args = ["--claims", "L2", "--compositions", "distinct", "--sigma", "ordered", "--tau", "0.5", "--restarts", "1",
            "--seed", "3", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(["--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    a, b = (json.loads((tmp_path / d / "adversarial.json").read_text()) for d in "ab")
    assert a["results"] == b["results"] if "results" in a else a == b


def test_train_reruns_from_its_config_json(tmp_path, capsys):
    from experiments.train import main

    args = ["--dataset", "synthetic", "--classes", "2", "--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "4",
            "--batch-size", "64", "--epochs", "1", "--losses", "CL", "NSCL", "--lr", "0.05", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(["--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b")]) == 0
    ha, hb = (json.loads((tmp_path / d / "history.json").read_text()) for d in "ab")
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb] and len(ha) > 0


def test_bound_vs_empirical_reruns_from_its_config_json(tmp_path, capsys):
    from experiments.bound_vs_empirical import main

    args = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
            "--classes", "3", "--n-per-class", "8", "--test-per-class", "4", "--ref-train", "12", "--ref-test", "9",
            "--ref-batch", "6", "--batch-size", "12", "--epochs", "1", "--no-theory", "--no-surrogate",
            "--lp-iters", "2", "--losses", "CL", "NSCL", "--quiet", "--threads", "1", "--no-save-weights"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(["--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b")]) == 0
    _same_files(tmp_path / "a", tmp_path / "b", ["metrics.csv", "models.csv"])
