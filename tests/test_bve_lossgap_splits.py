"""bound_vs_empirical's loss gap on the train AND the test reference batch (blog Fig. 3): the columns
``lossgap_*`` (train) and ``lossgap_test_*`` (test) of theory.csv equal an independent loop over the batch's
anchors (paper Sec. 3, one anchor x_i per sample, float64), and the test batch is built from held-out images."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from experiments import bound_vs_empirical as bve
from experiments.config import parse_config

pytestmark = pytest.mark.usefixtures("one_thread")

TAU = 0.5
ARGS = ["--arch", "mlp", "--width", "0.05", "--proj-hidden", "8", "--proj-dim", "6", "--image-size", "8",
        "--classes", "3", "--n-per-class", "16", "--test-per-class", "4", "--ref-train", "12", "--ref-test", "9",
        "--ref-batch", "6", "--batch-size", "16", "--delta", "0.5", "--epochs", "1", "--theory-evals", "2",
        "--g-pairs", "2", "--lp-iters", "3", "--losses", "DCL", "NSCL", "--tau", str(TAU), "--anchors", "first",
        "--quiet", "--no-figures", "--threads", "1"]
KEYS = ("loss_kind", "loss_nscl", "gap")


def _loop_losses(z: torch.Tensor, labels: torch.Tensor, tau: float) -> tuple[float, float]:
    """(L^DCL, L^NSCL) of a two-view batch z = [z1; z2] (2R, p), anchors z1 only, by explicit loops.

    Anchor i: positive z2[i]; DCL denominator: every key of another sample; NSCL: every key of another class.
    """
    z = z.double()
    z = z / z.norm(dim=1, keepdim=True)
    R = labels.shape[0]
    ids = list(range(R)) * 2
    ys = [int(v) for v in labels] * 2
    dcl, nscl = [], []
    for i in range(R):
        s = [float(z[i] @ z[k]) / tau for k in range(2 * R)]
        pos = s[R + i]
        dcl.append(-pos + math.log(sum(math.exp(s[k]) for k in range(2 * R) if ids[k] != i)))
        nscl.append(-pos + math.log(sum(math.exp(s[k]) for k in range(2 * R) if ys[k] != ys[i])))
    return sum(dcl) / R, sum(nscl) / R


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bve_lg") / "run"
    assert bve.main(ARGS + ["--out", str(out)]) == 0
    with open(out / "theory.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # the same setup again, before any step: the models at initialisation, the same reference batches
    return rows, bve.prepare(parse_config(ARGS + ["--out", str(out)]))


def test_columns_train_and_test(run):
    rows, _ = run
    for r in rows:
        for tag in ("cl", "nscl"):
            for k in bve.LOSSGAP_KEYS:
                assert f"lossgap_{k}_{tag}model" in r and f"lossgap_test_{k}_{tag}model" in r
        assert float(r["lossgap_test_gap_clmodel"]) <= float(r["lossgap_test_bound_counts_clmodel"])
        # balanced-class bound log(1 + e^{2/tau}/(C - 1)) with C = 3 classes in both batches
        assert float(r["lossgap_test_bound_balanced_clmodel"]) == pytest.approx(math.log1p(math.exp(2 / TAU) / 2))
    # training moves the losses: the last row differs from the first
    assert float(rows[-1]["lossgap_test_loss_kind_clmodel"]) != float(rows[0]["lossgap_test_loss_kind_clmodel"])


def test_test_batch_is_held_out(run):
    _, s = run
    R = s.ref_labels_test.shape[0]
    assert R == 6 and s.ref_views_test.shape == s.ref_views.shape
    # the test batch's images are test images (none equal to any training image), with two different views
    test_imgs = s.test.images.reshape(len(s.test), -1).float()
    train_imgs = s.train.images.reshape(len(s.train), -1).float()
    assert torch.cdist(test_imgs, train_imgs).min() > 0
    assert not torch.equal(s.ref_views_test[:R], s.ref_views_test[R:])
    assert not torch.equal(s.ref_views_test, s.ref_views)


def test_step0_values_equal_a_loop(run):
    rows, s = run
    r0 = rows[0]
    assert int(r0["step"]) == 0
    loops = {}
    for prefix, views, labels in (("lossgap_", s.ref_views, s.ref_labels),
                                  ("lossgap_test_", s.ref_views_test, s.ref_labels_test)):
        for name, tag in (("DCL", "cl"), ("NSCL", "nscl")):
            _, z = s.trainer.embed(name, views)
            dcl, nscl = _loop_losses(z, labels, TAU)
            got = {k: float(r0[f"{prefix}{k}_{tag}model"]) for k in KEYS}
            assert got["loss_kind"] == pytest.approx(dcl, rel=1e-9), (prefix, name)
            assert got["loss_nscl"] == pytest.approx(nscl, rel=1e-9), (prefix, name)
            assert got["gap"] == pytest.approx(dcl - nscl, rel=1e-6, abs=1e-9), (prefix, name)
            loops[prefix, name] = dcl
    # the two batches are told apart: each recorded value is far (x100 the tolerance) from the other batch's loop
    for name in ("DCL", "NSCL"):
        tr, te = loops["lossgap_", name], loops["lossgap_test_", name]
        assert abs(tr - te) > 100 * 1e-9 * abs(tr)
