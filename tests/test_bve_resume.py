"""bound_vs_empirical checkpoints: a run stopped mid-way (an exception or SIGTERM inside the training loop) and
resumed writes the same bytes in every result file as an uninterrupted run (timings aside); refused resumes
touch nothing; run_status says absent / partial / done; weights files; the random-label control."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from experiments import bound_vs_empirical as bve
from experiments.config import parse_cli, parse_config
from experiments.run_record import CKPT_NAME, WEIGHTS_FINAL, WEIGHTS_INIT, run_status
from experiments.train import LockstepTrainer, TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")

# 48 training images, B = 16: 3 steps per epoch, 3 epochs = 9 steps; evaluations at 0, 2, 4, 6, 8, 9;
# checkpoints at steps 3 (no evaluation there: saved after the step) and 6 (after its evaluation)
ARGS = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
        "--classes", "3", "--n-per-class", "16", "--test-per-class", "4", "--ref-train", "12", "--ref-test", "9",
        "--ref-batch", "6", "--batch-size", "16", "--delta", "0.5", "--epochs", "3", "--eval-every", "2",
        "--theory-evals", "3", "--g-pairs", "2", "--lp-iters", "5", "--losses", "CL", "NSCL", "SCL", "CE",
        "--surrogate", "--anchors", "first", "--quiet", "--save-weights", "--momentum", "0.5", "--no-figures"]
TIMING_KEYS = ("wall_s", "train_wall_s", "timing")


def _cfg(out: Path, *extra: str):
    return parse_config(ARGS + ["--out", str(out), *extra])


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def _assert_same_results(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name in ("metrics.json", "config.json"):  # the two runs' --out differ
            ja, jb = json.loads(fa[name]), json.loads(fb[name])
            for k in TIMING_KEYS:
                ja.pop(k, None), jb.pop(k, None)
            assert ja["config"].pop("out") != jb["config"].pop("out")
            for k in ignore:
                ja["config"].pop(k), jb["config"].pop(k)
            assert ja == jb
        elif name == "manifest.json":
            ja, jb = json.loads(fa[name]), json.loads(fb[name])
            assert jb.pop("resumed_from") and "resumed_from" not in ja
            for k in ("command_line", "git"):  # the process's own; others commit while tests run
                ja.pop(k), jb.pop(k)
            assert ja == jb
        else:
            assert fa[name] == fb[name], name


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("bve_ref") / "run"
    assert run_status(out) == "absent"
    bve.run_experiment(_cfg(out))
    return out


def _stop_before_step(monkeypatch, k: int, how: str) -> None:
    orig = LockstepTrainer.train_step

    def step(self):
        if self.step == k:
            if how == "raise":
                raise RuntimeError("injected failure")
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer: finish this step, then stop
        return orig(self)

    monkeypatch.setattr(LockstepTrainer, "train_step", step)


def _stop(out: Path, monkeypatch, k: int, how: str, ckpt_step: int) -> None:
    _stop_before_step(monkeypatch, k, how)
    with pytest.raises(RuntimeError if how == "raise" else TrainingInterrupted):
        bve.run_experiment(_cfg(out))
    monkeypatch.undo()
    assert run_status(out) == "partial"
    assert json.loads((out / "status.json").read_text()) == {"state": "running"}
    assert torch.load(out / CKPT_NAME, weights_only=True)["step"] == ckpt_step


def _resumed_ok(reference: Path, out: Path, *extra: str) -> None:
    bve.run_experiment(_cfg(out, *extra), resume=True)
    assert run_status(out) == "done" and not (out / CKPT_NAME).exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    _assert_same_results(reference, out, ignore=("checkpoint_every",))


@pytest.mark.parametrize("k,how,ckpt_step", [(8, "raise", 6), (4, "sigterm", 5)])
def test_stopped_run_resumes_to_identical_files(reference, tmp_path, monkeypatch, k, how, ckpt_step):
    """Checkpoint written after an evaluation (step 6), and on SIGTERM mid-epoch (step 5)."""
    out = tmp_path / "run"
    _stop(out, monkeypatch, k, how, ckpt_step)
    _resumed_ok(reference, out)


def test_refused_resume_touches_nothing_and_done_run_is_not_repeated(reference, tmp_path, monkeypatch):
    """Checkpoint written after a step without evaluation (step 3); a refused resume changes no file."""
    out = tmp_path / "run"
    _stop(out, monkeypatch, 5, "raise", 3)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"^cannot resume: .*tau: saved 0\.5, given 0\.7") as e:
        bve.run_experiment(_cfg(out, "--tau", "0.7"), resume=True)
    assert "\n" not in str(e.value)
    assert bve.main(ARGS + ["--out", str(out), "--tau", "0.7", "--resume"]) == 2  # the CLI: exit 2, one line
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    _resumed_ok(reference, out, "--checkpoint-every", "2")  # keys that leave the numbers alone may differ
    done = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    doc = bve.run_experiment(_cfg(out), resume=True)  # finished: returns the record, writes nothing
    assert doc["resolved"]["total_steps"] == 9
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == done
    with pytest.raises(ValueError, match="finished run"):
        bve.check_resume(_cfg(out, "--epochs", "4"))


def test_resume_without_checkpoint_starts_fresh_and_status(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="must be a directory"):
        run_status(f)
    (tmp_path / "empty").mkdir()
    assert run_status(tmp_path / "empty") == "absent"
    assert bve.check_resume(_cfg(tmp_path / "empty")) == "fresh"
    assert parse_cli(["--resume"])[1] is True and parse_cli([])[1] is False


def test_weights_files_and_epoch_column(reference):
    w0 = torch.load(reference / WEIGHTS_INIT, weights_only=True)
    w1 = torch.load(reference / WEIGHTS_FINAL, weights_only=True)
    assert sorted(w0) == sorted(w1) == ["CE", "CL", "NSCL", "SCL"]
    k = next(iter(w0["CL"]))
    assert torch.equal(w0["CL"][k], w0["NSCL"][k])  # identical initialisation
    assert not torch.equal(w0["CL"][k], w1["CL"][k])
    import csv

    with open(reference / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(int(r["epoch"]), int(r["step"])) for r in rows} == {(0, 0), (0, 2), (1, 4), (2, 6), (2, 8), (3, 9)}


def test_figures_are_byte_identical_when_redrawn(tmp_path):
    """PDFs carry no creation date: a resumed run redraws the same bytes (plot._save, used by every figure)."""
    from experiments import plot

    plt = plot._plt()
    files = []
    for d in ("a", "b"):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1, 2], [1.0, 0.5, 0.25])
        files.append(plot._save(fig, tmp_path / d / "fig"))
    assert [p.suffix for p in files[0]] == [".png", ".pdf"]
    assert [p.read_bytes() for p in files[0]] == [p.read_bytes() for p in files[1]]
