"""Bad input, everywhere: every CLI and the public API answer with exit status 2 (or a ValueError) and ONE line.

Each CLI case calls ``main(argv)`` in-process (no subprocess: torch is imported once) from an empty working
directory inside ``tmp_path`` and asserts: exit status 2 (returned or raised as SystemExit), exactly one line
on stderr of the form ``prog: error: ...``, no traceback, and no file or directory written anywhere under
``tmp_path`` (default output directories included). API cases assert a one-line ValueError. The shared run
layer behind this is runio (runio.cli, runio.config, runio.outdir, runio.checkpoint, runio.memory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, mtime_ns) and directory under root -- to prove nothing was written or left behind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return out


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty working directory plus the fixture files bad inputs point at (a file, configs, a checkpoint)."""
    work = tmp_path / "work"
    work.mkdir()
    fx = tmp_path / "fx"
    fx.mkdir()
    (fx / "afile").write_text("not a directory\n")
    (fx / "bad.json").write_text("{not json")
    (fx / "list.json").write_text("[1, 2]")
    (fx / "unknown.json").write_text(json.dumps({"no_such_option": 1}))
    (fx / "bad.toml").write_text("tau = \n")
    (fx / "unknown.toml").write_text("[train]\nlearning_rate = 0.1\n")
    (fx / "nested.toml").write_text("[a.b]\nc = 1\n")
    (fx / "twice.toml").write_text("tau = 0.5\n[x]\ntau = 0.7\n")
    (fx / "ckpt").mkdir()
    (fx / "ckpt" / "checkpoint.pt").write_bytes(b"garbage, not a checkpoint" * 10)
    torch.save({"w": torch.zeros(2)}, fx / "foreign.pt")
    np.save(fx / "emb.npy", np.random.default_rng(0).standard_normal((12, 4)))
    np.save(fx / "lab.npy", np.repeat(np.arange(3), 4))
    (fx / "runs").mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def _subst(argv: list[str], root: Path) -> list[str]:
    return [a.replace("{fx}", str(root / "fx")).replace("{work}", str(root / "work")) for a in argv]


