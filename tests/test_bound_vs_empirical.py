"""experiments.bound_vs_empirical and experiments.config: a tiny end-to-end run (with the Sigma-space surrogate)
writes every file with the expected columns and values; bad configurations exit 2 with one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import bound_vs_empirical as bve
from experiments.config import RunConfig, load_toml, parse_config
from theory.bounds import cor1_cka_bound, thm1_bound_from_delta
from theory.constants import delta_c_delta

ROOT = Path(__file__).resolve().parent.parent

TINY = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
        "--classes", "3", "--n-per-class", "16", "--test-per-class", "4", "--ref-train", "12", "--ref-test", "9",
        "--ref-batch", "6", "--batch-size", "16", "--delta", "0.5", "--epochs", "2", "--eval-every", "2", "--theory-evals", "2",
        "--g-pairs", "2", "--lp-iters", "5", "--losses", "CL", "NSCL", "SCL", "CE", "--surrogate",
        "--anchors", "first", "--quiet"]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("bve") / "run"
    rc = bve.main(TINY + ["--threads", "1", "--out", str(out)])  # 1 thread: ~3x faster for tiny models
    assert rc == 0
    return out


def test_tiny_run_writes_all_files(tiny_run):
    for name in ("config.json", "manifest.json", "metrics.csv", "metrics.json", "models.csv", "theory.csv",
                 "weight_gap.csv", "steps.csv", "surrogate.csv", "alignment.png", "alignment.pdf", "theory.png",
                 "theory.pdf", "surrogate.png", "surrogate.pdf"):
        assert (tiny_run / name).is_file() and (tiny_run / name).stat().st_size > 0, name
    man = json.loads((tiny_run / "manifest.json").read_text())
    for k in ("init_seed", "order_seed", "aug_seed", "data_seed", "ref_seed", "theory_seed"):
        assert k in man["seeds"]
    assert "git" in man and "versions" in man
    # coupled runs saw bit-identical inputs (one SHA-256 chain per model)
    assert len(set(man["input_digests"].values())) == 1
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["resolved"]["C"] == 3 and cfg["resolved"]["total_steps"] == 6  # 48 images / B=16 = 3 steps x 2
    assert "not for the network" in cfg["thm1_note"]


def test_metrics_csv_columns_and_values(tiny_run):
    rows = _csv(tiny_run / "metrics.csv")
    cols = set(rows[0])
    for c in ("epoch", "step", "split", "pair", "sum_eta", "cka", "rsa", "cka_linear_raw", "cka_linear_raw_debiased",
              "cka_backbone", "rsa_backbone", "weight_gap_total", "weight_gap_mean", "drift_measured", "drift_bound",
              "drift_bound_sharp", "k_cl_fro", "sigma_d", "rho", "r", "cka_lb", "cka_lb_sharp", "rsa_lb",
              "rsa_lb_sharp", "Delta", "T", "B", "tau", "C", "delta"):
        assert c in cols, c
    steps = sorted({int(r["step"]) for r in rows})
    assert steps == [0, 2, 4, 6]
    assert {r["pair"] for r in rows} == {"CL-NSCL", "CL-SCL", "CL-CE"}
    assert {r["split"] for r in rows} == {"train", "test"}
    eta = [float(r["eta"]) for r in _csv(tiny_run / "steps.csv")]
    assert len(eta) == 6
    Delta = delta_c_delta(3, 16, 6, 0.5, 0.5)
    for r in rows:
        s = int(r["step"])
        assert float(r["sum_eta"]) == pytest.approx(sum(eta[:s]))
        if s == 0:  # identical initialisation
            assert float(r["cka"]) == pytest.approx(1.0) and float(r["weight_gap_total"]) == 0.0
        if r["pair"] == "CL-NSCL":
            assert float(r["Delta"]) == pytest.approx(Delta)
            if s > 0:  # the bounds are the theory module's, with the run's actual step sizes
                d = thm1_bound_from_delta(eta[:s], Delta, 16, 0.5)
                assert float(r["drift_bound"]) == pytest.approx(d)
                c = cor1_cka_bound(d, float(r["k_cl_fro"]))
                assert float(r["cka_lb"]) == pytest.approx(c.lower_bound)
                assert float(r["drift_bound_sharp"]) <= float(r["drift_bound"])
                assert max(float(r["cka_lb_sharp"]), 0.0) >= max(float(r["cka_lb"]), 0.0)  # both vacuous <= 0
        else:
            assert r["cka_lb"] == ""


def test_models_theory_and_surrogate_tables(tiny_run):
    models = _csv(tiny_run / "models.csv")
    assert {m["model"] for m in models} == {"CL", "NSCL", "SCL", "CE"}
    last = [m for m in models if int(m["step"]) == 6]
    assert all(0.0 <= float(m["nccc"]) <= 1.0 and 0.0 <= float(m["linear_probe"]) <= 1.0 for m in last)
    th = _csv(tiny_run / "theory.csv")
    assert [int(r["step"]) for r in th] == [0, 6]  # --theory-evals 2: first and last evaluation
    for r in th:
        assert float(r["G_hat"]) > 0 and float(r["beta_hat"]) > 0
        assert float(r["G_run"]) >= float(r["G_hat"])
        assert r["lem7_holds_realized_at_cl"] == "1"
        assert float(r["lossgap_gap_clmodel"]) <= float(r["lossgap_bound_counts_clmodel"])
    assert float(th[0]["thm2_e"]) == 0.0 and float(th[-1]["thm2_e"]) > 0.0
    sur = _csv(tiny_run / "surrogate.csv")
    pair = [r for r in sur if r["model"] == "CL-NSCL"]
    assert len(pair) == 4
    assert float(pair[0]["sur_drift_fro"]) == 0.0 and float(pair[0]["net_drift_fro"]) == 0.0
    # Thm. 1 is a theorem about the surrogate: its drift obeys the bound at every evaluation
    assert all(r["thm1_holds_surrogate"] == "1" for r in pair)
    cl = [r for r in sur if r["model"] == "CL"]
    assert float(cl[0]["net_vs_sur_fro"]) == 0.0  # both start from the encoder's own Sigma_0
    assert cl[-1]["eq9_bound"] != "" and float(cl[-1]["eq9_bound"]) >= float(cl[-1]["eq7_bound"])
    assert float(cl[-1]["C_sigma"]) >= 1.0


def test_metrics_json_and_table(tiny_run):
    doc = json.loads((tiny_run / "metrics.json").read_text())
    assert doc["resolved"]["contrastive"] == "CL"
    assert len(doc["final"]) == 6  # 3 pairs x 2 splits at the last step
    table = bve.format_table(doc)
    assert "CL-NSCL CKA/RSA" in table and "not for the network" in table
    assert len(table.splitlines()) == 4 + 2


# ----------------------------------------------------------------------------------------------------------
# configuration
def test_toml_then_flags(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[data]\ndataset = "synthetic"\nclasses = 4\n[train]\nlosses = ["CL", "NSCL", "SCL"]\n'
                 'tau = 0.7\nepochs = 3\nbatch-size = 32\n')
    cfg = parse_config(["--config", str(f), "--epochs", "5"])
    assert cfg.tau == 0.7 and cfg.epochs == 5 and cfg.classes == 4 and cfg.batch_size == 32
    assert cfg.losses == ("CL", "NSCL", "SCL")
    assert cfg.pair_list() == [("CL", "NSCL"), ("CL", "SCL")]
    assert parse_config(["--losses", "dcl,nscl", "--pairs", "NSCL-DCL"]).contrastive == "DCL"
    assert RunConfig().to_dict()["losses"] == ["CL", "NSCL"]


@pytest.mark.parametrize("argv,needle", [
    (["--tau", "-1"], "tau"),
    (["--losses", "CL", "SCL"], "NSCL"),
    (["--losses", "NSCL", "SCL"], "CL or DCL"),
    (["--bogus"], "unrecognized"),
    (["--batch-size", "x"], "invalid int"),
    (["--delta", "1.5"], "delta"),
    (["--pairs", "CL-CE"], "not in losses"),
    (["--config", "/nonexistent/run.toml"], "not found"),
])
def test_bad_config_raises_one_line(argv, needle):
    with pytest.raises(ValueError) as e:
        parse_config(argv)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_toml_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[train]\nlearning_rate = 0.1\n")
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'"):
        load_toml(f)
    f.write_text("tau = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_toml(f)


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.bound_vs_empirical", "--tau", "0", "--out",
                        str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bound_vs_empirical: error:") and "tau" in lines[0]
    assert not (tmp_path / "x").exists()


def test_setup_errors_exit_2(tmp_path, capsys):
    # values that are only checkable once the data is known: reference set larger than the dataset
    rc = bve.main(["--n-per-class", "2", "--classes", "2", "--ref-train", "50", "--out", str(tmp_path / "y")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ref_train" in err[0]


def test_missing_dataset_path_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    rc = bve.main(["--dataset", "cifar10", "--data-root", str(missing), "--out", str(tmp_path / "z")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bound_vs_empirical: error:") and str(missing) in err[0]


def test_frob_drift_matches_n_by_n():
    from experiments.measure import cosine_gram

    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(30, 5, generator=g), torch.randn(30, 7, generator=g)
    ref = float(torch.linalg.matrix_norm(cosine_gram(za) - cosine_gram(zb)))
    assert bve._frob_drift(za, zb) == pytest.approx(ref, rel=1e-10)
