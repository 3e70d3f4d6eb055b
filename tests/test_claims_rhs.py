"""Every claim of the Sigma-descent verdict table: its LHS AND its RHS against an independent computation.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 3 (eps_{B,delta},
Delta_{C,delta}(B; tau)), Thm. 1 / Eq. 2, Cors. 1-2, App. D Lemmas 1-8 and Cor. 3 / Eq. 14.

The references below are written from the paper, not from the code under test: the constants by hand from
Sec. 3, the losses as python loops over the 2B keys of each anchor (Sec. 3), the Sigma-space gradients by
autograd of those loops, the softmax masses and norms by loops in float64, the Thm. 1 bounds by the closed
form (Eq. 2) and by an explicit double loop over the Grönwall product, the Cor. 1-2 certificates from
their statements, and the Lem. 5 probability by enumerating the multinomial class counts of a batch.
A wrong right-hand side (e.g. L6's RHS 2 Delta instead of Delta) fails here even where the verdict
(ratio <= 1) would not change. ``benchmarks/mutation_check.py`` applies such bugs and checks they are caught.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import multinomial

from simulate.batches import Batch, batch_items, draw_batch
from simulate.claims import CLAIMS, step_claims
from simulate.config import SigmaConfig, theory_constants
from simulate.layout import build_layout
from simulate.reference import make_reference
from simulate.run import run_sigma_descent
from simulate.step import compute_step

pytestmark = pytest.mark.usefixtures("one_thread")

V = 2
C = 3
N_SAMPLES = 12
LABELS = torch.arange(N_SAMPLES) // (N_SAMPLES // C)  # 4 samples per class
ITEM_LABELS = LABELS.repeat_interleave(V)
M = N_SAMPLES * V
T_HORIZON, DELTA = 2, 0.5  # eps_{16, 0.5} = 0.36 < 1 - 1/3: Delta is finite


# ----------------------------------------------------------------------------------------------------------
# the paper's constants, by hand (Sec. 3)


def hand_eps(B: int, T: int, delta: float) -> float:
    """eps_{B,delta} = sqrt(log(T B / delta) / (2 B))."""
    return math.sqrt(math.log(T * B / delta) / (2 * B))


def hand_delta(C: int, B: int, T: int, delta: float, tau: float) -> float:
    """Delta_{C,delta}(B; tau) = 2 e^{2/tau} (1/C + eps) / (1 - 1/C - eps)."""
    e = hand_eps(B, T, delta)
    return 2 * math.exp(2 / tau) * (1 / C + e) / (1 - 1 / C - e)


# ----------------------------------------------------------------------------------------------------------
# the losses and gradients by loops + autograd


class Case:
    """A batch in paper notation: anchor s reads row r_s; key k (k < 2B) is item cols[k] with label ylab[k];
    key s is the anchor itself (excluded), key B + s its positive; the keys of another label are its negatives."""

    def __init__(self, samples, a_slot, b_slot):
        self.samples = list(samples)
        self.B = len(self.samples)
        self.rows = [j * V + a for j, a in zip(self.samples, a_slot)]
        self.cols = self.rows + [j * V + b for j, b in zip(self.samples, b_slot)]
        self.y = [int(LABELS[j]) for j in self.samples]
        self.ylab = self.y + self.y
        self.batch = Batch(torch.tensor(self.samples), torch.tensor(list(a_slot)), torch.tensor(list(b_slot)))

    def den(self, s: int, kind: str) -> list[int]:
        """Keys of anchor s's denominator: every key but s (CL), the keys of another label (NSCL)."""
        if kind == "CL":
            return [k for k in range(2 * self.B) if k != s]
        return [k for k in range(2 * self.B) if self.ylab[k] != self.y[s]]

    def geometry(self, symmetric: bool, diag: str):
        rows, cols = batch_items(self.batch, V)
        return build_layout(rows, cols, ITEM_LABELS[rows], ITEM_LABELS[cols], M, symmetric, diag)


def anchor_loss(S: torch.Tensor, case: Case, s: int, kind: str, tau: float):
    """ell_s = -S[r_s, pos]/tau + log sum_{k in D_s} exp(S[r_s, cols[k]]/tau); None if D_s is empty."""
    r = case.rows[s]
    terms = [S[r, case.cols[k]] / tau for k in case.den(s, kind)]
    if not terms:
        return None
    return torch.logsumexp(torch.stack(terms), 0) - S[r, case.cols[case.B + s]] / tau


def sigma_grad(S: torch.Tensor, case: Case, kind: str, tau: float, anchors, symmetric: bool, weight: float,
               diag_fixed: bool = False):
    """Gradient of weight * sum_{s in anchors} ell_s wrt Sigma: ordered (every entry a coordinate) or the
    symmetric parameter theta (upper triangle), expanded to both triangles (the update matrix). A fixed
    diagonal (Sigma(i, i) = 1 a constant, diag="fixed") is not a coordinate: its gradient entries are 0."""
    theta = S.detach().clone().requires_grad_(True)
    full = torch.triu(theta) + torch.triu(theta, 1).T if symmetric else theta
    total = theta.sum() * 0.0
    for s in anchors:
        ell = anchor_loss(full, case, s, kind, tau)
        if ell is not None:
            total = total + weight * ell
    (g,) = torch.autograd.grad(total, theta)
    g = torch.triu(g) + torch.triu(g, 1).T if symmetric else g
    return g.fill_diagonal_(0.0) if diag_fixed else g