def _run_main(main, argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr()


def check_cli(main, prog: str, argv: list[str], env: Path, capsys, status: int = 2) -> str:
    """Run one bad-input case and assert the contract; returns the error line."""
    argv = _subst(argv, env)
    before = _tree(env)
    rc, cap = _run_main(main, argv, capsys)
    err_lines = cap.err.splitlines()
    assert rc == status, f"exit {rc!r} for {argv}; stderr: {cap.err[-500:]}"
    assert len(err_lines) == 1, f"{len(err_lines)} stderr lines for {argv}: {cap.err[-800:]}"
    assert "Traceback" not in cap.err and "Traceback" not in cap.out
    assert err_lines[0].startswith(f"{prog}: error: "), err_lines[0]
    assert _tree(env) == before, f"files written for {argv}: {set(_tree(env)) ^ set(before)}"
    return err_lines[0]


# ----------------------------------------------------------------------------------------------------------
# simulate.sigma_descent
TINY_SIGMA = ["--n", "12", "--classes", "3", "--batch-size", "6", "--steps", "4", "--embed-dim", "8", "--quiet",
              "--no-plot", "--lemma5-trials", "2"]
SIGMA_CASES = [
    (["--n", "0"], "n must"), (["--n", "-3"], "n must"), (["--n", "x"], "invalid int"),
    (["--classes", "1"], "C (number of classes)"), (["--n", "10", "--classes", "3"], "divisible"),
    (["--batch-size", "1"], "batch_size must be >= 2"), (["--batch-size", "0"], "batch_size"),
    (["--tau", "0"], "tau must be > 0"), (["--tau", "-1"], "tau"), (["--tau", "nan"], "tau"),
    (["--tau", "inf"], "tau"), (["--delta", "0"], "delta"), (["--delta", "1"], "delta"),
    (["--delta", "1.5"], "delta"), (["--steps", "0"], "steps"), (["--views", "foo"], "invalid choice"),
    (["--view-slots", "1"], "view_slots"), (["--sigma", "foo"], "invalid choice"),
    (["--project", "foo"], "invalid choice"), (["--separation", "-1"], "separation"),
    (["--embed-dim", "0"], "embed_dim"), (["--aug-noise", "-1"], "aug_noise"),
    (["--init-seed", "-1"], "init_seed"), (["--batch-seed", "-2"], "batch_seed"), (["--seed", "-1"], "seed"),
    (["--eval-every", "-1"], "eval_every"), (["--lemma5-trials", "-1"], "lemma5_trials"),
    (["--checkpoint-every", "-1"], "checkpoint_every"), (["--stop-after", "0"], "stop_after"),
    (["--stop-after", "4"], "stop_after must be < steps"), (["--eta", "-1"], "eta"), (["--eta", "nan"], "eta"),
    (["--eta-schedule", "foo"], "eta_schedule"), (["--eta-schedule", "{fx}/missing.npy"], "not found"),
    (["--threads", "0"], "threads"), (["--bogus"], "unrecognized"), (["--no-replacement", "--batch-size", "13"],
                                                                     "batch_size must be <= n"),
    (["--config", "{fx}/missing.json"], "not found"), (["--config", "{fx}/bad.json"], "not valid JSON"),
    (["--config", "{fx}/list.json"], "JSON object"), (["--config", "{fx}/unknown.json"], "unknown config key"),
    (["--config", "{fx}/bad.toml"], "not valid TOML"), (["--config", "{fx}/nested.toml"], "nested too deep"),
    (["--config", "{fx}/twice.toml"], "given twice"), (["--config", "{fx}"], "is a directory"),
    (["--out", "{fx}/afile"], "is a file"), (["--out", "{fx}/afile/sub"], "lies below the file"),
    (["--resume", "--out", "{fx}/runs"], "no checkpoint"), (["--resume", "--out", "{fx}/ckpt"], "corrupt"),
    (["--labels-path", "{fx}/lab.npy"], "labels_path needs init_path"),
    (["--init-path", "{fx}/emb.npy"], "init_path needs labels_path"),
    (["--init-path", "{fx}/emb.npy", "--labels-path", "{fx}/lab.npy", "--n", "500"], "conflicts with init_path"),
    (["--init-path", "{fx}/emb.npy", "--labels-path", "{fx}/lab.npy", "--classes", "4"], "conflicts"),
    (["--n", "4000000", "--classes", "2"], "memory"), (["--batch-size", "20000000"], "memory"),
]


@pytest.mark.parametrize("argv,needle", SIGMA_CASES, ids=[" ".join(a) for a, _ in SIGMA_CASES])
def test_sigma_descent_bad_input(argv, needle, env, capsys):
    from simulate.sigma_descent import main

    line = check_cli(main, "python -m simulate.sigma_descent", TINY_SIGMA + argv, env, capsys)
    assert needle in line


def test_sigma_tiny_tau_is_a_vacuous_bound_not_a_crash(env, capsys):
    """tau = 0.001: e^(2/tau) overflows; Delta and every certificate are inf (vacuous), the run completes."""
    from simulate.sigma_descent import main

    out = env / "work" / "tiny_tau"
    assert main(TINY_SIGMA + ["--tau", "0.001", "--eta", "0.01", "--out", str(out)]) == 0
    doc = json.loads((out / "config.json").read_text())
    assert doc["constants"]["Delta"] == "inf"  # runio writes non-finite floats as strings


def test_refused_resume_keeps_config_json_and_second_writer_is_refused(env, capsys):
    from runio.outdir import OutDirLock
    from simulate.sigma_descent import main

    out = env / "work" / "part"
    assert main(TINY_SIGMA + ["--stop-after", "2", "--out", str(out)]) == 0
    before = (out / "config.json").read_bytes()
    capsys.readouterr()
    line = check_cli(main, "python -m simulate.sigma_descent", ["--resume", "--tau", "0.9", "--out", str(out),
                                                                "--quiet"], env, capsys)
    assert "differs" in line and (out / "config.json").read_bytes() == before
    with OutDirLock(out):  # another writer holds the directory
        line = check_cli(main, "python -m simulate.sigma_descent", TINY_SIGMA + ["--out", str(out)], env, capsys)
    assert "in use by another run" in line and f"pid {os.getpid()}" in line


# ----------------------------------------------------------------------------------------------------------
# simulate.montecarlo, simulate.adversarial, simulate.sweep, theory.audit
MC_CASES = [
    ["--trials", "-1"], ["--classes", "x"], ["--classes", "1"], ["--batch-size", "0"], ["--steps", "0"],
    ["--delta", "0"], ["--delta", "2"], ["--eps", "-0.1"], ["--N", "0"], ["--anchor-slot", "foo"],
    ["--seed", "-1"], ["--bogus"], ["--delta", "0.1", "--eps", "0.1"], ["--config", "{fx}/unknown.json"],
    ["--trials", "1.5"],
]


@pytest.mark.parametrize("argv", MC_CASES, ids=[" ".join(a) for a in MC_CASES])
def test_montecarlo_bad_input(argv, env, capsys):
    from simulate.montecarlo import main

    check_cli(main, "python -m simulate.montecarlo", ["--classes", "2", "--batch-size", "4", "--steps", "1"] + argv
              if "--classes" not in argv and "--batch-size" not in argv and "--steps" not in argv else argv,
              env, capsys)


ADV_CASES = [
    ["--claims", "L9"], ["--tau", "-1"], ["--tau", "x"], ["--tau", ""], ["--batch-size", "0"], ["--classes", "1"],
    ["--compositions", "foo"], ["--sigma", "foo"], ["--sym-grad", "foo"], ["--ids", "foo"], ["--diag", "foo"],
    ["--eps", "x"], ["--delta", "2"], ["--restarts", "0"], ["--out", "{fx}/afile"], ["--out", "{fx}/afile/x"],
    ["--config", "{fx}/unknown.toml"], ["--config", "{fx}/missing.toml"], ["--steps", "0", "--delta", "0.1"],
]


@pytest.mark.parametrize("argv", ADV_CASES, ids=[" ".join(a) for a in ADV_CASES])
def test_adversarial_bad_input(argv, env, capsys):
    from simulate.adversarial import main

    check_cli(main, "python -m simulate.adversarial", ["--claims", "L2", "--restarts", "1", "--quiet"] + argv,
              env, capsys)


SWEEP_CASES = [
    ["--tau", "0.5,x"], ["--classes", "1"], ["--quick", "--x", "steps"], ["--jobs", "0"], ["--out", "{fx}/afile"],
    ["--n-per-class", "0"], ["--views", "foo"], ["--project", "foo"], ["--steps", "0"],
    ["--config", "{fx}/unknown.json"], ["--batch-size", "1"], ["--eta", "-1"],
]


@pytest.mark.parametrize("argv", SWEEP_CASES, ids=[" ".join(a) for a in SWEEP_CASES])
def test_sigma_sweep_bad_input(argv, env, capsys):
    from simulate.sweep import main

    check_cli(main, "python -m simulate.sweep", ["--quiet", "--jobs", "1"] + argv, env, capsys)


AUDIT_CASES = [["--bogus"], ["--config", "{fx}/unknown.json"], ["--json", "extra"], ["--config", "{fx}/bad.json"]]


@pytest.mark.parametrize("argv", AUDIT_CASES, ids=[" ".join(a) for a in AUDIT_CASES])
def test_audit_bad_input(argv, env, capsys):
    from theory.audit import main

    check_cli(main, "python -m theory.audit", argv, env, capsys)


def test_audit_config_bool_type(env, capsys):
    from theory.audit import main

    (env / "fx" / "full.json").write_text('{"full": 1}')
    assert "true or false" in check_cli(main, "python -m theory.audit", ["--config", "{fx}/full.json"], env, capsys)


# ----------------------------------------------------------------------------------------------------------
# experiments.bound_vs_empirical, experiments.train, experiments.sweep, figures
TINY_BVE = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
            "--classes", "3", "--n-per-class", "8", "--test-per-class", "4", "--ref-train", "12", "--ref-test", "9",
            "--ref-batch", "6", "--batch-size", "12", "--epochs", "1", "--losses", "CL", "NSCL", "--quiet"]
