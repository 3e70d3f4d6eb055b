"""experiments.sweep: sweep files, grid expansion, run-directory names, learning-rate rules, shards, skip / resume,
sweep.csv collection, the local and submitit (LocalExecutor) launchers, the FLOP cost estimate, the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from experiments import cost, launch, sweep, sweep_run
from experiments.sweep_spec import (
    expand_grid,
    load_sweep,
    lr_from_rule,
    parse_shard,
    parse_sweep,
    point_name,
    select_shard,
    value_label,
)
from runio import read_csv, read_json, write_csv, write_json

REPO = Path(__file__).resolve().parent.parent

TINY_BASE = {"dataset": "synthetic", "n_per_class": 8, "test_per_class": 4, "image_size": 8, "arch": "mlp",
             "width": 0.25, "proj_hidden": 8, "proj_dim": 4, "batch_size": 16, "epochs": 1, "ref_train": 16,
             "ref_test": 16, "ref_batch": 8, "theory": False, "lp_iters": 3, "save_weights": False}


def spec_of(tmp_path: Path, grid: dict, base: dict | None = None, **sweep_kw):
    raw = {"sweep": {"name": "t", "out": str(tmp_path / "out"), **sweep_kw}, "base": dict(base or TINY_BASE),
           "grid": grid}
    return parse_sweep(raw, tmp_path / "t.toml")


# ----------------------------------------------------------------------------------------------------------
# learning-rate rules (paper Sec. 5 / Fig. 5)
@pytest.mark.parametrize("rule,B,expected", [
    ("linear", 1024, 0.3 * 1024 / 256), ("sqrt", 1024, 0.3 * 32 / 256), ("fourth_root", 256, 0.3 * 4 / 256),
    ("constant", 512, 0.3), ("paper", 1024, 1.2), ("paper", 600, 0.6)])
def test_lr_rules(rule, B, expected):
    assert lr_from_rule(rule, B) == pytest.approx(expected, rel=1e-15)


def test_lr_rule_errors():
    with pytest.raises(ValueError, match="lr_rule must be one of"):
        lr_from_rule("cubic", 256)
    with pytest.raises(ValueError, match="needs batch_size >= 256"):
        lr_from_rule("paper", 128)


# ----------------------------------------------------------------------------------------------------------
# naming
@pytest.mark.parametrize("v,label", [(1, "1"), (0.5, "0p5"), (0.1, "0p1"), (0.01, "0p01"), (-0.1, "m0p1"),
                                     (1e-06, "1em06"), (2.0, "2"), (True, "on"), (None, "none"),
                                     (["CL", "NSCL"], "CL+NSCL"), ("fashion-mnist", "fashion-mnist"),
                                     ("fourth_root", "fourth_root")])
def test_value_labels_have_no_dots(v, label):
    assert value_label(v) == label and "." not in label


def test_odd_strings_get_a_hash_and_stay_distinct():
    a, b = value_label("data/a b"), value_label("data/a_b")
    assert a != b and a.startswith("data-a-b-") and "/" not in a and " " not in a
    assert value_label("a__b").startswith("a-b-") and "__" not in value_label("_a")


def test_point_names_readable_unique_stable(tmp_path):
    spec = spec_of(tmp_path, {"classes": [2, 4], "tau": [0.1, 0.5], "lr_rule": ["sqrt", "constant"]})
    pts = expand_grid(spec)
    names = [p.name for p in pts]
    assert len(pts) == 8 and len(set(names)) == 8
    assert names[0] == "C-2__tau-0p1__lr-sqrt" and names[-1] == "C-4__tau-0p5__lr-constant"  # first axis slowest
    assert all("." not in n for n in names)
    # adding grid values keeps the existing points' names and configs (stable)
    bigger = expand_grid(spec_of(tmp_path, {"classes": [2, 3, 4], "tau": [0.1, 0.5, 1.0],
                                            "lr_rule": ["sqrt", "constant"]}))
    by_name = {p.name: p.config for p in bigger}
    for p in pts:
        assert by_name[p.name] == p.config
    assert point_name({}) == "base"


def test_grid_values_reach_the_run_config(tmp_path):
    spec = spec_of(tmp_path, {"batch_size": [16, 32], "lr_rule": ["linear", "sqrt"], "seed": [0, 2],
                              "data": [{"name": "s4", "classes": 4}, {"name": "s2", "classes": 2, "tau": 1.0}]},
                   base={**TINY_BASE, "n_per_class": 16})
    pts = expand_grid(spec)
    assert len(pts) == 16
    for p in pts:
        c = p.config
        B = c["batch_size"]
        want = {"linear": 0.3 * B / 256, "sqrt": 0.3 * math.sqrt(B) / 256}[p.lr_rule]
        assert c["lr"] == pytest.approx(want, rel=1e-15)
        s = p.axes["seed"]
        assert (c["init_seed"], c["order_seed"], c["aug_seed"]) == (3 * s, 3 * s + 1, 3 * s + 2)
        assert c["classes"] == (4 if p.axes["data"] == "s4" else 2)
        assert c["tau"] == (1.0 if p.axes["data"] == "s2" else 0.5)
        assert c["out"] == str(tmp_path / "out" / "runs" / p.name) and c["quiet"] is True
    assert pts[0].name == "B-16__lr-linear__seed-0__data-s4"


@pytest.mark.parametrize("raw,msg", [
    ({"grid": {"colour": [1, 2]}}, "unknown grid axis 'colour'"),
    ({"base": {"out": "x"}}, "must not set out"),
    ({"grid": {"tau": []}}, "must be a non-empty list"),
    ({"grid": {"tau": [0.5, 0.5]}}, "repeats a value"),
    ({"grid": {"d": [{"classes": 2}]}}, "needs a non-empty name"),
    ({"sweep": {"launcher": "pbs"}}, "launcher must be one of"),
    ({"sweep": {"jobs": 0}}, "jobs must be an integer >= 1"),
    ({"extra": {}}, "unknown table [extra]"),
])
def test_malformed_sweep_files_are_one_line_errors(tmp_path, raw, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")) as e:
        parse_sweep({**{"base": dict(TINY_BASE)}, **raw}, "x.toml")
    assert "\n" not in str(e.value)


def test_bad_value_names_the_grid_point(tmp_path):
    with pytest.raises(ValueError, match=r"grid point tau-m1: tau must be"):
        expand_grid(spec_of(tmp_path, {"tau": [0.5, -1.0]}))


# ----------------------------------------------------------------------------------------------------------
# shards
def test_shards_partition_the_grid(tmp_path):
    pts = expand_grid(spec_of(tmp_path, {"classes": [2, 3, 4], "tau": [0.1, 0.5, 1.0]}))
    shards = [select_shard(pts, i, 4) for i in range(4)]
    names = [p.name for s in shards for p in s]
    assert sorted(names) == sorted(p.name for p in pts) and len(names) == 9
    assert [p.name for p in shards[1]] == [pts[1].name, pts[5].name]
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError, match="--shard must look like i/n"):
            parse_shard(bad)


# ----------------------------------------------------------------------------------------------------------
# skip / resume (the worker, with run_experiment replaced by a recorder)
def test_worker_skips_done_and_resumes_partial(tmp_path, monkeypatch):
    from experiments import bound_vs_empirical as bve

    spec = spec_of(tmp_path, {"tau": [0.5]})
    recs = sweep.plan(spec)
    sweep.prepare_dirs(recs)
    d = recs[0]["run_dir"]
    assert sweep_run.run_status(d) == "absent"  # only the sweep's own point.json
    calls = []

    def fake(cfg, resume=False, setup=None):
        calls.append((cfg.out, resume, cfg.tau))
        Path(cfg.out, "ckpt.pt").write_bytes(b"x")
        return {}

    monkeypatch.setattr(bve, "run_experiment", fake)
    monkeypatch.setattr(bve, "run_status", lambda out: "partial" if (Path(out) / "ckpt.pt").exists() else "absent",
                        raising=False)
    rec = sweep_run.run_point(d)
    assert calls == [(str(d), True, 0.5)] and rec["status"] == "partial"
    monkeypatch.setattr(bve, "run_status", lambda out: "done", raising=False)
    assert sweep_run.run_point(d)["skipped"] is True and len(calls) == 1


def test_changed_config_is_refused_not_overwritten(tmp_path):
    sweep.prepare_dirs(sweep.plan(spec_of(tmp_path, {"tau": [0.5]})))
    with pytest.raises(ValueError, match=r"holds a different config \(epochs: 1 -> 2\)"):
        sweep.prepare_dirs(sweep.plan(spec_of(tmp_path, {"tau": [0.5]}, base={**TINY_BASE, "epochs": 2})))


# ----------------------------------------------------------------------------------------------------------
# collection (independent of bound_vs_empirical: hand-written run files)
def test_collect_joins_metrics_models_theory_and_timing(tmp_path, monkeypatch):
    spec = spec_of(tmp_path, {"tau": [0.5]})
    recs = sweep.plan(spec)
    sweep.prepare_dirs(recs)
    d = recs[0]["run_dir"]
    met = [{"epoch": e, "step": s, "sum_eta": 0.1 * s, "split": sp, "pair": "CL-NSCL", "model_a": "CL",
            "model_b": "NSCL", "cka": 0.25 * s} for e, s in ((0, 0), (1, 4)) for sp in ("train", "test")]
    write_csv(d / "metrics.csv", met)
    write_csv(d / "models.csv", [{"epoch": 1, "step": 4, "model": m, "nccc": acc, "linear_probe": acc + 0.01,
                                  "train_loss": 2.0} for m, acc in (("CL", 0.7), ("NSCL", 0.8))])
    write_csv(d / "theory.csv", [{"epoch": 1, "step": 4, "sum_eta": 0.4, "lossgap_gap_clmodel": 0.05}])
    write_json(d / "metrics.json", {"resolved": {"C": 4, "N_train": 32, "total_steps": 4, "contrastive": "CL"},
                                    "timing": {"run_s": 3.0, "training_s": 2.0, "evaluations_s": 0.5}})
    monkeypatch.setattr(sweep, "run_status", lambda d: "done")
    rows = read_csv(sweep.collect(spec), numeric=False)
    assert len(rows) == 4
    last = [r for r in rows if r["step"] == "4"]
    assert all(r["final"] == "1" for r in last) and all(r["final"] == "0" for r in rows if r["step"] == "0")
    r = last[0]
    assert (r["run"], r["tau"], r["C"], r["nccc_a"], r["nccc_b"], r["linear_probe_b"], r["lossgap_gap_clmodel"],
            r["run_s"], r["cka"]) == ("tau-0p5", "0.5", "4", "0.7", "0.8", "0.81", "0.05", "3.0", "1.0")
    first = [r for r in rows if r["step"] == "0"][0]
    assert first["nccc_a"] == "" and first["lossgap_gap_clmodel"] == ""
    assert list(rows[0])[:5] == ["run", "status", "final", "tau", "lr_rule"]


# ----------------------------------------------------------------------------------------------------------
# launchers
def test_worker_command_and_gpu_slots():
    assert launch.worker_command("r/x", 1, python="py") == ["py", "-m", "experiments.sweep_run", "r/x"]
    assert launch.worker_command("r/x", 2) == ["torchrun", "--standalone", "--nproc_per_node=2", "-m",
                                               "experiments.sweep_run", "r/x"]
    assert launch.gpu_slots(4) == ["0", "1", "2", "3"]
    assert launch.gpu_slots(4, 2) == ["0,1", "2,3"]
    assert launch.gpu_slots([3, 5, 7], 2) == ["3,5"]
    assert launch.gpu_slots("none") == []
    with pytest.raises(ValueError, match="gpus must be"):
        launch.gpu_slots("all")
    with pytest.raises(ValueError, match="nproc_per_node must be an integer >= 1"):
        launch.worker_command("x", 0)


def test_local_launcher_end_to_end_then_rerun_is_a_noop(tmp_path):
    spec = spec_of(tmp_path, {"tau": [0.5, 1.0]}, jobs=2)
    s1 = sweep.run_sweep(spec, quiet=True)
    assert (s1["ran"], s1["skipped"], s1["failed"]) == (2, 0, [])
    rows = read_csv(Path(spec.out) / "sweep.csv", numeric=False)
    assert {r["run"] for r in rows} == {"tau-0p5", "tau-1"}
    assert {r["tau"] for r in rows if r["run"] == "tau-1"} == {"1.0"}
    fin = [r for r in rows if r["final"] == "1"]
    assert len(fin) == 4 and all(r["status"] == "done" and r["cka"] != "" for r in fin)  # 2 runs x train/test
    stamp = {p: p.stat().st_mtime_ns for p in Path(spec.out).rglob("metrics.json")}
    s2 = sweep.run_sweep(spec, quiet=True)
    assert (s2["ran"], s2["skipped"]) == (0, 2)
    assert {p: p.stat().st_mtime_ns for p in Path(spec.out).rglob("metrics.json")} == stamp
    summary = read_json(Path(spec.out) / "sweep.json")
    assert [r["status"] for r in summary["runs"]] == ["done", "done"]


def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit", reason="submitit not installed (pip install -e .[cluster])")
    spec = spec_of(tmp_path, {"tau": [0.5]}, launcher="submitit-local")
    s = sweep.run_sweep(spec, quiet=True)
    assert (s["ran"], s["failed"]) == (1, [])
    assert sweep_run.run_status(Path(spec.out) / "runs" / "tau-0p5") == "done"
    assert list((Path(spec.out) / "submitit").glob("*_result.pkl"))  # it went through submitit
    if not shutil.which("srun"):
        with pytest.raises(ValueError, match="launcher 'slurm' needs a slurm cluster"):
            launch.run_submitit([], tmp_path / "s", local=False)


# ----------------------------------------------------------------------------------------------------------
# cost estimate
def test_forward_flops_of_mlp_equal_the_matmul_count():
    # mlp: in -> 512 w -> 256 w, projector f -> ph -> pd; FLOPs = 2 x multiply-adds of the four Linear layers
    w, ch, size, ph, pd = 0.5, 1, 8, 32, 16
    h1, h2, d_in = 256, 128, ch * size * size
    assert cost.forward_flops("mlp", w, ch, size, ph, pd) == 2 * (d_in * h1 + h1 * h2 + h2 * ph + ph * pd)


def test_run_flops_formula(tmp_path):
    p = expand_grid(spec_of(tmp_path, {"epochs": [3]}, base={**TINY_BASE, "losses": ["CL", "NSCL", "SCL"]}))[0]
    f = cost.run_flops(p.config)
    F = f["fwd_per_image"]
    T = 3 * (80 // 16)  # synthetic: 10 classes x 8 per class, drop_last
    assert f["steps"] == T and f["train"] == 3 * F * 2 * 16 * T * 3
    e = cost.estimate(p.config, utilisation=0.5)
    assert e["gpu_hours"] == pytest.approx(e["total"] / (cost.H100_BF16_PEAK * 0.5) / 3600)


def test_folder_dataset_needs_cost_hints(tmp_path):
    base = {**TINY_BASE, "dataset": "folder", "data_root": "nowhere"}
    p = expand_grid(spec_of(tmp_path, {}, base=base))[0]
    with pytest.raises(ValueError, match="needs n_train_hint and classes_hint"):
        cost.run_flops(p.config, p.hints)
    p = expand_grid(spec_of(tmp_path, {}, base={**base, "n_train_hint": 1000, "classes_hint": 10,
                                                "classes": 5}))[0]
    assert cost.run_flops(p.config, p.hints)["n_train"] == 500


# ----------------------------------------------------------------------------------------------------------
# CLI
def test_cli_dry_run(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nout = "%s"\n[base]\ndataset = "synthetic"\n[grid]\ntau = [0.1, 0.5]\n'
                 'batch_size = [32, 64]\n' % (tmp_path / "o"))
    assert sweep.main([str(f), "--dry-run", "--shard", "1/2"]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "tau-0p1__B-64" in out and "tau-0p5__B-64" in out and "FLOP-based" in out
    assert "tau-0p1__B-32" not in out  # shard 1/2 keeps points 1 and 3
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


@pytest.mark.parametrize("args,msg", [(("none.toml",), "sweep file not found"),
                                      (("s.toml", "--shard", "3/2"), "--shard must look like i/n"),
                                      (("s.toml", "--jobs", "0"), "--jobs must be an integer >= 1"),
                                      (("s.toml", "--launcher", "pbs"), "argument --launcher: invalid choice")])
def test_cli_bad_input_is_exit_2_with_one_line(tmp_path, capsys, args, msg):
    (tmp_path / "s.toml").write_text('[base]\ndataset = "synthetic"\n')
    rc = sweep.main([str(tmp_path / args[0]), *args[1:]])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("sweep: error: ") and msg in err, err


def test_repository_configs_parse_and_expand():
    files = sorted((REPO / "configs").glob("*/*.toml"))
    exp = [f for f in files if f.parent.name in ("small", "paper")]
    assert len([f for f in exp if f.parent.name == "small"]) >= 8
    for f in exp:
        spec = load_sweep(f)
        assert spec.scale == f.parent.name, f
        pts = expand_grid(spec)
        assert pts and len({p.name for p in pts}) == len(pts)
        if spec.scale == "paper":  # the paper's optimiser settings (Sec. 5)
            for p in pts:
                c = p.config
                assert (c["optimizer"], c["momentum"], c["weight_decay"], c["warmup_epochs"]) == ("lars", 0.9, 1e-6, 10)
            json.dumps([p.config for p in pts])


def test_sigma_configs_parse_and_expand():
    """configs/sigma/*.toml are simulate.sweep option files: every key an option, every grid point valid."""
    from runio.cli import parse_with_config
    from simulate import sweep as ssweep

    files = sorted((REPO / "configs" / "sigma").glob("*.toml"))
    assert len(files) >= 6
    etas = {}
    for f in files:
        args = parse_with_config(ssweep.build_parser(), ["--config", str(f)])
        tasks = ssweep.make_tasks(
            ssweep.parse_values(args.classes, int), ssweep.parse_values(args.tau, float),
            ssweep.parse_values(args.batch_size, int), ssweep.parse_values(args.eta, float),
            ssweep.parse_values(args.seeds, int), args.n_per_class, ssweep.base_config(args))
        assert tasks, f
        if f.stem.startswith("fig5_batch_B"):
            B = int(args.batch_size)
            etas[B] = sorted(t["axes"]["eta"] for t in tasks)
    # the four Sec. 5 scalings applied to eta = 16 at B = 512: 16 f(B) / f(512), f in {B, sqrt B, B^1/4, 1}
    for B, got in etas.items():
        r = B / 512
        want = sorted({round(16 * x, 4) for x in (r, math.sqrt(r), r ** 0.25, 1.0)})
        assert [round(e, 4) for e in got] == want, B
