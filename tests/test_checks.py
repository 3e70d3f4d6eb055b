"""Per-step claim checks (simulate/claims.py, tracker.py, certificates.py, report.py): every LHS against an independent computation (loops, autograd)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from simulate.certificates import certificates, upper_std
from simulate.claims import CLAIMS, _eval, _ratio_le, reproduce_counterexample, step_claims
from simulate.report import compare_checks, format_verdict_table
from simulate.tracker import CheckSuite, ClaimTracker
from simulate.batches import Batch, batch_items
from simulate.config import SigmaConfig, theory_constants
from simulate.layout import build_layout
from simulate.run import run_sigma_descent
from simulate.step import compute_step
from theory.bounds import cka_ratio_measured, rsa_ratio_measured

TAU = 0.5
V = 2
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 0])  # 7 samples, 3 classes
M = 7 * V


def make_case(samples, a, b, symmetric=False, seed=0, scale=0.4):
    batch = Batch(torch.tensor(samples), torch.tensor(a), torch.tensor(b))
    rows, cols = batch_items(batch, V)
    lab = LABELS.repeat_interleave(V)
    geom = build_layout(rows, cols, lab[rows], lab[cols], M, symmetric)
    gen = torch.Generator().manual_seed(seed)
    S_cl = (torch.rand(M, M, dtype=torch.float64, generator=gen) * 2 - 1) * scale
    S_ns = S_cl + 0.05 * torch.randn(M, M, dtype=torch.float64, generator=gen)
    if symmetric:
        S_cl, S_ns = 0.5 * (S_cl + S_cl.T), 0.5 * (S_ns + S_ns.T)
    return batch, geom, S_cl, S_ns


def loop_anchor_loss(S, geom, s, kind):
    """ell_s of the paper (Sec. 3) by explicit loops over the 2B keys; None when NSCL has no negative."""
    B = geom.B
    r = int(geom.rows[s])
    ys = int(geom.anchor_labels[s])
    terms = []
    for k in range(2 * B):
        if k == s:
            continue  # the anchor itself
        if kind == "NSCL" and int(geom.key_labels[k]) == ys:
            continue
        terms.append(S[r, int(geom.cols[k])] / TAU)
    if not terms:
        return None
    return torch.log(sum(torch.exp(t) for t in terms)) - S[r, int(geom.cols[B + s])] / TAU


def dense_grad(S, geom, kind, anchors=None, symmetric=False):
    """Gradient of (1/B) sum_{s in anchors} ell_s wrt Sigma (ordered) or the symmetric parameter, returned as
    the full update matrix (symmetric: theta-gradient expanded to both triangles)."""
    B = geom.B
    anchors = range(B) if anchors is None else anchors
    if symmetric:
        theta = torch.triu(S).clone().requires_grad_(True)
        full = torch.triu(theta) + torch.triu(theta, 1).T
    else:
        theta = S.clone().requires_grad_(True)
        full = theta
    total = theta.sum() * 0.0
    for s in anchors:
        l = loop_anchor_loss(full, geom, s, kind)
        if l is not None:
            total = total + l / B
    (g,) = torch.autograd.grad(total, theta)
    if symmetric:
        g = torch.triu(g) + torch.triu(g, 1).T
    return g


CASES = {
    "distinct": ([0, 2, 4, 5], [0, 1, 0, 1], [1, 0, 1, 0], False),
    "dup_anchor": ([0, 0, 2, 3], [1, 1, 0, 0], [0, 0, 1, 1], False),  # same sample, same slot twice
    "dup_sample": ([1, 1, 4, 6], [0, 1, 0, 1], [1, 0, 1, 0], False),  # same sample, different slots
    "symmetric": ([0, 2, 4, 5], [0, 1, 0, 1], [1, 0, 1, 0], True),
    "sym_dup": ([0, 0, 2, 3], [1, 1, 0, 0], [0, 0, 1, 1], True),
}


def consts_for(B, T=10, delta=0.1, C=3):
    return theory_constants(C, B, T, delta, TAU)


@pytest.mark.parametrize("name", list(CASES))
def test_step_claims_against_autograd_and_loops(name):
    samples, a, b, sym = CASES[name]
    batch, geom, S_cl, S_ns = make_case(samples, a, b, sym)
    B = geom.B
    consts = dict(consts_for(B))
    consts["Delta"], consts["inject"] = 3.0, 3.0 / (TAU * math.sqrt(B))  # finite, to test the RHS values
    drift_t, drift_next, eta = 0.37, 0.41, 0.9
    st = compute_step(S_cl, S_ns, geom, TAU)
    claims, info = step_claims(st, consts, 3, drift_t, drift_next, eta)
    Lip = 1.0 / (2 * TAU * TAU * B)

    G_cl = dense_grad(S_cl, geom, "CL", symmetric=sym)
    G_ns = dense_grad(S_ns, geom, "NSCL", symmetric=sym)
    G_ns_at_cl = dense_grad(S_cl, geom, "NSCL", symmetric=sym)
    G_cl_at_ns = dense_grad(S_ns, geom, "CL", symmetric=sym)
    fro = lambda X: float(torch.linalg.matrix_norm(X))  # noqa: E731

    # L1 / L3: batch and per-anchor Sigma-space gradients
    per = {k: [dense_grad(S, geom, k, [s], sym) * B for s in range(B)] for k, S in (("CL", S_cl), ("NSCL", S_ns))}
    lhs = [fro(G_cl) ** 2, fro(G_ns) ** 2]
    rhs = [sum(fro(g) ** 2 for g in per[k]) / B**2 for k in ("CL", "NSCL")]
    np.testing.assert_allclose(claims["L1"].lhs.numpy(), lhs, rtol=1e-12)
    np.testing.assert_allclose(claims["L1"].rhs.numpy(), rhs, rtol=1e-12)
    np.testing.assert_allclose(claims["L3"].lhs.numpy(), [fro(g) for k in ("CL", "NSCL") for g in per[k]], rtol=1e-12)
    np.testing.assert_allclose(claims["L3_batch"].lhs.numpy(), np.sqrt(lhs), rtol=1e-12)
    assert float(claims["L3"].rhs[0]) == pytest.approx(math.sqrt(2) / TAU)
    assert float(claims["L3_batch"].rhs[0]) == pytest.approx(math.sqrt(2 / B) / TAU)

    # L2: Lipschitz at the actual pair, restricted to the entries each map reads
    def active(kind):
        A = torch.zeros(M, M, dtype=torch.bool)
        for s in range(B):
            for k in range(2 * B):
                if k == s or (kind == "NSCL" and int(geom.key_labels[k]) == int(geom.anchor_labels[s])):
                    continue
                A[int(geom.rows[s]), int(geom.cols[k])] = True
        return A | A.T if sym else A

    D = S_cl - S_ns
    assert float(claims["L2"].lhs[0]) == pytest.approx(fro(G_ns_at_cl - G_ns), rel=1e-12)
    assert float(claims["L2"].rhs[0]) == pytest.approx(Lip * fro(D * active("NSCL")), rel=1e-12)
    assert float(claims["L2_CL"].lhs[0]) == pytest.approx(fro(G_cl - G_cl_at_ns), rel=1e-12)
    assert float(claims["L2_CL"].rhs[0]) == pytest.approx(Lip * fro(D * active("CL")), rel=1e-12)

    # L2 Jacobian: tau^2 ||Hessian of ell_s wrt its Sigma row||_inf (autograd), CL at S^CL, NSCL at S^NSCL
    jac = []
    for kind, S in (("CL", S_cl), ("NSCL", S_ns)):
        for s in range(B):
            r = int(geom.rows[s])

            def f(row, S=S, r=r, s=s, kind=kind):
                S2 = S.clone()
                S2[r] = row
                l = loop_anchor_loss(S2, geom, s, kind)
                return l if l is not None else row.sum() * 0.0

            H = torch.autograd.functional.hessian(f, S[r].clone())
            jac.append(TAU**2 * float(H.abs().sum(1).max()))
    np.testing.assert_allclose(claims["L2_jac"].lhs.numpy(), jac, rtol=1e-10, atol=1e-15)

    # Lem. 4 / Cor. 3 / Lem. 6 at S^CL by explicit loops
    zr, frac, fex, l1, l2, alpha2 = [], [], [], [], [], []
    for s in range(B):
        r = int(geom.rows[s])
        ys = int(geom.anchor_labels[s])
        ks = [k for k in range(2 * B) if k != s]
        w = {k: math.exp(float(S_cl[r, int(geom.cols[k])]) / TAU) for k in ks}
        zp = sum(w[k] for k in ks if int(geom.key_labels[k]) == ys)
        zn = sum(w[k] for k in ks if int(geom.key_labels[k]) != ys)
        zr.append(zp / zn)
        n_same = sum(int(LABELS[samples[u]]) == int(LABELS[samples[s]]) for u in range(B))
        frac.append((B - n_same) / B)
        fex.append((B - n_same) / (B - 1))
        p = np.array([w[k] / (zp + zn) for k in ks])
        q = np.array([w[k] / zn if int(geom.key_labels[k]) != ys else 0.0 for k in ks])
        l1.append(np.abs(p - q).sum())
        l2.append(np.linalg.norm(p - q))
        alpha2.append(2 * zp / (zp + zn))
    np.testing.assert_allclose(claims["L4"].lhs.numpy(), zr, rtol=1e-12)
    np.testing.assert_allclose(claims["Cor3_mass"].lhs.numpy(), zr, rtol=1e-12)
    np.testing.assert_allclose(claims["Cor3"].lhs.numpy(), frac, rtol=0)
    np.testing.assert_allclose(claims["Cor3_excl"].lhs.numpy(), fex, rtol=0)
    np.testing.assert_allclose(claims["L6"].lhs.numpy(), l1, rtol=1e-12)
    np.testing.assert_allclose(claims["L6_l2"].lhs.numpy(), l2, rtol=1e-12)
    np.testing.assert_allclose(claims["L6_identity"].rhs.numpy(), alpha2, rtol=1e-12)
    np.testing.assert_allclose(claims["L6_identity"].ratio.numpy(), 1.0, rtol=1e-12)  # ||p - q||_1 = 2 alpha
    fb = 1 - 1 / 3 - consts["eps"]
    np.testing.assert_allclose(claims["Cor3"].ratio.numpy(), fb / np.array(frac), rtol=1e-14)

    # Lem. 8, term (A), Thm. 1 recurrence
    assert float(claims["L8"].lhs[0]) == pytest.approx(fro(G_cl - G_ns), rel=1e-12)
    assert float(claims["L8"].rhs[0]) == pytest.approx(consts["inject"] + Lip * drift_t, rel=1e-14)
    assert float(claims["L8_A"].lhs[0]) == pytest.approx(fro(G_cl - G_ns_at_cl), rel=1e-12)
    assert float(claims["Thm1_rec"].rhs[0]) == pytest.approx((1 + eta * Lip) * drift_t + eta * consts["inject"])
    assert info["gap_A"] == pytest.approx(fro(G_cl - G_ns_at_cl), rel=1e-12)

    # Lem. 1 equality holds exactly iff the anchor blocks are disjoint
    ratios = claims["L1"].ratio.numpy()
    if name in ("distinct", "dup_sample"):
        np.testing.assert_allclose(ratios, 1.0, rtol=1e-12)
    else:
        assert np.abs(ratios - 1.0).max() > 1e-3


def test_duplicate_anchor_violation_is_reported_and_reproducible(tmp_path):
    batch, geom, S_cl, S_ns = make_case(*CASES["dup_anchor"][:3])
    consts = consts_for(geom.B)
    suite = CheckSuite(tau=TAU, B=geom.B, C=3, T=10, delta=0.1, consts=consts, options={"sigma": "ordered"},
                       out_dir=tmp_path, symmetric=False)
    st = compute_step(S_cl, S_ns, geom, TAU)
    info = suite.evaluate_step(st, 0, 0.5, 0.3, 0.31, batch, LABELS.repeat_interleave(V))
    tr = suite.trackers["L1"]
    assert tr.violations >= 1 and tr.evaluated == 2 and tr.first_violation_step == 0
    assert (tmp_path / "counterexamples" / "L1_first.npz").is_file()
    doc = suite.to_json()
    assert doc["L1"]["holds"] is False and doc["L1"]["counterexample"]["worst"] == "counterexamples/L1_worst.npz"
    rep = reproduce_counterexample(tmp_path / "counterexamples" / "L1_first.npz")
    assert rep["L1"] == pytest.approx(float(info["row"]["ratio_L1"]), rel=1e-12)
    z = np.load(tmp_path / "counterexamples" / "L1_first.npz")
    assert list(z["samples"]) == [0, 0, 2, 3] and int(z["step"]) == 0
    assert "L1" in format_verdict_table(doc)


def test_ratio_conventions_and_premise_counting():
    r = _ratio_le(torch.tensor([0.0, 1.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, math.inf, 4.0]))
    assert r.tolist() == [0.0, math.inf, 0.0, 0.5]
    tr = ClaimTracker("L6")
    ev = _eval(torch.tensor([0.5, 3.0, 2.0]), 1.0, torch.tensor([True, False, True]))
    assert tr.record(5, ev, None, None) == 2.0
    assert (tr.evaluated, tr.premise_failed, tr.violations, tr.violations_outside) == (2, 1, 1, 1)
    assert tr.step_of_max == 5 and tr.max_ratio_outside == 3.0
    eq = ClaimTracker("L1")
    eq.record(0, _eval(torch.tensor([1.0, 1.0 + 1e-12]), torch.tensor([1.0, 1.0])), None, None)
    assert eq.violations == 0  # within EQ_RTOL
    eq.record(1, _eval(torch.tensor([0.9]), torch.tensor([1.0])), None, None)
    assert eq.violations == 1 and eq.min_ratio == pytest.approx(0.9)


def test_certificates_and_upper_std_match_theory_bounds():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(20, 20, dtype=torch.float64, generator=gen)
    S1 = X @ X.T / 20
    S2 = S1 + 0.05 * torch.randn(20, 20, dtype=torch.float64, generator=gen)  # non-symmetric difference
    iu = np.triu_indices(20, 1)
    assert upper_std(S1) == pytest.approx(float(np.std(S1.numpy()[iu])), rel=1e-13)
    Hc = S1 - S1.mean(1, keepdim=True) - S1.mean(0, keepdim=True) + S1.mean()
    ev = {"k_cl_fro": float(torch.linalg.matrix_norm(Hc)), "n_pairs": 190, "sigma_d": upper_std(S1),
          "bound_closed": 0.5, "drift_full": float(torch.linalg.matrix_norm(S2 - S1))}
    c = certificates(ev, False, S1, S2)
    assert c["rho_exact"] == pytest.approx(cka_ratio_measured(S1.numpy(), S2.numpy()).ratio, rel=1e-12)
    assert c["r_exact"] == pytest.approx(rsa_ratio_measured(S1.numpy(), S2.numpy()).ratio, rel=1e-12)
    rho = ev["drift_full"] / ev["k_cl_fro"]
    assert c["cka_lb_meas"] == pytest.approx((1 - rho) / (1 + rho))
    assert c["cka_lb_meas_sharp"] == pytest.approx(math.sqrt(1 - rho**2))
    # the certified order: exact >= measured-sharp >= measured-paper
    assert c["cka_lb_exact"] >= c["cka_lb_meas_sharp"] >= c["cka_lb_meas"]


def _tiny_run(tmp, **kw):
    base = dict(n=24, classes=4, batch_size=6, steps=30, eta=1.0, eval_every=10, lemma5_trials=50, plot=False)
    base.update(kw)
    return run_sigma_descent(SigmaConfig(**base), tmp, quiet=True)


def test_run_checks_json_and_compare(tmp_path):
    a = _tiny_run(tmp_path / "a", replacement=False)
    b = _tiny_run(tmp_path / "b", sigma="symmetric")
    doc = json.loads((tmp_path / "a" / "checks.json").read_text())
    for cid in ("L1", "L2", "L3", "L4", "L5", "L6", "L8", "Cor3", "Thm1", "Cor1", "Cor2", "Thm1_rec", "Cor1_sharp",
                "L7", "Thm2"):
        o = doc[cid]
        for key in ("evaluated", "max_ratio", "holds", "violations", "premise_failed", "options", "note",
                    "counterexample"):
            assert key in o, (cid, key)
    assert doc["L7"]["evaluated"] == 0 and doc["Thm2"]["evaluated"] == 0 and "not applicable" in doc["L7"]["note"]
    assert doc["L5"]["evaluated"] == 50
    # without replacement and ordered: disjoint anchor blocks, Lem. 1 holds; symmetric: it fails
    assert a.checks["L1"]["holds"] is True
    assert b.checks["L1"]["holds"] is False
    # deterministic certificates and the measured-injection recurrence always hold
    for res in (a, b):
        for cid in ("Cor1_meas", "Cor1_exact", "Cor2_meas", "Cor2_exact", "Thm1_gap", "L2_jac", "L6_identity"):
            assert res.checks[cid]["holds"] is True, cid
    table = compare_checks([tmp_path / "a", tmp_path / "b"])
    assert "no-replacement" in table and "sigma=symmetric" in table
    l1 = next(line for line in table.splitlines() if line.startswith("| L1 |"))
    assert "yes" in l1 and "NO" in l1
    with pytest.raises(ValueError, match="not found"):
        compare_checks([tmp_path / "missing"])
    assert set(CLAIMS) >= {"L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8", "Cor3", "Thm1", "Thm2", "Cor1", "Cor2"}


def test_lemma2_lipschitz_constant_fails_when_anchors_share_a_row():
    """Lem. 2 assumes a block-diagonal Hessian (one block per anchor). A duplicate draw (same sample, same view
    slot, possible with replacement) puts two anchors on the SAME Sigma row: that row's Hessian is the sum of
    two J(p)/(tau^2 B) blocks, so the Lipschitz constant 1/(2 tau^2 B) can be exceeded by a factor up to 2."""
    batch, geom, S_cl, S_ns = make_case([0, 0, 2, 3], [1, 1, 0, 0], [0, 0, 1, 1])
    r = int(geom.rows[0])
    assert int(geom.rows[1]) == r
    k1, k2 = 2 * V + 0, 3 * V + 0  # items (2, a) and (3, a): other-class keys of both anchors
    S_ns = S_ns.clone()
    S_ns[r] = -5.0
    S_ns[r, k1] = S_ns[r, k2] = 5.0  # NSCL softmax of row r ~ (1/2, 1/2) on k1, k2: ||J||_2 = 1/2
    eps = 1e-5
    S_cl = S_ns.clone()
    S_cl[r, k1] += eps
    S_cl[r, k2] -= eps
    st = compute_step(S_cl, S_ns, geom, TAU)
    claims, _ = step_claims(st, consts_for(geom.B), 3, eps * math.sqrt(2), 0.0, 1.0)
    assert float(claims["L2"].ratio[0]) == pytest.approx(2.0, rel=1e-3)  # twice the claimed constant
    # the same construction without the duplicate (distinct anchor rows) stays within the lemma
    batch2, geom2, _, _ = make_case([0, 1, 2, 3], [1, 1, 0, 0], [0, 0, 1, 1])
    st2 = compute_step(S_cl, S_ns, geom2, TAU)
    claims2, _ = step_claims(st2, consts_for(geom2.B), 3, eps * math.sqrt(2), 0.0, 1.0)
    assert float(claims2["L2"].ratio[0]) == pytest.approx(1.0, rel=1e-3)


def test_lemma3_nscl_display_omits_positive_coordinate():
    """Lem. 3's NSCL case writes the gradient as q/tau on negatives; the loss -s_ii'/tau + lse_neg also has
    d/ds_ii' = -1/tau, so ||grad||^2 = (1 + ||q||^2)/tau^2 (still <= 2/tau^2)."""
    batch, geom, S_cl, S_ns = make_case(*CASES["distinct"][:3])
    st = compute_step(S_cl, S_ns, geom, TAU)
    claims, _ = step_claims(st, consts_for(geom.B), 3, 0.1, 0.1, 1.0)
    ev = claims["L3_nscl_display"]
    for s in range(geom.B):
        P = S_ns.clone().requires_grad_(True)
        loop_anchor_loss(P, geom, s, "NSCL").backward()
        full = float((P.grad ** 2).sum())
        q2 = full - 1.0 / TAU**2  # the positive coordinate carries exactly -1/tau
        assert float(ev.lhs[s]) == pytest.approx(full, rel=1e-12)
        assert float(ev.rhs[s]) == pytest.approx(q2, rel=1e-10)
        assert full <= 2.0 / TAU**2
    assert float(ev.ratio.min()) > 2.0  # the display is off by the 1/tau^2 term