def batch_grad(S, case, kind, tau, symmetric=False, diag_fixed=False):
    """G^kind(S) = gradient of the batch loss (1/B) sum_s ell_s (Eq. 1)."""
    return sigma_grad(S, case, kind, tau, range(case.B), symmetric, 1.0 / case.B, diag_fixed)


def fro(X) -> float:
    return float(np.sqrt(np.sum(np.asarray(X, dtype=np.float64) ** 2)))


def le_ratio(lhs: float, rhs: float) -> float:
    """lhs / rhs with 0/0 = 0, x/0 = inf, x/inf = 0 (the convention of the verdict table)."""
    if rhs == math.inf:
        return 0.0
    if rhs > 0:
        return lhs / rhs
    return math.inf if lhs > 0 else 0.0


# ----------------------------------------------------------------------------------------------------------
# the reference of every per-step claim


def reference_claims(S_cl, S_ns, case: Case, tau, B, T, delta, eta, drift_t, drift_next, symmetric=False,
                     diag_fixed=False) -> dict:
    """{claim: (lhs, rhs, ratio, premise)} lists, one instance per anchor (CL anchors then NSCL anchors for L2_jac
    and L3), written from the statements of Lemmas 1-8 / Cor. 3 in float64 loops."""
    Sc, Sn = S_cl.numpy(), S_ns.numpy()
    Delta = hand_delta(C, B, T, delta, tau)
    Lip = 1 / (2 * tau**2 * B)
    inject = Delta / (tau * math.sqrt(B))
    fb = 1 - 1 / C - hand_eps(B, T, delta)
    out: dict[str, tuple] = {}

    def per_anchor_softmax(Snp, s, kind):
        """per-key softmax over D_s (dict key -> prob), empty if D_s is empty."""
        r = case.rows[s]
        ks = case.den(s, kind)
        if not ks:
            return {}
        w = {k: math.exp(Snp[r, case.cols[k]] / tau) for k in ks}
        Z = sum(w.values())
        return {k: w[k] / Z for k in ks}

    has_neg = [bool(case.den(s, "NSCL")) for s in range(B)]

    # Lem. 1 / Lem. 3: per-anchor gradients ell_s wrt Sigma (autograd)
    G = {"CL": batch_grad(S_cl, case, "CL", tau, symmetric, diag_fixed),
         "NSCL": batch_grad(S_ns, case, "NSCL", tau, symmetric, diag_fixed)}
    per = {kind: [sigma_grad(S, case, kind, tau, [s], symmetric, 1.0, diag_fixed) for s in range(B)]
           for kind, S in (("CL", S_cl), ("NSCL", S_ns))}
    l1_lhs = [fro(G["CL"]) ** 2, fro(G["NSCL"]) ** 2]
    l1_rhs = [sum(fro(g) ** 2 for g in per[k]) / B**2 for k in ("CL", "NSCL")]
    out["L1"] = (l1_lhs, l1_rhs, [a / b for a, b in zip(l1_lhs, l1_rhs)], [True, True])
    l3 = [fro(g) for k in ("CL", "NSCL") for g in per[k]]
    out["L3"] = (l3, [math.sqrt(2) / tau] * 2 * B, [x * tau / math.sqrt(2) for x in l3], [True] * 2 * B)
    l3b = [math.sqrt(x) for x in l1_lhs]
    out["L3_batch"] = (l3b, [math.sqrt(2 / B) / tau] * 2, [x / (math.sqrt(2 / B) / tau) for x in l3b], [True] * 2)

    # Lem. 2, Jacobian of the Sigma-space softmax (keys on the same item merged): ||Diag pi - pi pi^T||_inf
    jac = []
    for kind, Snp in (("CL", Sc), ("NSCL", Sn)):
        for s in range(B):
            p = per_anchor_softmax(Snp, s, kind)
            items = sorted({case.cols[k] for k in p})
            pi = np.array([sum(v for k, v in p.items() if case.cols[k] == c) for c in items])
            J = np.diag(pi) - np.outer(pi, pi) if len(pi) else np.zeros((1, 1))
            jac.append(float(np.abs(J).sum(1).max()))
    out["L2_jac"] = (jac, [0.5] * 2 * B, [x / 0.5 for x in jac], [True] * 2 * B)

    # Lem. 2, Lipschitz at the actual pair: the difference restricted to the entries each gradient map reads
    D = Sc - Sn
    for cid, kind, S_a, S_b in (("L2", "NSCL", S_cl, S_ns), ("L2_CL", "CL", S_cl, S_ns)):
        A = np.zeros((M, M), dtype=bool)
        for s in range(B):
            for k in case.den(s, kind):
                A[case.rows[s], case.cols[k]] = True
        if symmetric:
            A = A | A.T
        lhs = fro(batch_grad(S_a, case, kind, tau, symmetric, diag_fixed)
                  - batch_grad(S_b, case, kind, tau, symmetric, diag_fixed))
        rhs = Lip * fro(D * A)
        out[cid] = ([lhs], [rhs], [le_ratio(lhs, rhs)], [True])

    # Lem. 4, Cor. 3, Lem. 6 at Sigma^CL, per anchor
    L4 = ([], [], [], [])
    cor3, cor3x, mass, l6, l6b, l6i = ([], [], [], []), ([], [], [], []), ([], [], [], []), ([], [], [], []), \
        ([], [], [], []), ([], [], [], [])
    prem_all = True
    e2 = math.exp(2 / tau)
    for s in range(B):
        r = case.rows[s]
        den = case.den(s, "CL")
        in_range = all(abs(Sc[r, case.cols[k]]) <= 1.0 for k in den)
        pos = [k for k in den if case.ylab[k] == case.y[s]]
        neg = [k for k in den if case.ylab[k] != case.y[s]]
        zp = sum(math.exp(Sc[r, case.cols[k]] / tau) for k in pos)
        zn = sum(math.exp(Sc[r, case.cols[k]] / tau) for k in neg)
        n_same = sum(case.y[u] == case.y[s] for u in range(B))
        frac, frac_x = (B - n_same) / B, (B - n_same) / (B - 1)
        event = frac >= fb
        zr = zp / zn if neg else math.inf
        # Lem. 4: |S| e^{-1/tau} <= Z_S <= |S| e^{1/tau} (S = pos, neg, all) and the ratio bounds; ratio = worst
        subs = []
        for z, n in ((zp, len(pos)), (zn, len(neg))):
            subs += [z / (n * math.exp(1 / tau)), n * math.exp(-1 / tau) / z] if n else [0.0, 0.0]
        subs += [(zp + zn) / (len(den) * math.exp(1 / tau)), len(den) * math.exp(-1 / tau) / (zp + zn)]
        if pos and neg:
            cr = len(pos) / len(neg)
            subs += [zr / (e2 * cr), (cr / e2) / zr]
        L4[0].append(zr)
        L4[1].append(e2 * len(pos) / max(len(neg), 1))
        L4[2].append(max(subs))
        L4[3].append(in_range)
        for acc, lhs in ((cor3, frac), (cor3x, frac_x)):
            acc[0].append(lhs)
            acc[1].append(fb)
            acc[2].append(fb / lhs if lhs > 0 else math.inf)
            acc[3].append(True)
        prem = event and in_range
        prem_all = prem_all and prem
        mass[0].append(zr)
        mass[1].append(Delta / 2)
        mass[2].append(le_ratio(zr, Delta / 2))
        mass[3].append(prem)
        p = per_anchor_softmax(Sc, s, "CL")
        q = per_anchor_softmax(Sc, s, "NSCL")
        dpq = np.array([p[k] - q.get(k, 0.0) for k in den])
        n1, n2 = float(np.abs(dpq).sum()), float(np.sqrt((dpq**2).sum()))
        alpha = zp / (zp + zn)
        for acc, lhs, rhs, pr in ((l6, n1, Delta, prem and has_neg[s]), (l6b, n2, Delta, prem and has_neg[s]),
                                  (l6i, n1, 2 * alpha, has_neg[s])):
            acc[0].append(lhs)
            acc[1].append(rhs)
            acc[2].append(le_ratio(lhs, rhs))
            acc[3].append(pr)
    out.update(L4=L4, Cor3=cor3, Cor3_excl=cor3x, Cor3_mass=mass, L6=l6, L6_l2=l6b, L6_identity=l6i)

    # Lem. 3 proof, NSCL display: the logit gradient of ell_s^NSCL at Sigma^NSCL (autograd over the 2B logits)
    disp = ([], [], [], [])
    for s in range(B):
        r = case.rows[s]
        if not has_neg[s]:
            lhs = rhs = 0.0
        else:
            x = torch.tensor([Sn[r, c] for c in case.cols], dtype=torch.float64, requires_grad=True)
            negs = case.den(s, "NSCL")
            ell = torch.logsumexp(x[negs] / tau, 0) - x[B + s] / tau
            (gx,) = torch.autograd.grad(ell, x)
            lhs = float((gx**2).sum())
            q = torch.softmax(x.detach()[negs] / tau, 0)
            rhs = float((q**2).sum()) / tau**2
        disp[0].append(lhs)
        disp[1].append(rhs)
        disp[2].append(le_ratio(lhs, rhs))
        disp[3].append(has_neg[s])
    out["L3_nscl_display"] = disp

    # Lem. 8, its term (A), and the Thm. 1 recurrence: the paper's constants need ordered Sigma and every anchor
    # on its own row (Lem. 1); the multiplicity forms carry m = max anchors on a row, q = sum_r n_r^2 and
    # kappa = 2 for symmetric Sigma, with the sharpened Lem. 6 constant Delta' = Delta / (sqrt 2 (1 + Delta/2))
    G_ns_at_cl = batch_grad(S_cl, case, "NSCL", tau, symmetric, diag_fixed)
    gap = fro(G["CL"] - G["NSCL"])
    gap_A = fro(G["CL"] - G_ns_at_cl)
    n_r = [case.rows.count(r) for r in sorted(set(case.rows))]
    m, q, kappa = max(n_r), sum(n * n for n in n_r), (2.0 if symmetric else 1.0)
    prem_paper = prem_all and m == 1 and not symmetric
    for cid, lhs, rhs in (("L8", gap, inject + Lip * drift_t), ("L8_A", gap_A, inject),
                          ("Thm1_rec", drift_next, (1 + eta * Lip) * drift_t + eta * inject)):
        out[cid] = ([lhs], [rhs], [le_ratio(lhs, rhs)], [prem_paper])
    alpha_m = kappa * m / (2 * tau**2 * B)
    gamma_m = kappa * math.sqrt(q) * Delta / (math.sqrt(2) * (1 + Delta / 2)) / (tau * B)
    for cid, lhs, rhs in (("L8_mult", gap, gamma_m + alpha_m * drift_t),
                          ("Thm1_rec_mult", drift_next, (1 + eta * alpha_m) * drift_t + eta * gamma_m)):
        out[cid] = ([lhs], [rhs], [le_ratio(lhs, rhs)], [prem_all])
    out["_gap_A"] = gap_A
    out["_mult"] = (alpha_m, gamma_m, prem_all, prem_paper)
    return out


