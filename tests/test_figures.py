"""figures: every figure / table function on tiny synthetic result sets (tests/figures_synth.py: run directories
written directly, values from a known formula). Checked: files written, names unique and readable, axes
labelled, every input run present in the output (no silent drop), one-line skips naming the config to run."""

from __future__ import annotations

import csv
import re
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import figures
from figures import discover, fig1_directions, plotting, scaling
from figures_synth import TEST_OFFSET, cka_value, encoder_run, sigma_gap, sigma_run

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(formats=("png",), dpi=30)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Fig. 2 run (+ random-label control), a C' sweep (+ a second class seed, + control), a tau sweep in two
    folders with the same run names, a B sweep under three lr rules (folders bs/<rule>/B<b>), Sigma-space sweeps."""
    root = tmp_path_factory.mktemp("synth")
    encoder_run(root / "fig2" / "base", losses=["DCL", "NSCL", "SCL", "CE"], classes=6)
    encoder_run(root / "fig2" / "noise", losses=["DCL", "NSCL", "SCL", "CE"], classes=6, label_noise=1.0)
    for C in (2, 4, 8):
        encoder_run(root / "cls" / f"C{C}", classes=C)
    encoder_run(root / "cls" / "C4b", classes=4, class_seed=1)
    encoder_run(root / "cls" / "C4noise", classes=4, label_noise=1.0)
    for ds in ("a", "b"):  # same folder names (tau0.1, ...) under two parents, two datasets
        for t in (0.1, 0.5, 1.0):
            encoder_run(root / ds / f"tau{t}", tau=t, epochs=2, arch="mlp" if ds == "a" else "vit_tiny")
    for rule, k in (("linear", 1.0), ("sqrt", 0.5), ("constant", 0.0)):
        for B in (16, 32, 64):
            encoder_run(root / "bs" / rule / f"B{B}", batch_size=B, lr=0.1 * (B / 16) ** k, epochs=1, tau=0.2)
    for C in (2, 4, 8):
        sigma_run(root / "sig" / f"C{C}", classes=C, n=4 * C)
    sigma_run(root / "sig" / "C4s", classes=4, n=16, init_seed=9)
    for t in (0.5, 2.0):
        sigma_run(root / "sig" / f"tau{t}", tau=t, eval_every=0, steps=30)
    for B in (8, 16):
        for e in (0.5, 1.0):
            sigma_run(root / "sig" / f"B{B}e{e}", batch_size=B, eta=e, steps=10, tau=3.0)
    return root


@pytest.fixture(scope="module")
def result(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    only = [n for n in figures.FIGURES if n not in ("per_run", "fig1_directions")]
    return figures.regenerate([synth], out, only=only, **FAST), out


def test_every_figure_written_once_with_unique_readable_names(result):
    res, out = result
    assert res["skipped"] == {}
    assert set(res["written"]) == {n for n in figures.FIGURES if n not in ("per_run", "fig1_directions")}
    paths = [p for ps in res["written"].values() for p in ps]
    assert len(paths) == len(set(paths)) and all(p.is_file() and p.stat().st_size > 0 for p in paths)
    names = {p.name for p in paths}
    # two tau sweeps (datasets differ) -> two readable names; dots of values kept whole
    assert {"fig4_tau__arch=mlp.png", "fig4_tau__arch=vit_tiny.png"} <= names
    assert {"fig3_cka_vs_classes.png", "fig7_rsa_vs_classes.png", "fig5_batch.png", "table1_accuracy.tex",
            "table1_accuracy.md", "table1_accuracy.csv", "blog_fig6_alignment_table.tex",
            "sigma_fig3_classes.png", "sigma_fig4_tau.png", "sigma_fig5_batch.png"} <= names


def test_axes_labelled_and_legends_present(result):
    res, _ = result
    assert res["summaries"]
    for name, s in res["summaries"].items():
        assert s["suptitle"] or any(a.get("title") for a in s["axes"]), name
        for a in s["axes"]:
            if "colorbar" in a:
                assert a["colorbar"] and not re.fullmatch(r"[a-z0-9_]+", a["colorbar"]), (name, a)  # not a column name
        panels = [a for a in s["axes"] if "colorbar" not in a]
        assert all(a["lines"] or a["n_images"] for a in panels), name  # no empty panel
        assert any(a["xlabel"] for a in panels) and any(a["ylabel"] for a in panels), name  # shared axes: once
        if not any(a["n_images"] for a in panels):
            assert s["legend"], name


def test_fig4_keeps_every_tau_run_and_final_values(result, synth):
    _, out = result
    rows = _rows(out / "fig4_tau__arch=mlp.csv")
    assert sorted(float(r["value"]) for r in rows) == [0.1, 0.5, 1.0]
    for r in rows:  # value read back equals the synthetic formula at the last epoch
        assert math.isclose(float(r["cka_train_final"]), cka_value(4, float(r["value"]), 16, 0.1, 2), rel_tol=1e-9)
        assert r["runs"] == f"a__tau{float(r['value']):g}" or r["runs"].startswith("a__tau")


def test_fig5_one_panel_per_rule_every_run_present(result, synth):
    res, out = result
    s = res["summaries"]["fig5_batch"]
    titles = [a["title"] for a in s["axes"] if a["title"]]
    assert [t.split("\n")[0] for t in titles] == ["η ∝ B", "η ∝ √B", "η constant"]
    assert titles[0].split("\n")[1] == "η = 0.1, 0.2, 0.4"  # the panel's learning rates, in B order
    rows = _rows(out / "fig5_batch.csv")
    shown = {n for r in rows for n in r["runs"].split()}
    assert shown == {f"bs__{rule}__B{B}" for rule in ("linear", "sqrt", "constant") for B in (16, 32, 64)}
    assert len(rows) == 9  # 3 rules x 3 batch sizes, B = 16 (same lr under every rule) in each panel


def test_fig3_grid_every_class_count_with_control_row(result):
    _, out = result
    rows = _rows(out / "fig3_cka_vs_classes.csv")
    real = [r for r in rows if r["labels"] == "real labels" and r["split"] == "train"]
    assert [int(r["C"]) for r in real] == [2, 4, 8]  # not the Fig. 2 run (C'=6): its contrastive loss is DCL
    c4 = next(r for r in real if r["C"] == "4")  # two class seeds averaged
    assert math.isclose(float(c4["epoch_0"]), cka_value(4, 0.5, 16, 0.1, 0), rel_tol=1e-12)
    ctrl = [r for r in rows if r["labels"].startswith("random-label")]
    assert {int(r["C"]) for r in ctrl} == {4}


def test_tables_list_every_run(result, synth):
    _, out = result
    t6 = _rows(out / "blog_fig6_alignment_table.csv")  # the runs over architectures: both archs at each tau
    assert sorted(r["run"] for r in t6) == sorted(f"{d}__tau{t}" for d in "ab" for t in (0.1, 0.5, 1.0))
    assert {r["arch"] for r in t6} == {"mlp", "vit_tiny"}
    t1 = _rows(out / "table1_accuracy_long.csv")
    assert {(r["run"], r["model"]) for r in t1} == {(f"fig2__{n}", m) for n in ("base", "noise")
                                                     for m in ("DCL", "NSCL", "SCL", "CE")}
    tex = (out / "table1_accuracy.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and tex.count("\\\\") == 5  # header + 4 models


def test_blog_fig4_gap_and_bound(result):
    _, out = result
    rows = _rows(out / "blog_fig4_gap_vs_classes.csv")
    for r in rows:
        C = int(r["C"])
        assert math.isclose(float(r["bound"]), math.log1p(math.exp(2 / 0.5) / (C - 1)), rel_tol=1e-12)
    assert {int(r["C"]) for r in rows if r["label_noise"] == "0.0"} == {2, 4, 8}


def test_blog_fig3_train_and_test_batches_every_run(tmp_path):
    """Blog Fig. 3: train row, test row, NSCL of both models; every run in the CSV with the values it was given;
    a run made before the test batch existed keeps its train curves, and a figure of such runs only says so."""
    root = tmp_path / "runs"
    for C in (2, 4, 8):
        encoder_run(root / "cls" / f"C{C}", classes=C)
    encoder_run(root / "cls" / "C4old", classes=4, class_seed=1, test_batch=False)
    res = figures.regenerate([root], tmp_path / "out", only=["blog_fig3_losses"], **FAST)
    assert [p.name for p in res["written"]["blog_fig3_losses"]] == ["blog_fig3_losses.png", "blog_fig3_losses.csv"]
    rows = _rows(tmp_path / "out" / "blog_fig3_losses.csv")
    assert {(r["run"], r["split"]) for r in rows} == ({(f"C{C}", s) for C in (2, 4, 8) for s in ("train", "test")}
                                                      | {("C4old", "train")})
    assert len(rows) == 7 * 4  # epochs 0..3 each
    for r in rows:
        C, ep = int(r["C"]), float(r["epoch"])
        off = TEST_OFFSET if r["split"] == "test" else 0.0
        bound = math.log1p(math.exp(2 / 0.5) / (C - 1))
        assert math.isclose(float(r["loss_nscl_clmodel"]), 3.0 - 0.2 * ep + off, rel_tol=1e-12)
        assert math.isclose(float(r["bound_balanced"]), bound, rel_tol=1e-12)
        gap = (0.9 if off else 1.0) * bound * (0.5 - 0.05 * ep)
        assert math.isclose(float(r["gap_clmodel"]), gap, rel_tol=1e-12)
        assert math.isclose(float(r["loss_kind_clmodel"]), 3.0 - 0.2 * ep + off + gap, rel_tol=1e-12)
        assert math.isclose(float(r["loss_nscl_nsclmodel"]), 2.9 - 0.2 * ep + off, rel_tol=1e-12)
    s = res["summaries"]["blog_fig3_losses"]
    assert len(s["axes"]) == 9  # 3 rows (train, test, NSCL side by side) x 3 class counts
    assert [a["ylabel"] for a in s["axes"][::3]] == ["loss, train reference batch", "loss, test reference batch",
                                                      r"$\mathcal{L}^{\mathrm{NSCL}}$ (train —, test - -)"]
    assert all(len(a["lines"]) == 3 for a in s["axes"][:6]) and all(len(a["lines"]) == 4 for a in s["axes"][6:])
    assert s["axes"][4]["texts"] == ["test: 1 of 2 runs"]  # C = 4: C4old has no test batch, said in the panel
    assert all(not a["texts"] for k, a in enumerate(s["axes"]) if k != 4)
    for want in ("of the CL-trained model", "of the NSCL-trained model", "bound", "train batch", "test batch"):
        assert any(want in t for t in s["legend"]), want
    # only runs without the test batch: the test row says so instead of an empty panel
    old = tmp_path / "old"
    for C in (2, 8):
        encoder_run(old / f"C{C}", classes=C, test_batch=False)
    res = figures.regenerate([old], tmp_path / "out_old", only=["blog_fig3_losses"], **FAST)
    axes = res["summaries"]["blog_fig3_losses"]["axes"]
    assert all(a["texts"] == ["no test-batch loss\nin these runs"] and not a["lines"] for a in axes[2:4])
    assert all(a["lines"] for a in axes[:2] + axes[4:])


def test_sigma_counterparts_values(result):
    _, out = result
    rows = _rows(out / "sigma_fig4_tau.csv")
    assert sorted(float(r["value"]) for r in rows) == [0.5, 2.0]
    for r in rows:
        assert math.isclose(float(r["one_minus_cka_final"]), sigma_gap(4, float(r["value"]), 8, 1.0, 30), rel_tol=1e-6)
    b = _rows(out / "sigma_fig5_batch.csv")
    assert {n for r in b for n in r["runs"].split()} == {f"sig__B{B}e{e}" for B in (8, 16) for e in (0.5, 1.0)}
    c = _rows(out / "sigma_fig3_classes.csv")
    assert sorted({int(r["C"]) for r in c}) == [2, 4, 8]


def test_missing_inputs_skip_with_one_line_naming_the_config(synth, tmp_path):
    only_sigma = discover.Catalog(sigma=discover.find_runs([synth / "sig"]).sigma)
    res = figures.regenerate([], tmp_path, only=["fig2_alignment", "fig4_tau", "fig1_directions"],
                             catalog=only_sigma, **FAST)
    assert res["written"] == {}
    for name, why in res["skipped"].items():
        assert "\n" not in why and "configs/small/" in why, (name, why)
    assert not list(tmp_path.glob("*.png"))  # never an empty plot


def test_group_by_config_not_folder_names(synth):
    cat = discover.find_runs([synth])
    names = [r.name for r in cat.encoder + cat.sigma]
    assert len(names) == len(set(names)) and "a__tau0.1" in names and "b__tau0.1" in names
    gs = discover.group_runs(cat.encoder, {"tau"})
    assert len(gs) == 2 and {g.suffix for g in gs} == {"arch=mlp", "arch=vit_tiny"}
    gc = discover.group_runs(cat.encoder, {"classes", "class_seed"}, by=lambda r: r.C)
    assert len(gc) == 1 and len(gc[0].controls) == 1 and len(gc[0].main) == 4


def test_scaling_families_paper_rules():
    class R:
        def __init__(self, B, lr, rule=None):
            self.config = {"batch_size": B, "lr": lr}
            self.sweep = {"lr_rule": rule} if rule else {}

    runs = []
    for k in (1.0, 0.5, 0.25):
        runs += [R(B, 0.3 * B ** k / 256) for B in (256, 512, 1024)]
    runs += [R(B, 0.3) for B in (512, 1024)]  # constant; B = 256 at 0.3 is the linear rule's run
    fams = scaling.families(runs, lambda r: r.config["batch_size"], lambda r: r.config["lr"])
    assert [f for f, _ in fams] == ["η ∝ B", "η ∝ √B", "η ∝ B^¼", "η constant"]
    assert all(sorted(r.config["batch_size"] for r in rs) == [256, 512, 1024] for _, rs in fams)
    named = scaling.families([R(16, 0.1, "sqrt"), R(64, 0.2, "sqrt"), R(32, 7.0)], lambda r: r.config["batch_size"],
                             lambda r: r.config["lr"])
    assert named[0][0].startswith("η ∝ √B") and named[-1][0].startswith("other")  # never dropped


def test_output_refuses_a_name_twice(tmp_path):
    out = plotting.Output(tmp_path, formats=("png",), dpi=20)
    plt = plotting.plt()
    out.save(plt.figure(), "tau0.5")
    assert (tmp_path / "tau0.5.png").is_file()  # not cut at the dot
    with pytest.raises(ValueError, match="written twice"):
        out.save(plt.figure(), "tau0.5")


def test_heatmap_decimals_and_text_colour():
    assert plotting.fmt_cells(np.array([0.9987, 0.9991, 0.5]))[1] == 4
    assert plotting.fmt_cells(np.array([0.12, 0.5]))[1] == 2
    plt = plotting.plt()
    fig, ax = plt.subplots()
    plotting.heatmap(ax, fig, np.array([[0.2, 0.9]]), ["0", "1"], ["2"], "Greens", "CKA", "epoch", "C")
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours == {"0.20": "black", "0.90": "white"}
    plt.close(fig)


def test_log_axis_two_points_are_markers_only():
    plt = plotting.plt()
    fig, ax = plt.subplots()
    plotting.draw_curves(ax, [(np.array([0.0, 5.0]), np.array([1e-3, 1e-5]))], "x", "k", log=True)
    plotting.draw_curves(ax, [(np.array([0.0, 1.0, 2.0]), np.array([1e-3, 1e-4, 1e-5]))], "y", "k", log=True)
    assert [ln.get_linestyle() for ln in ax.get_lines()] == ["None", "-"]
    plt.close(fig)


def test_fig1_angles_against_the_raw_space():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=500)
    a, b = w0 + rng.normal(size=500), w0 + rng.normal(size=500)
    d = fig1_directions.weight_directions(w0, a, w0, b)
    u, v = a - w0, b - w0
    ref = math.degrees(math.acos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    assert math.isclose(d["angle"], ref, rel_tol=1e-9) and math.isclose(d["angle_raw"], ref, rel_tol=1e-12)
    Z = [rng.normal(size=(30, 8)) + s for s in (0.0, 1.0, 0.0, 1.2)]
    r = fig1_directions.representation_directions(*Z)
    # independent: covariance eigenvectors of the stacked rows, then per-model means
    X = np.concatenate(Z)
    w, V = np.linalg.eigh(np.cov((X - X.mean(0)).T, bias=True))
    P = (X - X.mean(0)) @ V[:, np.argsort(w)[::-1][:3]]
    m = [P[i * 30:(i + 1) * 30].mean(0) for i in range(4)]
    u, v = m[1] - m[0], m[3] - m[2]
    assert math.isclose(r["angle"], math.degrees(math.acos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))),
                        rel_tol=1e-9)


def test_cli_no_runs_exit_1_and_bad_only_exit_2(tmp_path, synth):
    (tmp_path / "none").mkdir()  # an existing directory without result directories: one line naming the configs
    r = subprocess.run([sys.executable, "-m", "figures", "--runs", str(tmp_path / "none")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "configs/small" in r.stderr
    r = subprocess.run([sys.executable, "-m", "figures", "--runs", str(tmp_path / "missing")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)  # a path that does not exist: bad input
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no such directory" in r.stderr
    r = subprocess.run([sys.executable, "-m", "figures", "--runs", str(synth / "sig"), "--only", "fig9"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "fig9" in r.stderr and "Traceback" not in r.stderr


def test_fig1_from_saved_weights(tmp_path):
    import torch

    from experiments.models import build_simclr_model
    from experiments.run_record import save_weights

    d = encoder_run(tmp_path / "runs" / "w", classes=3, image_size=8, n_per_class=8, test_per_class=4)
    models = {}
    for name in ("CL", "NSCL"):
        models[name] = build_simclr_model("mlp", in_channels=3, width=0.05, image_size=8, proj_hidden=8, proj_dim=6,
                                          num_classes=None, seed=0)
    save_weights(d / "weights_init.pt", models)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in models.values():
            for p in m.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    save_weights(d / "weights_final.pt", models)
    res = figures.regenerate([tmp_path / "runs"], tmp_path / "out", only=["fig1_directions"], **FAST)
    assert res["skipped"] == {}
    row = _rows(tmp_path / "out" / "fig1_directions.csv")[0]
    assert row["run"] == "w" and int(row["n_images"]) == 8
    assert math.isclose(float(row["weight_angle_deg"]), float(row["weight_angle_raw_deg"]), rel_tol=1e-6)
    assert 0.0 < float(row["representation_angle_deg"]) < 180.0
    s = res["summaries"]["fig1_directions__w"]
    assert any("angle" in a.get("title", "") for a in s["axes"]) and s["legend"]