BVE_CASES = [
    ["--tau", "-1"], ["--losses", "CL", "SCL"], ["--bogus"], ["--batch-size", "x"], ["--delta", "1.5"],
    ["--pairs", "CL-CE"], ["--config", "{fx}/missing.toml"], ["--config", "{fx}/unknown.toml"],
    ["--config", "{fx}/bad.toml"], ["--config", "{fx}/unknown.json"], ["--arch", "foo"], ["--dataset", "foo"],
    ["--dataset", "cifar10"], ["--out", "{fx}/afile"], ["--out", "{fx}/afile/run"], ["--width", "0"],
    ["--lr", "-1"], ["--optimizer", "foo"], ["--momentum", "1"], ["--epochs", "0"], ["--classes", "1"],
    ["--anchors", "foo"], ["--device", "tpu"], ["--ref-batch", "100"], ["--init-seed", "-1"],
    ["--dataset", "folder", "--data-root", "{fx}/nothing"],
]


@pytest.mark.parametrize("argv", BVE_CASES, ids=[" ".join(a) for a in BVE_CASES])
def test_bound_vs_empirical_bad_input(argv, env, capsys):
    from experiments.bound_vs_empirical import main

    check_cli(main, "bound_vs_empirical", TINY_BVE + argv, env, capsys)