STEP_CLAIMS = ("L1", "L2", "L2_CL", "L2_jac", "L3", "L3_batch", "L3_nscl_display", "L4", "Cor3", "Cor3_excl",
               "Cor3_mass", "L6", "L6_l2", "L6_identity", "L8", "L8_A", "L8_mult", "Thm1_rec", "Thm1_rec_mult")


def _draw_case(seed: int, B: int = 16, dup_anchor: bool = False, heavy: bool = False) -> Case:
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, N_SAMPLES, B)
    if heavy:  # 15 of 16 draws from class 0: the Cor. 3 event fails for their anchors
        samples = np.concatenate([rng.integers(0, 4, B - 1), [8]])
    a = rng.integers(0, V, B)
    if dup_anchor:  # same sample, same view slot twice: two anchors on one Sigma row
        samples[1], a[1] = samples[0], a[0]
    return Case(samples.tolist(), a.tolist(), (1 - a).tolist())


def _states(seed: int, scale: float, symmetric: bool, diag: str):
    gen = torch.Generator().manual_seed(seed)
    S_cl = (torch.rand(M, M, dtype=torch.float64, generator=gen) * 2 - 1) * scale
    S_ns = S_cl + 0.1 * torch.randn(M, M, dtype=torch.float64, generator=gen)
    if symmetric:
        S_cl, S_ns = 0.5 * (S_cl + S_cl.T), 0.5 * (S_ns + S_ns.T)
    if diag == "fixed":  # the paper's unit diagonal, a constant of both runs
        S_cl.fill_diagonal_(1.0)
        S_ns.fill_diagonal_(1.0)
    return S_cl, S_ns


