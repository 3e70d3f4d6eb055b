"""Tests for simulate/adversarial/ (adversarial search over bounded similarities, Lemmas 2, 3, 6, 8)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from simulate.adversarial import (
    BatchSpec,
    build_problem,
    claim_objectives,
    delta_from_eps,
    evaluate_objective,
    event_eps,
    make_batch,
    main,
    maximize_box,
    reproduce,
    run_adversarial,
    search_claim,
)
from theory.constants import delta_c_delta, eps_b_delta
from theory.losses import jacobian_inf_norm

D = torch.float64


@pytest.mark.parametrize("comp", ["distinct", "duplicates", "dup-flip", "random"])
@pytest.mark.parametrize("sigma,sym_grad", [("ordered", "sum"), ("symmetric", "sum"), ("symmetric", "mean")])
@pytest.mark.parametrize("diag", ["free", "fixed"])
def test_step_and_hessian_match_autograd(comp, sigma, sym_grad, diag):
    batch = make_batch(comp, 4, 2, np.random.default_rng(3))
    prob = build_problem(batch, sigma=sigma, sym_grad=sym_grad, diag=diag)
    x = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, prob.d))
    for kind in ("CL", "NSCL"):
        torch.testing.assert_close(prob.step(kind, x, 0.3), prob.step_autograd(kind, x, 0.3), rtol=1e-12, atol=1e-14)
        H = torch.autograd.functional.hessian(lambda z: prob.loss(kind, z, 0.3), x)
        torch.testing.assert_close(prob.hessian(kind, x, 0.3), H, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("comp", ["distinct", "duplicates", "dup-flip", "random"])
@pytest.mark.parametrize("sigma", ["ordered", "symmetric"])
def test_step_equals_engine_sigma_gradient(comp, sigma):
    """Same conventions as simulate/step.py: G on the touched block (duplicates summed, G + G^T - Diag G)."""
    from simulate.layout import build_layout

    batch = make_batch(comp, 4, 2, np.random.default_rng(5))
    prob = build_problem(batch, sigma=sigma)  # diag="free", ids="position": the engine's conventions
    x = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, prob.d))
    j = torch.tensor(batch.sample_ids)
    rows = 2 * j + torch.tensor(batch.anchor_slots)
    cols = torch.cat([rows, 2 * j + torch.tensor(batch.pos_slots)])
    lab = torch.tensor(batch.labels)
    geom = build_layout(rows, cols, lab, torch.cat([lab, lab]), M=2 * (max(batch.sample_ids) + 1),
                          symmetric=sigma == "symmetric")  # fmt: skip
    sim = prob.sim(x)
    from theory.losses import contrastive_grad

    for kind, (pos, den) in (("CL", (geom.pos_cl, geom.den_cl)), ("NSCL", (geom.pos_ns, geom.den_ns))):
        blk = geom.sigma_grad(contrastive_grad(sim, pos, den, 0.4))
        g = prob.step(kind, x, 0.4)
        r_of = {int(v): i for i, v in enumerate(geom.block_rows)}
        c_of = {int(v): i for i, v in enumerate(geom.unique_cols)}
        expect = torch.zeros_like(blk)
        for c, (i, k) in enumerate(prob.coord_items):
            expect[r_of[i], c_of[k]] = g[c]
            if sigma == "symmetric":
                expect[r_of[k], c_of[i]] = g[c]
        torch.testing.assert_close(blk, expect, rtol=1e-12, atol=1e-15)
        # Frobenius norm of the matrix = mat_norm of the variables
        assert float(prob.mat_norm(g)) == pytest.approx(float(torch.linalg.matrix_norm(blk)), rel=1e-12)


def test_optimiser_finds_jacobian_inf_norm_max_half():
    # ||J||_inf = max_r 2 p_r (1 - p_r) <= 1/2, attained at p_r = 1/2 (reachable: e^{2/tau} >= K - 1)
    tau, K = 0.5, 5
    v, z = maximize_box(lambda s: jacobian_inf_norm(torch.softmax(s / tau, dim=0)), K, np.random.default_rng(0), 4)
    assert v == pytest.approx(0.5, abs=1e-9)
    p = torch.softmax(torch.as_tensor(z) / tau, dim=0)
    assert float(p.max()) == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("tau,restarts", [(0.2, 4), (0.5, 4), (1.0, 8)])
def test_lemma3_anchor_max_is_the_analytic_vertex_value(tau, restarts):
    # distinct batch, one anchor row of K = 2B - 1 = 7 keys, one positive. On a vertex with the positive at s+
    # and m other keys at +1: ||p - e||^2 = (1 - p+)^2 + m (e^{1/tau}/Z)^2 + (K-1-m) (e^{-1/tau}/Z)^2.
    # The maximum over vertices (checked by enumerating all 2^7) is the analytic value the optimiser must reach
    # (m = 1 for tau <= 1/2, m = 2 at tau = 1: a local-maximum trap that needs restarts).
    batch = make_batch("distinct", 4, 2)
    prob = build_problem(batch)
    obj = next(o for o in claim_objectives("L3", prob) if o.variant == "anchor" and o.kind == "CL")
    v, x, _ = search_claim(obj, prob, tau, None, np.random.default_rng(0), restarts=restarts)
    K = 7
    best = 0.0
    for signs in itertools.product([-1.0, 1.0], repeat=K):  # key 0 = the positive
        p = torch.softmax(torch.tensor(signs, dtype=D) / tau, dim=0)
        e = torch.zeros(K, dtype=D)
        e[0] = 1
        best = max(best, float(torch.linalg.vector_norm(p - e)) / math.sqrt(2))
    a, b = math.exp(1 / tau), math.exp(-1 / tau)
    closed = []
    for sp in (a, b):
        for m in range(K):
            Z = sp + m * a + (K - 1 - m) * b
            closed.append(math.sqrt(((1 - sp / Z) ** 2 + m * (a / Z) ** 2 + (K - 1 - m) * (b / Z) ** 2) / 2))
    assert best == pytest.approx(max(closed), rel=1e-12)
    assert v == pytest.approx(best, rel=1e-9)
    assert v <= 1.0


def test_lemma2_ordered_distinct_is_tight_at_small_tau_and_holds():
    batch = make_batch("distinct", 4, 2)
    prob = build_problem(batch, sigma="ordered")
    obj = next(o for o in claim_objectives("L2", prob) if o.variant == "hessian" and o.kind == "CL")
    v, x, _ = search_claim(obj, prob, 0.1, None, np.random.default_rng(1), restarts=2, maxiter=100)
    assert 0.999 < v <= 1.0 + 1e-12


def test_lemma2_counterexample_duplicate_anchor_rows():
    # two identical anchor rows share their Sigma entries: the batch Hessian is 2 J/(tau^2 B) on them -> ratio 2
    batch = BatchSpec((0, 0, 1, 1), (0, 0, 1, 1), (0, 0, 0, 0), (1, 1, 1, 1))
    prob = build_problem(batch, sigma="ordered")
    obj = next(o for o in claim_objectives("L2", prob) if o.variant == "hessian" and o.kind == "NSCL")
    v, x, _ = search_claim(obj, prob, 0.1, None, np.random.default_rng(2), restarts=2, maxiter=100)
    assert v == pytest.approx(2.0, abs=1e-6)


def test_lemma6_l1_equals_two_alpha_and_is_below_delta():
    batch = make_batch("skewed", 6, 3)
    prob = build_problem(batch)
    e = event_eps(batch, 3)
    assert e == pytest.approx(3 / 6 - 1 / 3)
    Delta = delta_from_eps(3, e, 0.5)
    objs = {o.variant: o for o in claim_objectives("L6", prob)}
    x = np.random.default_rng(0).uniform(-1, 1, prob.d)
    r1, l1, rhs, a = evaluate_objective(objs["l1"], prob, x, None, 0.5, Delta)
    rm, two_alpha, two_r, am = evaluate_objective(objs["mass"], prob, x, None, 0.5, Delta)
    # ||p - q||_1 = 2 alpha for every anchor (Lemma 6's identity)
    with torch.no_grad():
        l1_all = objs["l1"].fn(prob, torch.as_tensor(x), None, 0.5, Delta)[1]
        ta_all = objs["mass"].fn(prob, torch.as_tensor(x), None, 0.5, Delta)[1]
    torch.testing.assert_close(l1_all, ta_all, rtol=1e-12, atol=1e-15)
    v, _, _ = search_claim(objs["l1"], prob, 0.5, Delta, np.random.default_rng(0), restarts=2)
    assert 0 < v < 1


def test_delta_from_eps_matches_constants():
    eps = eps_b_delta(64, 100, 0.05)
    assert delta_from_eps(10, eps, 0.5) == pytest.approx(delta_c_delta(10, 64, 100, 0.05, 0.5), rel=1e-14)
    with pytest.raises(ValueError):
        delta_from_eps(2, 0.5, 1.0)


def test_saved_maximisers_reproduce_ratios(tmp_path):
    res = run_adversarial(claims=("L2", "L3", "L8"), B=4, C=2, taus=(0.5,), compositions=("duplicates",),
                          sigmas=("ordered", "symmetric"), restarts=1, seed=0, out_dir=tmp_path, quiet=True)  # fmt: skip
    doc = json.loads((tmp_path / "adversarial.json").read_text())
    arrays = dict(np.load(tmp_path / "adversarial.npz"))
    assert len(doc["records"]) == len(res) > 0
    for rec in doc["records"]:
        r, lhs, rhs, anchor = reproduce(rec, arrays)
        assert r == pytest.approx(rec["ratio"], rel=1e-12, abs=1e-15)
        assert anchor == rec["anchor"]
    # a found counterexample is reported as such (ratio > 1, holds False), never clipped
    l2 = [s for s in doc["summary"] if s["claim"].startswith("L2") and not s["claim"].endswith("_mult")]
    assert all(s["max_ratio"] > 1.5 and not s["holds"] for s in l2)


def test_batch_outside_event_is_skipped_for_l6_l8():
    # skewed B=6, C=3: class 0 has 3 draws, needs eps >= 1/2 - 1/3
    res = run_adversarial(claims=("L6", "L8"), B=6, C=3, taus=(0.5,), compositions=("skewed",), sigmas=("ordered",),
                          eps=0.05, restarts=1, quiet=True)  # fmt: skip
    assert [r.variant for r in res] == ["skipped", "skipped"] and "outside" in res[0].note
    res = run_adversarial(claims=("L6",), B=4, C=2, taus=(0.5,), compositions=("distinct",), sigmas=("ordered",),
                          eps=0.6, restarts=1, quiet=True)  # fmt: skip
    assert res[0].variant == "skipped" and "undefined" in res[0].note


def test_cli(capsys, tmp_path):
    assert main(["--claims", "L3", "--compositions", "distinct", "--sigma", "ordered", "--tau", "0.5",
                 "--restarts", "1", "--quiet", "--out", str(tmp_path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "L3.anchor" in out and "L3.batch" in out and "holds" in out
    assert (tmp_path / "adversarial.json").is_file() and (tmp_path / "adversarial.npz").is_file()
    assert main(["--claims", "L9", "--quiet"]) == 2  # a bad value: exit status 2, one line (runio.cli.fail)
    assert main(["--tau", "-1", "--quiet"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
