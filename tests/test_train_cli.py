"""``python -m experiments.train``: SIGTERM from the first moments on (before the slow imports, while the trainer
is being built), progress lines in redirected logs, label-noise flags, the lazy re-exports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import experiments.train as T

REPO = Path(__file__).resolve().parent.parent
TINY = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--classes", "3",
        "--batch-size", "100", "--epochs", "2", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: one thread is faster on a busy machine


def _catches_sigterm(pid: int) -> bool:
    """True once process ``pid`` has a handler for SIGTERM (bit 15 of SigCgt in /proc/pid/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
    return bool(mask >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_sigterm_during_startup_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "experiments.train", *TINY, "--out", str(out)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    t0 = time.monotonic()
    while not _catches_sigterm(p.pid):  # the handler is the CLI's first statement after interpreter start-up
        assert p.poll() is None and time.monotonic() - t0 < 60
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)  # now: the CLI is still importing torch (seconds)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM received during start-up" in lines[0], err
    assert not out.exists()


def test_sigterm_while_the_trainer_is_built_checkpoints_after_one_step(tmp_path, monkeypatch, one_thread):
    import experiments.lockstep as L

    orig = L.LockstepTrainer.__init__

    def init(self, *a, **k):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives before the trainer exists: kept pending, then forwarded
        orig(self, *a, **k)

    monkeypatch.setattr(L.LockstepTrainer, "__init__", init)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(L.TrainingInterrupted) as e:
        T.main([*TINY, "--out", str(tmp_path), "--quiet"])
    assert e.value.code == 128 + signal.SIGTERM
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 1
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_redirected_stderr_gets_one_line_per_epoch_and_label_noise_is_recorded(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    assert T.main([*TINY, "--out", str(out), "--label-noise", "1", "--label-noise-seed", "3"]) == 0
    err = capsys.readouterr().err  # captured: not a terminal
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("lockstep: step ") for ln in lines), err  # 2 epochs, no bar
    assert "\r" not in err
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["label_noise"] == 1.0 and man["config"]["label_noise_seed"] == 3
    assert man["label_noise"]["changed"] > 0


def test_lazy_reexports_and_unknown_name():
    from experiments.lockstep import LockstepTrainer
    from experiments.train_config import TrainConfig

    assert T.LockstepTrainer is LockstepTrainer and T.TrainConfig is TrainConfig
    with pytest.raises(AttributeError):
        T.no_such_name  # noqa: B018