STEP_CASES = {  # name: (case seed, tau, scale of Sigma, symmetric, dup_anchor, heavy, diag)
    "replacement": (0, 0.5, 0.9, False, False, False, "free"),
    "dup_anchor": (1, 1.0, 0.9, False, True, False, "free"),
    "dup_anchor_fixed_diag": (1, 1.0, 0.9, False, True, False, "fixed"),
    "out_of_box": (2, 0.7, 1.02, False, True, False, "fixed"),  # some logits outside [-1, 1]: premise false there
    "heavy_class": (3, 0.5, 0.9, False, False, True, "free"),  # Cor. 3 event false for most anchors
    "symmetric": (4, 0.8, 0.9, True, True, False, "free"),
    "symmetric_fixed_diag": (4, 0.8, 0.9, True, True, False, "fixed"),
}


@pytest.mark.parametrize("name", list(STEP_CASES))
def test_every_step_claim_lhs_rhs_ratio_and_premise(name):
    seed, tau, scale, sym, dup, heavy, diag = STEP_CASES[name]
    case = _draw_case(seed, dup_anchor=dup, heavy=heavy)
    B = case.B
    S_cl, S_ns = _states(seed, scale, sym, diag)
    consts = theory_constants(C, B, T_HORIZON, DELTA, tau)  # the engine's constants, checked by hand below
    drift_t, drift_next, eta = 0.37, 0.41, 0.9
    st = compute_step(S_cl, S_ns, case.geometry(sym, diag), tau)
    claims, info = step_claims(st, consts, C, drift_t, drift_next, eta)
    ref = reference_claims(S_cl, S_ns, case, tau, B, T_HORIZON, DELTA, eta, drift_t, drift_next, sym, diag == "fixed")
    for cid in STEP_CLAIMS:
        ev = claims[cid]
        lhs, rhs, ratio, prem = ref[cid]
        for what, got, want in (("lhs", ev.lhs, lhs), ("rhs", ev.rhs, rhs), ("ratio", ev.ratio, ratio)):
            np.testing.assert_allclose(got.numpy(), np.asarray(want, dtype=np.float64), rtol=1e-10, atol=1e-13,
                                       err_msg=f"{name}: {cid} {what}")
        assert ev.premise.tolist() == list(prem), f"{name}: {cid} premise"
    assert info["gap_A"] == pytest.approx(ref["_gap_A"], rel=1e-10)
    # the cases exercise what they are named for
    prem = ref["Cor3_mass"][3]
    if name in ("replacement", "dup_anchor", "dup_anchor_fixed_diag", "symmetric", "symmetric_fixed_diag"):
        assert all(prem)
    else:
        assert not all(prem) and any(prem)


