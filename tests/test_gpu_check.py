"""benchmarks/gpu_check: the prepared GPU check runs end to end on the CPU (``--cpu --quick``).

The fast sections run in the default suite; the whole script (``gpu_check.sh --cpu --quick``, about 1-3 minutes
on 2 cores) only with SIMDESCENT_SLOW=1 (timing never goes into a unit test: only that it runs and what it reports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_agreement_sections_on_cpu(tmp_path, capsys):
    out = tmp_path / "g.json"
    rc = gpu_check.main(["--cpu", "--quick", "--only", "agree_train,agree_sigma,sigma_steps", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    sec = doc["sections"]
    assert list(sec) == ["agree_train", "agree_sigma", "sigma_steps"] and doc["device"] == "cpu"
    # CPU vs CPU: the same code path on the same device must agree exactly, and the step must move something
    assert sec["agree_train"]["result"]["rel_weight_diff_after_1_step"] == 0.0
    assert sec["agree_sigma"]["result"]["max_abs_diff"] == 0.0 and sec["agree_sigma"]["result"]["max_abs_update"] > 0
    assert all(r["steps_per_s"] > 0 for r in sec["sigma_steps"]["result"])
    assert "agree_sigma:" in capsys.readouterr().out


def test_bad_section_and_missing_gpu_are_one_line_errors(capsys):
    assert gpu_check.main(["--cpu", "--only", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    if not gpu_check.torch.cuda.is_available():
        assert gpu_check.main([]) == 2
        assert "use --cpu" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("SIMDESCENT_SLOW"), reason="1-3 min on 2 cores; set SIMDESCENT_SLOW=1")
def test_gpu_check_sh_cpu_quick_end_to_end(tmp_path):
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--quick"], cwd=REPO, capture_output=True,
                       text=True, env={**os.environ, "OUT": str(tmp_path)}, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((tmp_path / "gpu_check_cpu_quick.json").read_text())
    assert set(doc["sections"]) == {"agree_train", "agree_sigma", "throughput", "lockstep", "sigma_steps"}
    for row in doc["sections"]["throughput"]["result"]:
        assert row["images_per_s"] > 0 and 0 <= row["augment_share"] <= 1
        assert row["s_per_epoch_50k"] == pytest.approx(50000 / row["B"] * row["s_per_step"])
    lk = doc["sections"]["lockstep"]["result"]
    assert lk["speedup"] == pytest.approx(lk["separate_s_per_step_sum"] / lk["lockstep_s_per_step"])