@pytest.mark.parametrize("name", ["dup_anchor", "dup_sample", "sym_dup"])
def test_mass_split_fallback_gives_the_same_claims(name, monkeypatch):
    """Class masses from the CL softmax (no extra exp pass) vs the direct logsumexp path used when a class mass
    underflows: the same claims."""
    import theory.losses.derivatives as L  # the module that reads _SPLIT_TINY

    samples, a, b, sym = CASES[name]
    batch, geom, S_cl, S_ns = make_case(samples, a, b, sym)
    consts = consts_for(geom.B)
    st = compute_step(S_cl, S_ns, geom, TAU)
    fast, _ = step_claims(st, consts, 3, 0.3, 0.31, 0.7)
    monkeypatch.setattr(L, "_SPLIT_TINY", math.inf)  # every split "underflows": the direct path
    assert L.class_split_from_softmax(st.p_cl, L.softmax_lse(st.sm_cl), None, None, 1 - geom.other_label_mask,
                                      geom.other_label_mask) is None
    slow, _ = step_claims(compute_step(S_cl, S_ns, geom, TAU), consts, 3, 0.3, 0.31, 0.7)
    for cid in fast:
        torch.testing.assert_close(fast[cid].lhs, slow[cid].lhs, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(fast[cid].ratio, slow[cid].ratio, rtol=1e-12, atol=1e-15)
        assert torch.equal(fast[cid].premise, slow[cid].premise)


def test_jacobian_norm_identity_used_by_L2_jac():
    """max_r 2 pi_r (1 - pi_r) = 2 m (1 - m) with m = max_r pi_r for probability vectors (used for L2_jac; equal to
    rounding: where m rounds to 1 the others are < 1e-16)."""
    from theory.losses import jacobian_inf_norm

    g = torch.Generator().manual_seed(0)
    for K in (2, 3, 10, 100):
        for sharp in (0.1, 1.0, 10.0):
            p = torch.softmax(torch.randn(50, K, generator=g, dtype=torch.float64) * sharp, dim=1)
            torch.testing.assert_close(jacobian_inf_norm(p), jacobian_inf_norm(p.amax(1)[:, None]), rtol=1e-13, atol=1e-15)