def test_constants_match_the_paper_by_hand():
    for C_, B, T, delta, tau in ((3, 16, 2, 0.5, 0.5), (10, 256, 100, 0.05, 0.1), (1000, 512, 1, 0.01, 2.0)):
        k = theory_constants(C_, B, T, delta, tau)
        assert k["eps"] == pytest.approx(hand_eps(B, T, delta), rel=1e-14)
        assert k["Delta"] == pytest.approx(hand_delta(C_, B, T, delta, tau), rel=1e-13)
        assert k["lipschitz"] == pytest.approx(1 / (2 * tau**2 * B), rel=1e-14)
        assert k["inject"] == pytest.approx(hand_delta(C_, B, T, delta, tau) / (tau * math.sqrt(B)), rel=1e-13)
        assert k["frac_bound"] == pytest.approx(1 - 1 / C_ - hand_eps(B, T, delta), rel=1e-14)


# ----------------------------------------------------------------------------------------------------------
# a whole run, replayed: the Eq. 1 step, the trajectory claims (Thm. 1 forms, Cors. 1-2) and L5


# claim -> (eval-point value, its lower bound) of the Cor. 1-2 certificates; the Thm. 1 trajectory forms
CERTIFICATES = {"Cor1": ("cka", "cka_lb_paper"), "Cor1_sharp": ("cka", "cka_lb_sharp"),
                "Cor1_mult": ("cka", "cka_lb_mult"), "Cor1_meas": ("cka", "cka_lb_meas"),
                "Cor1_meas_sharp": ("cka", "cka_lb_meas_sharp"), "Cor1_exact": ("cka", "cka_lb_exact"),
                "Cor2": ("rsa", "rsa_lb_paper"), "Cor2_sharp": ("rsa", "rsa_lb_sharp"),
                "Cor2_mult": ("rsa", "rsa_lb_mult"), "Cor2_meas": ("rsa", "rsa_lb_meas"),
                "Cor2_meas_sharp": ("rsa", "rsa_lb_meas_sharp"), "Cor2_exact": ("rsa", "rsa_lb_exact")}
TRAJECTORY_CLAIMS = ("Thm1", "Thm1_unrolled", "Thm1_mult", "Thm1_gap")


def test_every_claim_of_the_verdict_table_has_a_reference():
    """A claim added to simulate.claims.CLAIMS without a reference here fails (L7 / Thm2 are parameter-space
    claims, not evaluated in Sigma-space; L5 is checked in the replayed run)."""
    covered = set(STEP_CLAIMS) | set(CERTIFICATES) | set(TRAJECTORY_CLAIMS) | {"L5"}
    missing = [cid for cid, spec in CLAIMS.items() if spec["unit"] != "-" and cid not in covered]
    assert missing == []
    assert {cid for cid, spec in CLAIMS.items() if spec["unit"] == "-"} == {"L7", "Thm2"}


def replay_step(S, case: Case, kind: str, tau: float, eta: float, sym: bool, diag_fixed: bool) -> torch.Tensor:
    """Eq. 1 with the entries projected onto [-1, 1] (the default --project clip)."""
    return (S - eta * batch_grad(S, case, kind, tau, sym, diag_fixed)).clamp(-1.0, 1.0)


def centred(S: np.ndarray) -> np.ndarray:
    n = S.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return H @ S @ H


def lemma5_exact_by_enumeration(C_: int, B: int, T: int, eps: float) -> float:
    """P[exists step, anchor: (B - n_same)/B < 1 - 1/C - eps], labels i.i.d. uniform: a step is bad iff the
    largest class count n has (B - n)/B < 1 - 1/C - eps (the anchor's own slot counted)."""
    p_step = 0.0
    for counts in itertools.product(range(B + 1), repeat=C_ - 1):
        last = B - sum(counts)
        if last < 0:
            continue
        n = list(counts) + [last]
        if (B - max(n)) / B < 1 - 1 / C_ - eps:
            p_step += multinomial.pmf(n, B, [1 / C_] * C_)
    return 1 - (1 - p_step) ** T