def test_bound_vs_empirical_second_writer_refused(env, capsys):
    from experiments.bound_vs_empirical import main
    from runio.outdir import OutDirLock

    out = env / "work" / "held"
    with OutDirLock(out):
        line = check_cli(main, "bound_vs_empirical", TINY_BVE + ["--out", str(out)], env, capsys)
    assert "in use by another run" in line


TRAIN_CASES = [
    ["--tau", "-1"], ["--batch-size", "0"], ["--arch", "foo"], ["--out", "{fx}/afile"], ["--dataset", "foo"],
    ["--bogus"], ["--epochs", "x"], ["--optimizer", "foo"], ["--losses", "XL"], ["--out", "{fx}/afile/sub"],
]


@pytest.mark.parametrize("argv", TRAIN_CASES, ids=[" ".join(a) for a in TRAIN_CASES])
def test_train_bad_input(argv, env, capsys):
    from experiments.train import main

    base = ["--arch", "mlp", "--epochs", "1", "--quiet"] + ([] if "--out" in argv else ["--out", "{work}/t"])
    check_cli(main, "python -m experiments.train", base + argv, env, capsys)


def test_train_without_out_is_one_line(env, capsys):
    from experiments.train import main

    assert "--out" in check_cli(main, "python -m experiments.train", ["--arch", "mlp"], env, capsys)


_SMALL = str(Path(__file__).resolve().parent.parent / "configs" / "small" / "blog_fig6_cka_rsa.toml")
XSWEEP_CASES = [["{fx}/missing.toml"], ["--bogus", "x"], ["{fx}/bad.toml"], ["{fx}/unknown.toml"],
                ["{fx}/bad.toml", "--jobs", "x"], [_SMALL, "--out", "{fx}/afile"], [_SMALL, "--out", "{fx}/afile/x"],
                [_SMALL, "--jobs", "0", "--out", "{work}/s"], [_SMALL, "--shard", "3/2", "--out", "{work}/s"]]


@pytest.mark.parametrize("argv", XSWEEP_CASES, ids=[" ".join(a) for a in XSWEEP_CASES])
def test_experiments_sweep_bad_input(argv, env, capsys):
    from experiments.sweep import main

    check_cli(main, "sweep", argv, env, capsys)


FIG_CASES = [["--bogus"], ["--only", "zz"], ["--config", "{fx}/unknown.json"], ["--runs", "{fx}", "--out", "{fx}/afile"],
             ["--runs", "{fx}", "--out", "{fx}/afile/x"], ["--runs", "{fx}/no_such_dir"], ["--runs", "{fx}/afile"]]


@pytest.mark.parametrize("argv", FIG_CASES, ids=[" ".join(a) for a in FIG_CASES])
def test_figures_bad_input(argv, env, capsys):
    from figures import main

    # a Sigma-space run for --runs to find, so the --out checks are reached
    check_cli(main, "python -m figures", argv, env, capsys)


