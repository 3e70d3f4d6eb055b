"""CLI of the Sigma-space run: exit status 2 on bad values, outputs, --compare, --config, exact resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulate.config import derive_seeds
from simulate.sigma_descent import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n", "24", "--classes", "4", "--batch-size", "6", "--steps", "20", "--eval-every", "5",
        "--lemma5-trials", "20", "--no-plot", "--quiet"]


def test_subprocess_bad_value_exit_2_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "simulate.sigma_descent", "--tau", "0", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "tau" in lines[0] and lines[0].startswith("python -m simulate.sigma_descent: error:")


@pytest.mark.parametrize("args, word", [
    (["--delta", "1.5"], "delta"),
    (["--classes", "1"], "C"),
    (["--n", "25"], "divisible"),
    (["--batch-size", "1"], "batch_size"),
    (["--tau", "-1"], "tau"),
    (["--eta", "1e308", "--project", "none"], "step"),  # Eq. 1 exactly overflows (clip would keep it finite)
    (["--tau", "abc"], "invalid float"),
    (["--bogus"], "unrecognized"),
    (["--views", "mirror"], "invalid choice"),
    (["--eta-schedule", "linear"], "eta_schedule"),
    (["--threads", "0"], "threads"),
    (["--config", "/nonexistent.json"], "config file not found"),
])
def test_bad_values_exit_2(args, word, tmp_path, capsys):
    try:
        rc = main(TINY + ["--out", str(tmp_path / "o")] + args)
    except SystemExit as e:  # argparse-level errors
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err


def test_nan_run_writes_partial_outputs(tmp_path, capsys):
    assert main(TINY + ["--eta", "1e308", "--project", "none", "--out", str(tmp_path)]) == 2
    assert "step" in capsys.readouterr().err
    for f in ("config.json", "steps.csv", "checks.json"):
        assert (tmp_path / f).is_file()
    assert json.loads((tmp_path / "checks.json").read_text())["_run"]["aborted"]


def test_run_outputs_and_compare(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(TINY + ["--out", str(a), "--project", "none"]) == 0
    assert main(TINY + ["--out", str(b), "--sigma", "symmetric", "--save-sigma"]) == 0
    for f in ("config.json", "steps.csv", "evals.csv", "checks.json"):
        assert (a / f).is_file()
    assert (b / "sigma_cl.npy").is_file() and not (a / "sigma_cl.npy").exists()
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["config"]["project"] == "none" and cfg["command_line"][0] == "python -m simulate.sigma_descent"
    assert set(cfg["seeds"]) == {"init_seed", "batch_seed", "aug_seed"} and "torch" in cfg["versions"]
    header = (a / "steps.csv").read_text().splitlines()[0].split(",")
    for col in ("step", "eta", "drift_fro", "bound_thm1_unrolled", "bound_thm1_closed", "ratio_L1", "ratio_L8"):
        assert col in header
    assert len((a / "steps.csv").read_text().splitlines()) == 21
    capsys.readouterr()
    assert main(["--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "project=none" in out and "sigma=symmetric" in out and "| L1 |" in out


def test_config_file_and_seed(tmp_path):
    cfgf = tmp_path / "c.json"
    cfgf.write_text(json.dumps({"n": 24, "classes": 4, "batch_size": 6, "steps": 7, "tau": 0.7}))
    out = tmp_path / "o"
    assert main(["--config", str(cfgf), "--steps", "5", "--seed", "7", "--no-checks", "--no-plot", "--quiet",
                 "--out", str(out)]) == 0
    c = json.loads((out / "config.json").read_text())["config"]
    assert c["tau"] == 0.7 and c["steps"] == 5 and c["checks"] is False  # flags override the file
    i, b, a = derive_seeds(7)
    assert (c["init_seed"], c["batch_seed"], c["aug_seed"]) == (i, b, a) and len({i, b, a}) == 3


def test_resume_reproduces_uninterrupted_run_bitwise(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    common = TINY + ["--save-sigma", "--steps", "20"]
    assert main(common + ["--out", str(full)]) == 0
    assert main(common + ["--out", str(part), "--stop-after", "9"]) == 0
    assert (part / "checkpoint.pt").is_file()
    assert len((part / "steps.csv").read_text().splitlines()) == 10  # header + 9 steps
    assert main(["--resume", "--out", str(part), "--quiet", "--no-plot", "--save-sigma"]) == 0
    for f in ("steps.csv", "evals.csv"):
        assert (part / f).read_text() == (full / f).read_text(), f
    for f in ("sigma_cl.npy", "sigma_ns.npy"):
        assert (part / f).read_bytes() == (full / f).read_bytes(), f
    ca = json.loads((full / "checks.json").read_text())
    cb = json.loads((part / "checks.json").read_text())
    assert ca == cb
    # a resume with different dynamics is refused
    assert main(["--resume", "--out", str(part), "--tau", "0.9", "--quiet"]) == 2


def test_checkpoint_every_is_atomic_and_resumable(tmp_path):
    out = tmp_path / "o"
    assert main(TINY + ["--out", str(out), "--checkpoint-every", "5", "--save-sigma"]) == 0
    assert (out / "checkpoint.pt").is_file() and not (out / "checkpoint.pt.tmp").exists()
    s = np.load(out / "sigma_cl.npy")
    assert s.shape == (48, 48)


def test_corrupt_checkpoint_gives_one_line_and_keeps_results(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(TINY + ["--out", str(out), "--stop-after", "5", "--steps", "20"]) == 0
    ck = out / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])  # truncated
    before = (out / "steps.csv").read_text()
    capsys.readouterr()
    assert main(["--resume", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt or truncated" in err[0] and str(ck) in err[0]
    assert (out / "steps.csv").read_text() == before  # nothing written over


def test_certified_summary_never_calls_an_out_of_premise_bound_certified():
    """The final summary line of the CLI: the paper's Cor. 1/2 numbers are printed as certificates only when
    their premise (theory.bounds.THM1_PREMISE) held at every step; otherwise the line says NOT certified and
    prints the row-multiplicity certificate instead."""
    from simulate.sigma_descent import certified_summary

    ev = {"step": 200, "bound_closed": 124.5, "cka_lb_paper": 0.3476, "cka_lb_sharp": 0.875,
          "rsa_lb_paper": 0.1808, "rsa_lb_sharp": 0.7202, "bound_mult": 145.8, "cka_lb_mult": 0.8236,
          "rsa_lb_mult": 0.5827, "cka_cl_vs_init": 0.9917, "rel_move_cl": 0.13}
    shared = {"Thm1": {"evaluated": 0, "premise_failed": 200}, "Cor1": {"evaluated": 0, "premise_failed": 4},
              "Cor1_mult": {"evaluated": 4, "premise_failed": 0}}
    line = certified_summary(ev, shared)
    assert "NOT certified" in line and "premise failed on 200 steps" in line
    assert "0.3476" not in line and "0.875" not in line
    assert "CKA >= 0.8236" in line and "RSA >= 0.5827" in line
    own_rows = {"Thm1": {"evaluated": 200, "premise_failed": 0}, "Cor1": {"evaluated": 4, "premise_failed": 0},
                "Cor1_mult": {"evaluated": 4, "premise_failed": 0}}
    line = certified_summary(ev, own_rows)
    assert "NOT certified" not in line and "CKA >= 0.3476" in line and "RSA >= 0.1808" in line
    # premise of the multiplicity form failed too (e.g. logits left the box): nothing is called certified
    none_ok = {**shared, "Cor1_mult": {"evaluated": 0, "premise_failed": 4}}
    line = certified_summary(ev, none_ok)
    assert "0.8236" not in line and "0.3476" not in line