@pytest.mark.parametrize("sigma,diag", [("ordered", "fixed"), ("symmetric", "free")])
def test_run_replayed_step_by_step_against_the_paper(sigma, diag):
    tau, eta, T, B, delta = 0.8, 2.0, 4, 16, 0.5
    cfg = SigmaConfig(n=N_SAMPLES, classes=C, batch_size=B, tau=tau, eta=eta, steps=T, delta=delta, embed_dim=6,
                      eval_every=2, lemma5_trials=20, plot=False, sigma=sigma, diag=diag)
    sym, diag_fixed = sigma == "symmetric", diag == "fixed"
    res = run_sigma_descent(cfg, None, quiet=True)
    assert torch.equal(make_reference(cfg).labels, LABELS)
    S_cl = make_reference(cfg).sigma0.clone()
    S_ns = S_cl.clone()
    bg = torch.Generator().manual_seed(cfg.batch_seed)
    ag = torch.Generator().manual_seed(cfg.aug_seed)
    Delta, Lip = hand_delta(C, B, T, delta, tau), 1 / (2 * tau**2 * B)
    gap_bound = mult_bound = 0.0
    prem_so_far, paper_so_far, n_thm1, n_mult = True, True, 0, 0
    step_max = {cid: None for cid in STEP_CLAIMS}
    evals = {0: (S_cl.numpy().copy(), S_ns.numpy().copy())}
    mults = {0: 0.0}
    for t in range(T):
        b = draw_batch(N_SAMPLES, B, V, True, bg, ag)
        case = Case(b.samples.tolist(), b.anchor_slot.tolist(), b.pos_slot.tolist())
        drift_t = fro(S_cl - S_ns)
        new_cl = replay_step(S_cl, case, "CL", tau, eta, sym, diag_fixed)
        new_ns = replay_step(S_ns, case, "NSCL", tau, eta, sym, diag_fixed)
        drift_next = fro(new_cl - new_ns)
        ref = reference_claims(S_cl, S_ns, case, tau, B, T, delta, eta, drift_t, drift_next, sym, diag_fixed)
        row = res.step_rows[t]
        for cid in STEP_CLAIMS:  # steps.csv: the max ratio over the instances whose premise held
            held = [r for r, p in zip(ref[cid][2], ref[cid][3]) if p]
            want = max(held) if held else None
            got = row[f"ratio_{cid}"]
            assert (got is None) == (want is None), (t, cid)
            if want is not None:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-13), (t, cid)
                step_max[cid] = want if step_max[cid] is None else max(step_max[cid], want)
        S_cl, S_ns = new_cl, new_ns
        alpha_m, gamma_m, prem_t, paper_t = ref["_mult"]
        # Thm1_gap: the Lipschitz step with the realised row multiplicity (kappa m/(2 tau^2 B), issue 6 item 1)
        gap_bound = (1 + eta * alpha_m) * gap_bound + eta * ref["_gap_A"]
        mult_bound = (1 + eta * alpha_m) * mult_bound + eta * gamma_m
        prem_so_far, paper_so_far = prem_so_far and prem_t, paper_so_far and paper_t
        n_thm1 += prem_so_far and paper_so_far  # the trajectory claims are evaluated where their premise held so far
        n_mult += prem_so_far
        # Thm. 1 after t + 1 steps: closed form (Eq. 2), the Grönwall product by a double loop, the measured form
        n = t + 1
        St = eta * n
        closed = math.exp(St / (2 * tau**2 * B)) * St * Delta / (tau * math.sqrt(B))
        unrolled = sum(eta * Delta / (tau * math.sqrt(B)) * math.prod(1 + eta * Lip for _ in range(s + 1, n))
                       for s in range(n))
        assert row["drift_fro"] == pytest.approx(drift_next, rel=1e-10)
        assert row["bound_thm1_closed"] == pytest.approx(closed, rel=1e-12)
        assert row["bound_thm1_unrolled"] == pytest.approx(unrolled, rel=1e-12)
        assert row["bound_thm1_gap"] == pytest.approx(gap_bound, rel=1e-10)
        assert row["bound_thm1_mult"] == pytest.approx(mult_bound, rel=1e-10)
        if n % cfg.eval_every == 0:
            evals[n] = (S_cl.numpy().copy(), S_ns.numpy().copy())
            mults[n] = mult_bound
    torch.testing.assert_close(res.sigma_cl, S_cl, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(res.sigma_ns, S_ns, rtol=1e-12, atol=1e-13)
    for cid in STEP_CLAIMS:
        if step_max[cid] is not None:
            assert res.checks[cid]["max_ratio"] == pytest.approx(step_max[cid], rel=1e-9, abs=1e-13), cid

    # Cors. 1-2 at every eval point, from their statements
    iu = np.triu_indices(M, 1)
    Mp = M * (M - 1) // 2
    sq2 = math.sqrt(2) if sym else 1.0  # symmetric difference: ||upper(X)||_2 = ||off(X)||_F / sqrt 2 (tight forms)
    cert = {}
    for ev in res.eval_rows:
        S1, S2 = evals[ev["step"]]
        K1, K2 = centred(S1), centred(S2)
        k = fro(K1)
        sd = float(np.std(S1[iu]))
        bound = math.exp(eta * ev["step"] / (2 * tau**2 * B)) * eta * ev["step"] * Delta / (tau * math.sqrt(B))
        bmult = mults[ev["step"]]
        drift = fro(S1 - S2)
        paper = lambda x: (1 - x) / (1 + x)  # noqa: E731
        tight = lambda x: math.sqrt(1 - x * x) if x < 1 else -1.0  # noqa: E731
        want = {
            "cka": float((K1 * K2).sum()) / (k * fro(K2)),
            "rsa": float(np.corrcoef(S1[iu], S2[iu])[0, 1]),
            "k_cl_fro": k, "sigma_d": sd, "bound_closed": bound, "drift_full": drift,
            "cka_lb_paper": paper(bound / k), "cka_lb_sharp": tight(bound / k),
            "cka_lb_meas": paper(drift / k), "cka_lb_meas_sharp": tight(drift / k),
            "cka_lb_exact": tight(fro(K2 - K1) / k),
            "rsa_lb_paper": paper(bound / (math.sqrt(Mp) * sd)), "rsa_lb_sharp": tight(bound / (math.sqrt(Mp) * sd) / sq2),
            "rsa_lb_meas": paper(drift / (math.sqrt(Mp) * sd)),
            "rsa_lb_meas_sharp": tight(drift / (math.sqrt(Mp) * sd) / sq2),
            "rsa_lb_exact": tight(float(np.std((S2 - S1)[iu])) / sd),
        }
        if ev["step"] > 0:  # Cors. 1-2 with the Thm1_mult bound (the run evaluates them after each eval step)
            want.update(bound_mult=bmult, cka_lb_mult=tight(bmult / k),
                        rsa_lb_mult=tight(bmult / (math.sqrt(Mp) * sd) / sq2))
        for key, v in want.items():
            assert ev[key] == pytest.approx(v, rel=1e-9, abs=1e-12), (ev["step"], key)
        cert = want
    for cid, (value, lb) in CERTIFICATES.items():
        got = res.checks[cid]["final"]
        assert got["lhs"] == pytest.approx(cert[value], rel=1e-9), cid
        assert got["rhs"] == pytest.approx(cert[lb], rel=1e-9, abs=1e-12), cid
        deficit = max(0.0, 1 - cert[value]) / (1 - cert[lb])  # (1 - value)/(1 - lb) <= 1  <=>  value >= lb
        assert got["ratio"] == pytest.approx(deficit, rel=1e-8, abs=1e-12), cid
    # Thm. 1 forms at T
    St = eta * T
    closed_T = math.exp(St / (2 * tau**2 * B)) * St * Delta / (tau * math.sqrt(B))
    for cid, rhs in (("Thm1", closed_T), ("Thm1_gap", gap_bound), ("Thm1_mult", mult_bound),
                     ("Thm1_unrolled", sum(eta * Delta / (tau * math.sqrt(B)) * (1 + eta * Lip) ** (T - 1 - s)
                                           for s in range(T)))):
        got = res.checks[cid]["final"]
        assert got["lhs"] == pytest.approx(fro(S_cl - S_ns), rel=1e-10), cid
        assert got["rhs"] == pytest.approx(rhs, rel=1e-10), cid
    assert (res.checks["Thm1"]["evaluated"], res.checks["Thm1_unrolled"]["evaluated"]) == (n_thm1, n_thm1)
    assert (res.checks["Thm1_mult"]["evaluated"], res.checks["Thm1_gap"]["evaluated"]) == (n_mult, T)
    assert n_mult > n_thm1  # duplicated rows / symmetric Sigma leave the paper's premise, not the _mult one
    # L5: the exact probability by enumeration vs the union bound T B e^{-2 B eps^2} (= delta at eps_{B,delta})
    e = hand_eps(B, T, delta)
    l5 = res.checks["L5"]
    assert l5["rhs_at_max"] == pytest.approx(T * B * math.exp(-2 * B * e * e), rel=1e-12)
    assert l5["rhs_at_max"] == pytest.approx(delta, rel=1e-12)
    assert l5["lhs_at_max"] == pytest.approx(lemma5_exact_by_enumeration(C, B, T, e), rel=1e-9)


# ----------------------------------------------------------------------------------------------------------
# theory.bounds: every certificate's formula by hand (the forms the verdicts and figures use)


def test_bound_formulas_by_hand():
    from theory import bounds as tb

    B, C_, delta, tau = 64, 10, 0.1, 0.7
    eta = [0.5, 2.0, 1.0, 3.0, 0.25]
    T = len(eta)
    Delta = hand_delta(C_, B, T, delta, tau)
    Lip, inj = 1 / (2 * tau**2 * B), Delta / (tau * math.sqrt(B))
    S = sum(eta)
    assert tb.thm1_bound(eta, B, C_, delta, tau) == pytest.approx(math.exp(S * Lip) * S * inj, rel=1e-13)
    # the Grönwall product sum_s gamma_s prod_{u = s+1}^{T-1} (1 + alpha_u), by a double loop
    unrolled = sum(eta[s] * inj * math.prod(1 + eta[u] * Lip for u in range(s + 1, T)) for s in range(T))
    assert tb.thm1_unrolled(eta, B, C_, delta, tau) == pytest.approx(unrolled, rel=1e-13)
    assert tb.thm1_bound_gronwall(eta, B, C_, delta, tau) == pytest.approx(
        2 * tau * math.sqrt(B) * Delta * (math.exp(S * Lip) - 1), rel=1e-12)
    rec = [0.0]
    for e in eta:  # D_{t+1} = (1 + eta_t L) D_t + eta_t Delta/(tau sqrt B)
        rec.append((1 + e * Lip) * rec[-1] + e * inj)
    np.testing.assert_allclose(tb.thm1_trajectory(eta, B, C_, delta, tau, form="unrolled"), rec, rtol=1e-13)
    cum = np.concatenate([[0.0], np.cumsum(eta)])
    np.testing.assert_allclose(tb.thm1_trajectory(eta, B, C_, delta, tau, form="closed"),
                               [math.exp(x * Lip) * x * inj for x in cum], rtol=1e-13)
    # sharpened Lem. 6: ||p - q||_1 = 2 alpha <= Delta/(1 + Delta/2), ||p - q||_2 <= sqrt(2) alpha
    assert tb.lem6_l1_sharp(Delta) == pytest.approx(Delta / (1 + Delta / 2), rel=1e-14)
    assert tb.lem6_l2_sharp(Delta) == pytest.approx(Delta / (math.sqrt(2) * (1 + Delta / 2)), rel=1e-14)
    D2 = Delta / (math.sqrt(2) * (1 + Delta / 2))
    sharp = sum(eta[s] * D2 / (tau * math.sqrt(B)) * math.prod(1 + eta[u] * Lip for u in range(s + 1, T))
                for s in range(T))
    assert tb.thm1_bound_sharp(eta, B, C_, delta, tau) == pytest.approx(sharp, rel=1e-12)
    # with duplicated anchor rows: alpha_t = kappa eta_t m_t/(2 tau^2 B), gamma_t = kappa eta_t sqrt(q_t) Delta'/(tau B)
    rows = [3, 3, 5, 7, 7, 7, 9]
    assert tuple(tb.anchor_row_multiplicity(rows)) == (3, 2**2 + 1 + 3**2 + 1, 7)
    m_t, q_t = [1, 2, 3, 1, 2], [64, 70, 80, 64, 66]
    for kappa in (1.0, 2.0):
        al = [kappa * eta[t] * m_t[t] / (2 * tau**2 * B) for t in range(T)]
        ga = [kappa * eta[t] * math.sqrt(q_t[t]) * D2 / (tau * B) for t in range(T)]
        want = sum(ga[s] * math.prod(1 + al[u] for u in range(s + 1, T)) for s in range(T))
        got = tb.thm1_bound_sharp_multiplicity(eta, B, C_, delta, tau, m_t, q_t, kappa=kappa)
        assert got == pytest.approx(want, rel=1e-12)
        traj = [sum(ga[s] * math.prod(1 + al[u] for u in range(s + 1, n)) for s in range(n)) for n in range(T + 1)]
        np.testing.assert_allclose(tb.thm1_trajectory_multiplicity(eta, D2, B, tau, m_t, q_t, kappa), traj, rtol=1e-12)
    # m = 1, q = B, kappa = 1: the paper's sharp form
    assert tb.thm1_bound_sharp_multiplicity(eta, B, C_, delta, tau, 1, B) == pytest.approx(sharp, rel=1e-12)
    # Cors. 1-2: rho = bound / ||K^CL||_F, r = bound / (sqrt(M) sigma_D); (1 - x)/(1 + x) and sqrt(1 - x^2)
    for bound, k, Mp, sd in ((0.3, 2.0, 45, 0.05), (5.0, 2.0, 4950, 0.01)):
        rho, r = bound / k, bound / (math.sqrt(Mp) * sd)
        tight = lambda x: math.sqrt(1 - x * x) if x < 1 else -1.0  # noqa: E731
        assert tb.cor1_cka_bound(bound, k) == pytest.approx((rho, (1 - rho) / (1 + rho)), rel=1e-14)
        assert tb.cka_certificate_sharp(bound, k) == pytest.approx((rho, tight(rho)), rel=1e-14)
        assert tb.cor2_rsa_bound(bound, Mp, sd) == pytest.approx((r, (1 - r) / (1 + r)), rel=1e-14)
        assert tb.rsa_certificate_sharp(bound, Mp, sd) == pytest.approx((r, tight(r)), rel=1e-14)
        rs = r / math.sqrt(2)  # symmetric difference: ||upper(X)||_2 = ||off(X)||_F / sqrt 2
        assert tb.cor2_rsa_bound(bound, Mp, sd, symmetric=True) == pytest.approx((rs, (1 - rs) / (1 + rs)), rel=1e-14)
        assert tb.rsa_certificate_sharp(bound, Mp, sd, symmetric=True) == pytest.approx((rs, tight(rs)), rel=1e-14)


def test_loss_gap_bound_by_hand_and_against_a_loop():
    """Companion paper: L^DCL - L^NSCL <= log(1 + e^{2/tau}/(C - 1)) (balanced), log(1 + n_max e^{2/tau}/(N - n_max))."""
    from theory.bounds import loss_gap_bound

    for C_, tau in ((2, 0.1), (10, 0.5), (100, 1.0)):
        assert loss_gap_bound(C_, tau) == pytest.approx(math.log1p(math.exp(2 / tau) / (C_ - 1)), rel=1e-13)
        assert loss_gap_bound(C_, tau, form="linear") == pytest.approx(math.exp(2 / tau) / (C_ - 1), rel=1e-13)
    assert loss_gap_bound(3, 0.5, n_max=5, N=12) == pytest.approx(math.log1p(5 * math.exp(4) / 7), rel=1e-13)
    # the extreme configuration (same-class cosines +1, other-class -1), 2 views, by loops: gap close to the bound
    N, C_, tau = 60, 3, 0.5
    y = [i % C_ for i in range(N)]
    gaps = []
    for i in range(N):
        z_dcl = sum(2 * math.exp((1 if y[j] == y[i] else -1) / tau) for j in range(N) if j != i)
        z_neg = sum(2 * math.exp(-1 / tau) for j in range(N) if y[j] != y[i])
        gaps.append(math.log(z_dcl) - math.log(z_neg))  # numerators coincide
    assert max(gaps) <= loss_gap_bound(C_, tau)
    assert max(gaps) == pytest.approx(math.log1p((N / C_ - 1) * math.exp(2 / tau) / (N - N / C_)), rel=1e-12)
    assert max(gaps) >= 0.97 * loss_gap_bound(C_, tau)