# ----------------------------------------------------------------------------------------------------------
# public API: one-line ValueError
def _one_line_value_error(fn, *a, **kw) -> str:
    with pytest.raises(ValueError) as e:
        fn(*a, **kw)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def _api_cases():
    from runio.cli import comma_list
    from runio.memory import check_memory
    from theory import constants as K
    from theory.losses import contrastive_loss, masked_contrastive_loss

    ids4 = torch.tensor([0, 0, 1, 1])
    lab4 = torch.tensor([0, 0, 1, 1])
    cases = [
        ("eps_b_delta B=0", lambda: K.eps_b_delta(0, 10, 0.1)),
        ("eps_b_delta T=0", lambda: K.eps_b_delta(10, 0, 0.1)),
        ("eps_b_delta delta=1", lambda: K.eps_b_delta(10, 10, 1.0)),
        ("eps_b_delta B=1.5", lambda: K.eps_b_delta(1.5, 10, 0.1)),
        ("delta_c_delta C=1", lambda: K.delta_c_delta(1, 512, 10, 0.1, 0.5)),
        ("delta_c_delta tau=0", lambda: K.delta_c_delta(10, 512, 10, 0.1, 0.0)),
        ("delta_c_delta tau=nan", lambda: K.delta_c_delta(10, 512, 10, 0.1, float("nan"))),
        ("delta_c_delta eps too big", lambda: K.delta_c_delta(2, 2, 1000, 0.01, 0.5)),
        ("check_tau str", lambda: K.check_tau("0.5")),
        ("check_tau bool", lambda: K.check_tau(True)),
        ("check_delta 0", lambda: K.check_delta(0)),
        ("check_classes 2.0", lambda: K.check_classes(2.0)),
        ("check_positive_int True", lambda: K.check_positive_int("n", True)),
        ("check_nonneg_int -1", lambda: K.check_nonneg_int("seed", -1)),
        ("check_nonneg_int 1.0", lambda: K.check_nonneg_int("seed", 1.0)),
        ("check_bool 1", lambda: K.check_bool("plot", 1)),
        ("check_choice", lambda: K.check_choice("views", "x", ("slots", "identity"))),
        ("check_choice unhashable", lambda: K.check_choice("views", ["x"], {"slots": 1})),
        ("check_eta_schedule scalar", lambda: K.check_eta_schedule(0.5)),
        ("check_eta_schedule nan", lambda: K.check_eta_schedule([0.1, float("nan")])),
        ("contrastive_loss all NaN", lambda: contrastive_loss(torch.full((4, 4), float("nan")), "CL", 0.5, ids4, ids4)),
        ("contrastive_loss all inf", lambda: contrastive_loss(torch.full((4, 4), float("inf")), "NSCL", 0.5, ids4,
                                                              ids4, lab4, lab4)),
        ("contrastive_loss one NaN", lambda: contrastive_loss(torch.zeros(4, 4).index_put_(
            (torch.tensor([1]), torch.tensor([2])), torch.tensor(float("nan"))), "CL", 0.5, ids4, ids4)),
        ("contrastive_loss 0x0", lambda: contrastive_loss(torch.zeros(0, 0), "CL", 0.5, ids4[:0], ids4[:0])),
        ("contrastive_loss 0 keys", lambda: contrastive_loss(torch.zeros(4, 0), "CL", 0.5, ids4, ids4[:0])),
        ("contrastive_loss kind", lambda: contrastive_loss(torch.zeros(4, 4), "XL", 0.5, ids4, ids4)),
        ("contrastive_loss int sim", lambda: contrastive_loss(torch.zeros(4, 4, dtype=torch.long), "CL", 0.5, ids4,
                                                              ids4)),
        ("contrastive_loss 1-D", lambda: contrastive_loss(torch.zeros(4), "CL", 0.5, ids4, ids4)),
        ("contrastive_loss ids shape", lambda: contrastive_loss(torch.zeros(4, 4), "CL", 0.5, ids4[:3], ids4)),
        ("contrastive_loss NSCL no labels", lambda: contrastive_loss(torch.zeros(4, 4), "NSCL", 0.5, ids4, ids4)),
        ("contrastive_loss one class NSCL", lambda: contrastive_loss(torch.zeros(4, 4), "NSCL", 0.5, ids4, ids4,
                                                                     lab4 * 0, lab4 * 0)),
        ("masked loss mask dtype", lambda: masked_contrastive_loss(torch.zeros(2, 2), torch.zeros(2, 2),
                                                                   torch.zeros(2, 2, dtype=torch.bool), 0.5)),
        ("comma_list", lambda: comma_list("1,x", int, "classes")),
        ("comma_list empty", lambda: comma_list(" , ", float, "tau")),
        ("check_memory", lambda: check_memory(10 ** 18, "a test run", available=10 ** 9)),
    ]
    return cases


