"""Tests for theory/losses/ (theory.losses) against slow float64 python-loop references written from the paper's formulas
(Sec. 3 CL / NSCL, App. D.1 Lemmas 2, 3, 4, 6), DCL (Yeh et al.), SupCon L_out (Khosla et al.) and autograd."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from theory.losses import (
    LOSS_KINDS,
    class_split_from_softmax,
    contrastive_grad,
    contrastive_grad_from_softmax,
    contrastive_grad_prepared,
    contrastive_softmax_prepared,
    prepare_masks,
    softmax_lse,
    contrastive_hessian,
    contrastive_loss,
    contrastive_masks,
    jacobian_inf_norm,
    masked_contrastive_loss,
    reweighting_gap,
    simclr_sim,
    softmax_mass_split,
)

TAUS = [0.1, 0.5, 1.0]


# ---------------------------------------------------------------------------------------------------------
# slow references (python floats, loops; formulas as printed in the papers)


def _cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def reference_losses(z1, z2, labels, tau, kind, anchors):
    """Per-anchor losses by loops. Views: v = (sample j, view 0 = x_j or 1 = x'_j).

    CL   (Sec. 3):  -log exp(s(x_i,x'_i)/t) / sum_j [1{j!=i} exp(s(x_i,x_j)/t) + exp(s(x_i,x'_j)/t)]
    NSCL (Sec. 3):  -log exp(s(x_i,x'_i)/t) / sum_{j: y_j != y_i} [exp(s(x_i,x_j)/t) + exp(s(x_i,x'_j)/t)]
    DCL  (Yeh):     -log exp(s(x_i,x'_i)/t) / sum_{j != i} [exp(s(x_i,x_j)/t) + exp(s(x_i,x'_j)/t)]
    SCL  (L_out):   -1/|P| sum_{p in P} log exp(s(a,p)/t) / sum_{k != a} exp(s(a,k)/t),  P = same label, != a
    For anchors="both" the x'_i anchors are handled symmetrically (view 1 plays the role of view 0).
    Returns a list with None for an anchor whose loss is undefined (empty denominator or no positive).
    """
    B = len(z1)
    emb = {(j, 0): z1[j] for j in range(B)} | {(j, 1): z2[j] for j in range(B)}
    anchor_list = [(i, 0) for i in range(B)] + ([(i, 1) for i in range(B)] if anchors == "both" else [])
    out = []
    for i, va in anchor_list:
        za = emb[(i, va)]
        e = {key: math.exp(_cos(za, zk) / tau) for key, zk in emb.items()}
        if kind == "SCL":
            if labels is None:
                raise AssertionError
            den = sum(e[(j, v)] for j in range(B) for v in (0, 1) if (j, v) != (i, va))
            P = [(j, v) for j in range(B) for v in (0, 1) if (j, v) != (i, va) and labels[j] == labels[i]]
            if not P:
                out.append(None)
                continue
            out.append(-sum(math.log(e[k] / den) for k in P) / len(P))
            continue
        num = e[(i, 1 - va)]
        if kind == "CL":
            den = sum((e[(j, va)] if j != i else 0.0) + e[(j, 1 - va)] for j in range(B))
        elif kind == "DCL":
            den = sum(e[(j, 0)] + e[(j, 1)] for j in range(B) if j != i)
        else:  # NSCL
            den = sum(e[(j, 0)] + e[(j, 1)] for j in range(B) if labels[j] != labels[i])
        out.append(None if den == 0.0 else -math.log(num / den))
    return out


def _batch(B: int, d: int, C: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(B, d, generator=g, dtype=dtype)
    z2 = z1 + 0.7 * torch.randn(B, d, generator=g, dtype=dtype)
    labels = torch.randint(0, C, (B,), generator=g)
    return z1, z2, labels


def _random_problem(A: int, K: int, seed: int, p_pos: float = 0.15, p_den: float = 0.7):
    """Random sim in [-1, 1] with random masks; forces a few invalid anchors."""
    g = torch.Generator().manual_seed(seed)
    sim = torch.rand(A, K, generator=g, dtype=torch.float64) * 2 - 1
    pos = torch.rand(A, K, generator=g) < p_pos
    den = torch.rand(A, K, generator=g) < p_den
    pos[0] = False  # anchor 0: no positive
    if A > 1:
        den[1] = False  # anchor 1: empty denominator
    pos[2:, 0] = True  # every other anchor has a positive
    den[2:, 1] = True  # ... and a non-empty denominator
    return sim, pos, den


# ---------------------------------------------------------------------------------------------------------
# losses against the loop references


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("B,C", [(3, 2), (6, 3), (10, 4)])
@pytest.mark.parametrize("anchors", ["first", "both"])
def test_loss_matches_loop_reference(kind, tau, B, C, anchors):
    z1, z2, labels = _batch(B, 5, C, seed=100 * B + C)
    labels[0], labels[1] = 0, 1  # at least two classes: NSCL has a valid anchor
    ref = reference_losses(z1.tolist(), z2.tolist(), labels.tolist(), tau, kind, anchors)
    batch = simclr_sim(z1, z2, labels, anchors=anchors)
    per = batch.loss(kind, tau, reduction="none")
    mean, details = contrastive_loss(**batch._asdict(), kind=kind, tau=tau, return_details=True)
    assert per.shape == (len(ref),) and per.dtype == torch.float64
    ref_valid = torch.tensor([r is not None for r in ref])
    assert torch.equal(details.valid, ref_valid)
    ref_vals = torch.tensor([0.0 if r is None else r for r in ref], dtype=torch.float64)
    torch.testing.assert_close(per, ref_vals, rtol=1e-12, atol=1e-12)
    valid_refs = [r for r in ref if r is not None]
    assert mean.item() == pytest.approx(sum(valid_refs) / len(valid_refs), rel=1e-12)
    batch_red = batch.loss(kind, tau, reduction="batch")
    assert batch_red.item() == pytest.approx(sum(valid_refs) / len(ref), rel=1e-12)
    assert batch.loss(kind, tau, reduction="sum").item() == pytest.approx(sum(valid_refs), rel=1e-12)


def test_masks_by_hand():
    # Sigma-space style batch with --views identity: keys are 4 items, anchors are items 0,1,2 (self excluded)
    anchor_ids = torch.tensor([0, 1, 2])
    key_ids = torch.tensor([0, 1, 2, 0])  # key 3 is a second view of item 0
    anchor_labels = torch.tensor([5, 5, 7])
    key_labels = torch.tensor([5, 5, 7, 5])
    self_mask = torch.eye(3, 4, dtype=torch.bool)
    T, Fa = True, False
    expect = {
        "CL": ([[Fa, Fa, Fa, T], [Fa] * 4, [Fa] * 4], [[Fa, T, T, T], [T, Fa, T, T], [T, T, Fa, T]]),
        "DCL": ([[Fa, Fa, Fa, T], [Fa] * 4, [Fa] * 4], [[Fa, T, T, Fa], [T, Fa, T, T], [T, T, Fa, T]]),
        "NSCL": ([[Fa, Fa, Fa, T], [Fa] * 4, [Fa] * 4], [[Fa, Fa, T, Fa], [Fa, Fa, T, Fa], [T, T, Fa, T]]),
        "SCL": ([[Fa, T, Fa, T], [T, Fa, Fa, T], [Fa] * 4], [[Fa, T, T, T], [T, Fa, T, T], [T, T, Fa, T]]),
    }
    for kind, (pos_e, den_e) in expect.items():
        pos, den = contrastive_masks(kind, anchor_ids, key_ids, anchor_labels, key_labels, self_mask)
        assert pos.tolist() == pos_e, kind
        assert den.tolist() == den_e, kind


# ---------------------------------------------------------------------------------------------------------
# NT-Xent sanity: CL == cross-entropy over logits with the self entry masked


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("B", [2, 7, 16])
def test_cl_equals_nt_xent_cross_entropy(tau, B):
    z1, z2, _ = _batch(B, 8, 3, seed=B)
    zz = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (zz @ zz.T) / tau
    logits = logits.masked_fill(torch.eye(2 * B, dtype=torch.bool), float("-inf"))
    target = (torch.arange(2 * B) + B) % (2 * B)
    ce_both = F.cross_entropy(logits, target)
    ce_first = F.cross_entropy(logits[:B], target[:B])
    assert simclr_sim(z1, z2).loss("CL", tau).item() == pytest.approx(ce_both.item(), rel=1e-12)
    assert simclr_sim(z1, z2, anchors="first").loss("CL", tau).item() == pytest.approx(ce_first.item(), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------
# derivatives (Lemmas 2-3)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("A,K", [(4, 5), (9, 17), (16, 31)])
def test_grad_matches_autograd(tau, A, K):
    sim, pos, den = _random_problem(A, K, seed=A * K)
    s = sim.clone().requires_grad_(True)
    res = masked_contrastive_loss(s, pos, den, tau)
    (g_auto,) = torch.autograd.grad(res.loss.sum(), s)
    sim_before = sim.clone()
    g = contrastive_grad(sim, pos, den, tau)
    assert torch.equal(sim, sim_before)  # the in-place fast path never writes into the caller's tensor
    torch.testing.assert_close(g, g_auto, rtol=1e-12, atol=1e-13)
    assert torch.isfinite(g_auto).all() and torch.isfinite(res.loss).all() and torch.isfinite(res.p).all()
    assert not res.valid[0] and not res.valid[1]
    assert (g_auto[:2] == 0).all() and (g[:2] == 0).all() and (res.loss[:2] == 0).all()
    # rows of valid anchors sum to zero: sum_k p_k = 1 = sum_k 1{k in P}/|P|
    torch.testing.assert_close(g.sum(dim=1), torch.zeros(A, dtype=torch.float64), rtol=0, atol=1e-13)
    n_valid = int(res.valid.sum())
    torch.testing.assert_close(contrastive_grad(sim, pos, den, tau, reduction="mean"), g_auto / n_valid)
    torch.testing.assert_close(contrastive_grad(sim, pos, den, tau, reduction="batch"), g_auto / A)
    torch.testing.assert_close(contrastive_grad(sim, pos, den, tau, reduction="sum"), g_auto)


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("tau", TAUS)
def test_grad_matches_autograd_through_simclr(kind, tau):
    z1, z2, labels = _batch(8, 6, 3, seed=3)
    labels[0], labels[1] = 0, 1
    b = simclr_sim(z1, z2, labels)
    s = b.sim.clone().requires_grad_(True)
    loss = contrastive_loss(s, kind, tau, b.anchor_ids, b.key_ids, b.anchor_labels, b.key_labels, b.self_mask)
    (g_auto,) = torch.autograd.grad(loss, s)
    pos, den = b.masks(kind)
    torch.testing.assert_close(contrastive_grad(b.sim, pos, den, tau, reduction="mean"), g_auto, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("A,K", [(5, 6), (8, 13)])
def test_hessian_matches_autograd(tau, A, K):
    sim, pos, den = _random_problem(A, K, seed=7 * A + K)
    p_all = masked_contrastive_loss(sim, pos, den, tau).p
    for a in range(A):
        def loss_a(row, a=a):
            s = torch.cat([sim[:a], row[None], sim[a + 1 :]])
            return masked_contrastive_loss(s, pos, den, tau).loss[a]

        H_auto = torch.autograd.functional.hessian(loss_a, sim[a].clone())
        H = contrastive_hessian(sim, den, tau, a, pos_mask=pos)
        torch.testing.assert_close(H, H_auto, rtol=1e-11, atol=1e-12)
        # (Diag p - p p^T)/tau^2, zero outside D_a
        p = p_all[a]
        torch.testing.assert_close(H, (torch.diag(p) - torch.outer(p, p)) / tau**2, rtol=1e-12, atol=1e-14)
        off = ~den[a]
        assert (H[off] == 0).all() and (H[:, off] == 0).all()
        # Lemma 2: ||J||_2 <= ||J||_inf = max_r 2 p_r (1 - p_r) <= 1/2
        J = H * tau**2
        spec = torch.linalg.matrix_norm(J, ord=2)
        inf = jacobian_inf_norm(p)
        assert inf.item() == pytest.approx(J.abs().sum(dim=1).max().item(), rel=1e-12, abs=1e-15)
        assert spec.item() <= inf.item() + 1e-14
        assert inf.item() <= 0.5
    # Hessian without pos_mask: depends only on D_a; zero for the empty-denominator anchor 1
    torch.testing.assert_close(contrastive_hessian(sim, den, tau, 2), contrastive_hessian(sim, den, tau, 2, pos))
    assert (contrastive_hessian(sim, den, tau, 1) == 0).all()
    assert (contrastive_hessian(sim, den, tau, 0, pos_mask=pos) == 0).all()  # no positive -> invalid


def test_jacobian_inf_norm_extremes():
    assert jacobian_inf_norm(torch.tensor([0.5, 0.5])).item() == 0.5
    assert jacobian_inf_norm(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    p = torch.softmax(torch.randn(6, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=1)
    out = jacobian_inf_norm(p)
    assert out.shape == (6,)
    torch.testing.assert_close(out, (2 * p * (1 - p)).max(dim=1).values)


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("B", [4, 16])
def test_lemma3_gradient_norm_bounds(kind, tau, B):
    z1, z2, labels = _batch(B, 3, 2, seed=B + 11)
    labels[0], labels[1] = 0, 1
    b = simclr_sim(z1, z2, labels, anchors="first")  # one anchor per sample, A = B (paper's batch loss)
    pos, den = b.masks(kind)
    g = contrastive_grad(b.sim, pos, den, tau)
    norms = torch.linalg.vector_norm(g, dim=1)
    assert (norms <= math.sqrt(2) / tau * (1 + 1e-12)).all()  # Eq. 12
    G = contrastive_grad(b.sim, pos, den, tau, reduction="batch")
    assert torch.linalg.matrix_norm(G).item() <= math.sqrt(2 / B) / tau * (1 + 1e-12)  # Eq. 13
    # Lemma 1 / Eq. 10: anchors occupy disjoint rows, so ||G||_F^2 = (1/B^2) sum_a ||g_a||^2
    assert torch.linalg.matrix_norm(G).item() ** 2 == pytest.approx((norms**2).sum().item() / B**2, rel=1e-12)
    res = masked_contrastive_loss(b.sim, pos, den, tau)
    ppos = (res.p * pos).sum(dim=1)  # mass on the positive (0 when it is not in D_a)
    if kind == "CL":
        # Eq. 12 exactly: ||g||^2 = [(1 - p_i')^2 + sum_{k != i'} p_k^2] / tau^2
        expect = ((1 - ppos) ** 2 + (res.p**2).sum(dim=1) - ppos**2) / tau**2
        torch.testing.assert_close(norms**2, expect, rtol=1e-12, atol=0)
    if kind in ("NSCL", "DCL"):
        # positive not in D_a: g = q/tau on D_a and -1/tau on the positive, ||g||^2 = (1 + ||q||^2)/tau^2
        # (App. D.1 Lemma 3 case 2 writes "0 on D_pos"; the -1/tau entry is there, the sqrt(2)/tau bound holds)
        v = res.valid
        expect = (1 + (res.p**2).sum(dim=1)) / tau**2
        torch.testing.assert_close(norms[v] ** 2, expect[v], rtol=1e-12, atol=0)
        assert (g[pos] == -1 / tau).all()


# ---------------------------------------------------------------------------------------------------------
# Lemmas 4 and 6: masses and reweighting gap


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("B,C", [(6, 2), (12, 3), (24, 5)])
def test_lemma6_l1_gap_equals_two_alpha(tau, B, C):
    z1, z2, labels = _batch(B, 4, C, seed=B * C)
    labels[0], labels[1] = 0, 1
    b = simclr_sim(z1, z2, labels, anchors="first")
    p_cl = masked_contrastive_loss(b.sim, *b.masks("CL"), tau).p
    q = masked_contrastive_loss(b.sim, *b.masks("NSCL"), tau)
    _, den_cl = b.masks("CL")
    same = b.anchor_labels[:, None] == b.key_labels[None, :]
    split = softmax_mass_split(b.sim, den_cl, same, tau)
    gap = reweighting_gap(p_cl, q.p)
    v = q.valid
    assert v.any()
    torch.testing.assert_close(gap.l1[v], 2 * split.alpha[v], rtol=1e-12, atol=1e-15)  # ||p - q||_1 = 2 alpha
    assert (gap.l2 <= gap.l1 + 1e-15).all()
    assert (2 * split.alpha[v] <= 2 * split.z_pos[v] / split.z_neg[v]).all()
    # alpha = CL softmax mass on same-class keys (includes the designated positive)
    torch.testing.assert_close(split.alpha, (p_cl * same).sum(dim=1), rtol=1e-12, atol=1e-15)
    # Z_pos, Z_neg by loops; Lemma 4 bounds for logits in [-1, 1]
    for a in range(B):
        zp = sum(math.exp(b.sim[a, k].item() / tau) for k in range(2 * B) if den_cl[a, k] and same[a, k])
        zn = sum(math.exp(b.sim[a, k].item() / tau) for k in range(2 * B) if den_cl[a, k] and not same[a, k])
        assert split.z_pos[a].item() == pytest.approx(zp, rel=1e-12)
        assert split.z_neg[a].item() == pytest.approx(zn, rel=1e-12)
        n_p, n_n = int(split.n_pos[a]), int(split.n_neg[a])
        e = math.exp(1 / tau)
        assert n_p / e * (1 - 1e-12) <= zp <= n_p * e * (1 + 1e-12)
        assert n_n / e * (1 - 1e-12) <= zn <= n_n * e * (1 + 1e-12)


def test_mass_split_alpha_exact_when_z_overflows_float32():
    z1, z2, labels = _batch(6, 4, 2, seed=5)
    labels[0], labels[1] = 0, 1
    b = simclr_sim(z1, z2, labels)
    same = b.anchor_labels[:, None] == b.key_labels[None, :]
    _, den = b.masks("CL")
    s64 = softmax_mass_split(b.sim, den, same, 0.005)
    s32 = softmax_mass_split(b.sim.float(), den, same, 0.005)
    assert torch.isfinite(s32.alpha).all()
    torch.testing.assert_close(s32.alpha.double(), s64.alpha, rtol=1e-4, atol=1e-6)
    # empty same-class set -> alpha 0; empty denominator -> alpha 0 and n_pos = n_neg = 0 (no NaN)
    empty = softmax_mass_split(b.sim, torch.zeros_like(den), same, 0.5)
    assert (empty.alpha == 0).all() and (empty.n_pos == 0).all() and (empty.n_neg == 0).all()
    only_neg = softmax_mass_split(b.sim, den & ~same, same, 0.5)
    assert (only_neg.alpha == 0).all()
    only_pos = softmax_mass_split(b.sim, den & same, same, 0.5)
    assert (only_pos.alpha == 1).all()


# ---------------------------------------------------------------------------------------------------------
# prepared masks, multiset denominators, class split (the Sigma-space hot path)


@pytest.mark.parametrize("tau", TAUS)
def test_prepared_grad_softmax_and_lse(tau):
    sim, pos, den = _random_problem(12, 19, seed=7)
    prep = prepare_masks(pos, den)
    assert prep.invalid_rows.tolist() == [0, 1] and prep.valid.sum() == 10
    res = contrastive_grad_prepared(sim, prep, tau)
    ref = masked_contrastive_loss(sim, pos, den, tau)
    torch.testing.assert_close(res.p, ref.p, rtol=1e-13, atol=1e-16)
    torch.testing.assert_close(res.grad, contrastive_grad(sim, pos, den, tau), rtol=0, atol=0)
    # x = s/tau exactly on D_a (one addcdiv pass), -inf elsewhere
    assert torch.equal(res.x[den], (sim / tau)[den]) and bool((res.x[~den] == -math.inf).all())
    sm = contrastive_softmax_prepared(sim, prep, tau)
    assert torch.equal(sm.p, res.p)
    # the positive entry is (p - 1/|P|)/tau from p itself: no cancellation through p/tau - 1/(|P| tau)
    r, c = prep.pos_rows, prep.pos_cols
    want = (res.p[r, c] - 1.0 / prep.n_pos[r].double()) / tau
    assert torch.equal(res.grad[r, c], want)
    # row_scale multiplies rows
    scale = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    torch.testing.assert_close(contrastive_grad_from_softmax(res.p, prep, tau, scale), res.grad * scale[:, None],
                               rtol=1e-15, atol=1e-16)
    # lse = logsumexp over D_a (-inf for an empty D_a)
    lse = softmax_lse(res)
    want_lse = torch.logsumexp(torch.where(den, sim / tau, torch.tensor(-math.inf, dtype=torch.float64)), dim=1)
    torch.testing.assert_close(lse[1:], want_lse[1:], rtol=1e-14, atol=1e-14)
    assert lse[1] == -math.inf


def test_multiset_bias_equals_repeated_keys():
    """den_bias = log(multiplicity) on a column = the softmax over the keys with that column repeated."""
    g = torch.Generator().manual_seed(3)
    A, K, tau = 5, 7, 0.4
    sim = torch.rand(A, K, generator=g, dtype=torch.float64) * 2 - 1
    mult = torch.randint(0, 4, (A, K), generator=g)
    mult[:, 0] = 1  # the positive column, inside D_a once
    cols = [c for c in range(K) for _ in range(3)]  # every column 3 times, then masked to its multiplicity
    rep = sim[:, cols]
    den_rep = torch.tensor([[i % 3 < int(mult[a, c]) for i, c in enumerate(cols)] for a in range(A)])
    pos_rep = torch.zeros(A, 3 * K, dtype=torch.bool)
    pos_rep[:, 0] = True
    g_rep = contrastive_grad(rep, pos_rep, den_rep, tau)
    bias = torch.log(mult.double())
    prep = prepare_masks(torch.zeros(A, K, dtype=torch.bool), mult > 0)._replace(
        den_bias=bias, pos_rows=torch.arange(A), pos_cols=torch.zeros(A, dtype=torch.long),
        pos_w=torch.ones(A, dtype=torch.float64), invalid_rows=torch.zeros(0, dtype=torch.long))
    res = contrastive_grad_prepared(sim, prep, tau)
    merged = torch.zeros(A, K, dtype=torch.float64).index_add_(1, torch.tensor(cols), g_rep)
    torch.testing.assert_close(res.grad, merged, rtol=1e-12, atol=1e-15)
    lse = softmax_lse(res)
    want = torch.logsumexp(torch.where(den_rep, rep / tau, torch.tensor(-math.inf, dtype=torch.float64)), dim=1)
    torch.testing.assert_close(lse, want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("tau", TAUS)
def test_class_split_matches_mass_split_and_nscl_softmax(tau):
    z1, z2, labels = _batch(16, 4, 3, seed=11)
    labels[0] = 2
    labels[1:] = torch.where(labels[1:] == 2, torch.zeros_like(labels[1:]), labels[1:])  # anchor 0: no same-class key
    b = simclr_sim(z1, z2, labels, anchors="first")
    pos, den = b.masks("CL")
    _, den_ns = b.masks("NSCL")
    same = b.anchor_labels[:, None] == b.key_labels[None, :]
    res = contrastive_grad_prepared(b.sim, prepare_masks(pos, den), tau)
    split = class_split_from_softmax(res.p, softmax_lse(res), den, same)
    ref = softmax_mass_split(b.sim, den, same, tau)
    for f in ("z_pos", "z_neg", "alpha", "log_z_pos", "log_z_neg"):
        torch.testing.assert_close(getattr(split.mass, f), getattr(ref, f), rtol=1e-13, atol=1e-15)
    assert torch.equal(split.mass.n_pos, ref.n_pos) and torch.equal(split.mass.n_neg, ref.n_neg)
    q = masked_contrastive_loss(b.sim, pos, den_ns, tau).p
    torch.testing.assert_close(split.q, q, rtol=1e-13, atol=1e-16)
    # count overrides, need_q=False keeps q unnormalised
    s2 = class_split_from_softmax(res.p, softmax_lse(res), den, same, n_pos=ref.n_pos * 2, n_neg=ref.n_neg,
                                  need_q=False)
    assert torch.equal(s2.mass.n_pos, ref.n_pos * 2)
    torch.testing.assert_close(s2.q, res.p * (den & ~same), rtol=0, atol=0)
    # a class group whose mass underflows (logit range >> 700 tau): None, the caller recomputes directly
    sim = b.sim.clone()
    sim[3, same[3] & den[3]] = -1e4 * tau
    r3 = contrastive_grad_prepared(sim, prepare_masks(pos, den), tau)
    assert class_split_from_softmax(r3.p, softmax_lse(r3), den, same) is None


# ---------------------------------------------------------------------------------------------------------
# edge cases


def test_nscl_anchor_without_negatives_is_excluded():
    # keys: 3 items (labels 0, 0, 1); anchors: items 0 and 1 (label 0) and a "lonely" anchor 3 of label 0 whose
    # key set contains only same-label keys (custom mask) -> no negative in its NSCL denominator
    sim, _, _ = _random_problem(3, 4, seed=1)
    anchor_ids = torch.tensor([0, 1, 3])
    key_ids = torch.tensor([0, 1, 2, 3])
    anchor_labels = torch.tensor([0, 0, 0])
    key_labels = torch.tensor([0, 0, 1, 0])
    pos, den = contrastive_masks("NSCL", anchor_ids, key_ids, anchor_labels, key_labels)
    den[2] = False  # lonely anchor: no negative
    s = sim.clone().requires_grad_(True)
    res = masked_contrastive_loss(s, pos, den, 0.5)
    assert res.valid.tolist() == [True, True, False]
    assert res.loss[2].item() == 0.0 and (res.p[2] == 0).all()
    mean = res.loss.sum() / res.valid.sum()
    (g,) = torch.autograd.grad(mean, s)
    assert torch.isfinite(g).all() and (g[2] == 0).all()
    assert torch.isfinite(res.loss).all()


def test_scl_anchor_without_positive_is_excluded():
    # Sigma-space identity views: anchor 2 (label 1) is the only key of its label once itself is removed
    anchor_ids = torch.tensor([0, 1, 2])
    key_ids = torch.tensor([0, 1, 2, 3])
    anchor_labels = torch.tensor([0, 0, 1])
    key_labels = torch.tensor([0, 0, 1, 2])
    self_mask = torch.eye(3, 4, dtype=torch.bool)
    sim, _, _ = _random_problem(3, 4, seed=2)
    s = sim.clone().requires_grad_(True)
    loss, res = contrastive_loss(
        s, "SCL", 0.3, anchor_ids, key_ids, anchor_labels, key_labels, self_mask, return_details=True
    )
    assert res.valid.tolist() == [True, True, False] and res.n_pos.tolist() == [1, 1, 0]
    assert loss.item() == pytest.approx(res.loss[:2].mean().item(), rel=1e-14)
    (g,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(g).all() and (g[2] == 0).all() and (g[:2] != 0).any()
    assert (contrastive_grad(sim, *contrastive_masks("SCL", anchor_ids, key_ids, anchor_labels, key_labels,
                                                     self_mask), 0.3)[2] == 0).all()


def test_whole_batch_invalid_raises_one_line():
    z1, z2, _ = _batch(4, 3, 2, seed=0)
    labels = torch.full((4,), 3)
    b = simclr_sim(z1, z2, labels)
    with pytest.raises(ValueError, match=r"^NSCL: no anchor has a negative .*all of class 3\)$") as e:
        b.loss("NSCL", 0.5)
    assert "\n" not in str(e.value)
    # CL on a batch of 1 sample, anchors="first": the only key besides itself is its positive -> still valid
    b1 = simclr_sim(z1[:1], z2[:1], anchors="first")
    assert torch.isfinite(b1.loss("CL", 0.5)) and b1.loss("CL", 0.5).item() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match=r"^DCL: no anchor has a different-id key"):
        b1.loss("DCL", 0.5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "0.5", None])
def test_bad_tau_raises(bad):
    sim, pos, den = _random_problem(4, 5, seed=0)
    b = simclr_sim(*_batch(3, 2, 2, seed=0)[:2])
    for call in (
        lambda: masked_contrastive_loss(sim, pos, den, bad),
        lambda: contrastive_grad(sim, pos, den, bad),
        lambda: contrastive_hessian(sim, den, bad, 2),
        lambda: softmax_mass_split(sim, den, pos, bad),
        lambda: b.loss("CL", bad),
    ):
        with pytest.raises(ValueError, match="tau"):
            call()


def test_bad_arguments_raise_one_line():
    sim, pos, den = _random_problem(4, 5, seed=0)
    ids = torch.arange(4)
    with pytest.raises(ValueError, match=r"kind must be one of CL, DCL, NSCL, SCL, got kind='SupCon'"):
        contrastive_masks("SupCon", ids, ids)
    for kind in ("NSCL", "SCL"):
        with pytest.raises(ValueError, match=f"^{kind} needs class labels"):
            contrastive_masks(kind, ids, ids)
    with pytest.raises(ValueError, match="pos_mask must have shape"):
        masked_contrastive_loss(sim, pos[:, :3], den, 0.5)
    with pytest.raises(ValueError, match="den_mask must have dtype torch.bool"):
        masked_contrastive_loss(sim, pos, den.float(), 0.5)
    with pytest.raises(ValueError, match="sim must have shape"):
        masked_contrastive_loss(sim[0], pos[0], den[0], 0.5)
    with pytest.raises(ValueError, match="key_ids must have shape"):
        contrastive_loss(sim, "CL", 0.5, ids, ids)
    with pytest.raises(ValueError, match="reduction must be one of"):
        contrastive_loss(sim, "CL", 0.5, ids, torch.arange(5), reduction="avg")
    with pytest.raises(ValueError, match="anchor must be an integer"):
        contrastive_hessian(sim, den, 0.5, 4)
    with pytest.raises(ValueError, match="same shape"):
        reweighting_gap(pos.double(), den.double()[:2])
    with pytest.raises(ValueError, match="anchors must be"):
        simclr_sim(torch.randn(3, 2), torch.randn(3, 2), anchors="second")
    with pytest.raises(ValueError, match=r"z1 and z2 must both have shape \(B, d\)"):
        simclr_sim(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        simclr_sim(torch.randn(3, 2), torch.randn(3, 2), labels=torch.arange(4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_half_precision_finite_and_close_to_float32(dtype, kind):
    z1, z2, labels = _batch(64, 32, 5, seed=9, dtype=torch.float32)
    ref = simclr_sim(z1, z2, labels).loss(kind, 0.1)
    z1h = z1.to(dtype).requires_grad_(True)
    b = simclr_sim(z1h, z2.to(dtype), labels)
    assert b.sim.dtype == dtype
    loss = b.loss(kind, 0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # bf16 similarities carry ~3 significant digits; /tau = 0.1 amplifies the rounding
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2, abs=2e-2)
    loss.backward()
    assert z1h.grad is not None and z1h.grad.dtype == dtype and torch.isfinite(z1h.grad.float()).all()


def test_sigma_space_size_vectorised():
    # the simulation's hot-loop shape: 512 anchors x 1023 keys, float64 (one call, checked against autograd)
    A, K = 512, 1023
    g = torch.Generator().manual_seed(0)
    sim = torch.rand(A, K, generator=g, dtype=torch.float64) * 2 - 1
    labels = torch.randint(0, 10, (K + 1,), generator=g)
    ids = torch.arange(K + 1) // 2  # pairs of views
    anchor_rows = torch.arange(A) * 2  # anchors: view 0 of each of the 512 items
    keys = torch.arange(1, K + 1)  # 1023 keys (item 0's view 0 left out); anchors 1..511 are among the keys
    self_mask = anchor_rows[:, None] == keys[None, :]
    for kind in LOSS_KINDS:
        pos, den = contrastive_masks(kind, ids[anchor_rows], ids[keys], labels[anchor_rows], labels[keys], self_mask)
        s = sim.clone().requires_grad_(True)
        res = masked_contrastive_loss(s, pos, den, 0.5)
        (ga,) = torch.autograd.grad(res.loss.sum(), s)
        gr = contrastive_grad(sim, pos, den, 0.5)
        torch.testing.assert_close(gr, ga, rtol=1e-10, atol=1e-14)
        assert gr.shape == (A, K) and gr.dtype == torch.float64


@pytest.mark.parametrize("tau", [0.01, 1.0])
def test_extreme_logits_finite_and_exact(tau):
    # logits far outside [-1, 1] (unclipped Sigma-space): huge off-D_a entries must not overflow into D_a rows
    g = torch.Generator().manual_seed(4)
    A, K = 6, 9
    sim = torch.randn(A, K, generator=g, dtype=torch.float64) * 50
    pos = torch.zeros(A, K, dtype=torch.bool)
    pos[torch.arange(A), torch.arange(A)] = True
    den = torch.rand(A, K, generator=g) < 0.5
    den[:, A:] = True
    den[torch.arange(A), torch.arange(A)] = False  # NSCL/DCL-like: positive outside D_a ...
    sim[torch.arange(A), torch.arange(A)] = 400.0  # ... and far larger than every denominator logit
    den[5] = False  # one invalid anchor with an empty denominator
    s = sim.clone().requires_grad_(True)
    res = masked_contrastive_loss(s, pos, den, tau)
    (g_auto,) = torch.autograd.grad(res.loss.sum(), s)
    for a in range(A - 1):
        ref = torch.logsumexp(sim[a][den[a]] / tau, dim=0) - sim[a, a] / tau
        assert res.loss[a].item() == pytest.approx(ref.item(), rel=1e-13)
    assert torch.isfinite(res.loss).all() and torch.isfinite(res.p).all() and torch.isfinite(g_auto).all()
    assert (g_auto[5] == 0).all() and res.loss[5].item() == 0.0
    torch.testing.assert_close(contrastive_grad(sim, pos, den, tau), g_auto, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.p.sum(dim=1)[:5], torch.ones(5, dtype=torch.float64), rtol=1e-13, atol=0)


def test_cpu_autocast_bf16_loss_is_float32():
    z1, z2, labels = _batch(32, 16, 4, seed=8, dtype=torch.float32)
    ref = simclr_sim(z1, z2, labels).loss("NSCL", 0.2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = simclr_sim(z1, z2, labels)
        loss = b.loss("NSCL", 0.2)
    assert b.sim.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