API_NAMES = [
    "eps_b_delta B=0", "eps_b_delta T=0", "eps_b_delta delta=1", "eps_b_delta B=1.5", "delta_c_delta C=1",
    "delta_c_delta tau=0", "delta_c_delta tau=nan", "delta_c_delta eps too big", "check_tau str", "check_tau bool",
    "check_delta 0", "check_classes 2.0", "check_positive_int True", "check_nonneg_int -1", "check_nonneg_int 1.0",
    "check_bool 1", "check_choice", "check_choice unhashable", "check_eta_schedule scalar",
    "check_eta_schedule nan", "contrastive_loss all NaN", "contrastive_loss all inf", "contrastive_loss one NaN",
    "contrastive_loss 0x0", "contrastive_loss 0 keys", "contrastive_loss kind", "contrastive_loss int sim",
    "contrastive_loss 1-D", "contrastive_loss ids shape", "contrastive_loss NSCL no labels",
    "contrastive_loss one class NSCL", "masked loss mask dtype", "comma_list", "comma_list empty", "check_memory",
]


@pytest.mark.parametrize("name", API_NAMES)
def test_public_api_bad_input(name):
    fn = dict(_api_cases())[name]
    _one_line_value_error(fn)


def test_api_case_names_complete():
    assert [n for n, _ in _api_cases()] == API_NAMES


RUNIO_FILES = ["missing.json", "bad.json", "list.json", "bad.toml", "nested.toml", "twice.toml", "."]


@pytest.mark.parametrize("name", RUNIO_FILES)
def test_load_config_bad_file(name, env):
    from runio.config import load_config

    _one_line_value_error(load_config, env / "fx" / name)


@pytest.mark.parametrize("what", ["file", "below file", "empty", "corrupt ckpt", "foreign ckpt", "missing ckpt",
                                  "unknown dataclass key", "held lock"])
def test_runio_bad_input(what, env):
    from dataclasses import dataclass

    from runio.checkpoint import load_checkpoint
    from runio.config import dataclass_from_dict
    from runio.outdir import OutDirLock, check_out_dir

    fx = env / "fx"
    before = _tree(env)
    if what == "file":
        _one_line_value_error(check_out_dir, fx / "afile")
    elif what == "below file":
        _one_line_value_error(OutDirLock(fx / "afile" / "x").acquire)
    elif what == "empty":
        _one_line_value_error(check_out_dir, "")
    elif what == "corrupt ckpt":
        assert "corrupt or truncated" in _one_line_value_error(load_checkpoint, fx / "ckpt" / "checkpoint.pt")
    elif what == "foreign ckpt":
        assert "trailer" in _one_line_value_error(load_checkpoint, fx / "foreign.pt")
    elif what == "missing ckpt":
        assert "no checkpoint" in _one_line_value_error(load_checkpoint, fx / "none.pt")
    elif what == "unknown dataclass key":
        @dataclass
        class Cfg:
            a: int = 1

        assert "'b'" in _one_line_value_error(dataclass_from_dict, Cfg, {"a": 2, "b": 3})
    elif what == "held lock":
        with OutDirLock(fx / "runs"):
            assert "in use" in _one_line_value_error(OutDirLock(fx / "runs").acquire)
    assert _tree(env) == before


def test_sigma_config_api_bad_input():
    from simulate.config import SigmaConfig, validate_config

    for kw in ({"n": 0}, {"views": "x"}, {"replacement": 1}, {"plot": "yes"}, {"init_seed": -1}, {"eta": [0.1]}):
        _one_line_value_error(validate_config, SigmaConfig(**kw))
    _one_line_value_error(SigmaConfig.from_dict, {"bogus": 1})
