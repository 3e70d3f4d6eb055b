"""Adversarial search for counterexamples to the per-step lemmas (Lemmas 2, 3, 6, 8) in Sigma-space.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", App. D.1-D.4.

For a small batch (B, C, tau, a batch composition) the touched similarity entries x in [-1, 1]^d are the
variables. Every claim is written as LHS / RHS and maximised over x (and x') with L-BFGS-B (box bounds,
analytic gradients by torch autograd through ``theory/losses.py``) from several random restarts:

  L2  ||G(x) - G(x')||_F / ||x - x'||_F  vs  1/(2 tau^2 B)   (pair form, and the local form ||Hessian||_2)
  L3  anchor: ||d loss_a / d s_a||_2 vs sqrt(2)/tau;   batch: ||G(x)||_F vs (1/tau) sqrt(2/B)
  L6  ||p_a - q_a||_1 (and ||.||_2) vs Delta;  mass: 2 alpha_a vs 2 Z_pos/Z_neg
  L8  ||G^CL(x) - G^NSCL(x')||_F vs Delta/(tau sqrt B) + ||x - x'||_F/(2 tau^2 B);  A: the x = x' term alone

Sharper forms (theory.bounds; issue 6):
  L2.hessian_mult   ||step operator||_2 vs kappa m/(2 tau^2 B)   (m = max anchors on one Sigma row)
  L6.l1_sharp / l2_sharp   ||p - q||_1 vs Delta/(1 + Delta/2), ||p - q||_2 (merged coordinates) vs
                    Delta/(sqrt2 (1 + Delta/2))
  L8.A_sharp / full_sharp   L8 with Delta' = lem6_l2_sharp(Delta) and the paper's constants: proved only when
                    every anchor has its own row and kappa = 1 (``paper_premise``); on other batches the
                    record has in_premise = False and the summary reports it as max_ratio_outside_premise
  L8.A_mult / full_mult     kappa (sqrt(q) Delta'/(tau B) + m ||x - x'||_F/(2 tau^2 B)), q = sum_r n_r^2: the
                    form behind theory.bounds.thm1_unrolled_multiplicity, valid for every batch in the event
kappa = 2 for sigma=symmetric with sym_grad=sum, else 1.

G is the Sigma-space step direction of the batch loss (1/B) sum_a loss_a (Eq. 1), Frobenius norms are those
of the similarity MATRIX. A ratio > 1 is a counterexample and is reported as found (never clipped).

Sigma-space batch model (docs/DESIGN.md): items are (sample, view slot) pairs, V = 2 slots. Batch element s
has sample j_s, label y_s and an ordered slot pair (a_s, b_s). Anchor row s = item (j_s, a_s); keys = the 2B
items (j_u, a_u), (j_u, b_u), u = 1..B, minus the anchor's own key (self mask). Positives: keys with the
anchor's id (``ids="position"``: the element's own other view, the paper's single positive x'_i;
``ids="sample"``: every view of the same sample). A key that is the anchor's item itself (a duplicate
element with the same slot) is the diagonal Sigma(i, i): a variable (``diag="free"``, default, as
simulate/step.py, which reads and updates Sigma[rows, keys] including such diagonal entries) or the
constant 1 (``diag="fixed"``, cosine of an item with itself). These conventions (position ids, duplicates
summed onto shared entries, symmetric update G + G^T - Diag G) are those of simulate/step.py.

  sigma="ordered":   one variable per ordered pair (anchor item, key item) (Lemma 1's coordinates);
  sigma="symmetric": one variable per unordered pair; it fills both matrix entries (i,k), (k,i), so
                     ||.||_F of the matrix counts it twice (``mult`` = 2). Step direction per variable:
                     ``sym_grad="sum"`` = dL/dx (gradient descent on the shared entry: both entries move by
                     dL/dSigma_ik + dL/dSigma_ki) or ``sym_grad="mean"`` = dL/dx / 2 (the Frobenius
                     projection (G + G^T)/2 of the ordered gradient onto symmetric matrices).

Delta = 2 e^{2/tau} (1/C + eps)/(1 - 1/C - eps) with eps = ``eps`` (number), eps_{B,delta} (``delta`` +
``steps``) or "auto": the smallest eps >= 0 for which the batch satisfies the Cor. 3 event
(n_c <= B (1/C + eps) for every class c). L6 / L8 are only evaluated on batches inside the event.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize
from tqdm import tqdm

from runio import atomic_write, write_json
from runio.cli import OneLineParser, comma_list, fail, parse_with_config, record
from runio.outdir import OutDirLock
from theory.constants import (
    check_classes,
    check_delta,
    check_nonneg_float,
    check_positive_int,
    check_tau,
    eps_b_delta,
)
from theory.constants import delta_from_eps as _delta_from_eps
from theory.bounds import anchor_row_multiplicity, lem6_l1_sharp, lem6_l2_sharp
from theory.losses import contrastive_masks, masked_contrastive_loss, softmax_mass_split

__all__ = [
    "CLAIMS",
    "COMPOSITIONS",
    "SIGMAS",
    "SYM_GRADS",
    "HOLDS_TOL",
    "BatchSpec",
    "SigmaProblem",
    "ClaimResult",
    "make_batch",
    "build_problem",
    "delta_from_eps",
    "event_eps",
    "claim_objectives",
    "evaluate_objective",
    "maximize_box",
    "search_claim",
    "run_adversarial",
    "reproduce",
    "main",
]

CLAIMS = ("L2", "L3", "L6", "L8")
COMPOSITIONS = ("distinct", "skewed", "duplicates", "dup-flip", "one-per-class", "random")
SIGMAS = ("ordered", "symmetric")
SYM_GRADS = ("sum", "mean")
IDS = ("position", "sample")
HOLDS_TOL = 1e-12  # a ratio <= 1 + HOLDS_TOL counts as "holds" (float64 rounding of an attained bound)
DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------------------
# batches


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op threads (restored on exit); ``None`` leaves them alone.

    The tensors here are tiny (d < 100): on a busy machine multi-threaded LAPACK calls (eigvalsh) are up to
    ~50x slower than single-threaded ones.
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class BatchSpec:
    """A realised batch: per element s, sample id j_s, label y_s, anchor slot a_s and positive slot b_s.

    Shape: every field (B,) integer tuple.
    """

    sample_ids: tuple[int, ...]
    labels: tuple[int, ...]
    anchor_slots: tuple[int, ...]
    pos_slots: tuple[int, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        B = len(self.sample_ids)
        if B < 1 or any(len(f) != B for f in (self.labels, self.anchor_slots, self.pos_slots)):
            raise ValueError(f"BatchSpec fields must all have the same length B >= 1, got B={B}")
        lab: dict[int, int] = {}
        for j, y in zip(self.sample_ids, self.labels):
            if lab.setdefault(j, y) != y:
                raise ValueError(f"sample {j} has two labels {lab[j]} and {y}")
        for a, b in zip(self.anchor_slots, self.pos_slots):
            if a == b or a not in (0, 1) or b not in (0, 1):
                raise ValueError(f"slot pair must be (0, 1) or (1, 0), got ({a}, {b})")

    @property
    def B(self) -> int:
        return len(self.sample_ids)

    def class_counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for y in self.labels:
            out[y] = out.get(y, 0) + 1
        return out


def make_batch(composition: str, B: int, C: int, rng: np.random.Generator | None = None) -> BatchSpec:
    """Preset batch compositions.

    distinct:   B distinct samples, labels round-robin (s mod C), slots (0, 1).
    skewed:     B distinct samples, class 0 holds ceil(B/2) of them, the rest round-robin over the others.
    duplicates: sample j_s = s // 2 (every sample drawn twice, same slots: identical anchor rows).
    dup-flip:   as duplicates, slots (0,1) / (1,0) alternating: one copy's anchor is the other's positive.
    one-per-class: sample j_s = s mod C repeated (one sample per class, balanced, same slots).
    random:     B draws WITH replacement from N = 2C samples (class j mod C), random slot order (``rng``).
    """
    B = check_positive_int("B", B)
    C = check_classes(C)
    if composition == "distinct":
        j = list(range(B))
        y = [s % C for s in range(B)]
        a = [0] * B
    elif composition == "skewed":
        m = max(1, math.ceil(B / 2))
        j = list(range(B))
        y = [0] * m + [1 + (s % (C - 1)) for s in range(B - m)]
        a = [0] * B
    elif composition in ("duplicates", "dup-flip"):
        j = [s // 2 for s in range(B)]
        y = [(s // 2) % C for s in range(B)]
        a = [0] * B if composition == "duplicates" else [s % 2 for s in range(B)]
    elif composition == "one-per-class":
        j = [s % C for s in range(B)]
        y = list(j)
        a = [0] * B
    elif composition == "random":
        if rng is None:
            raise ValueError("composition 'random' needs rng (numpy Generator), got rng=None")
        j = [int(v) for v in rng.integers(0, 2 * C, size=B)]
        y = [v % C for v in j]
        a = [int(v) for v in rng.integers(0, 2, size=B)]
    else:
        raise ValueError(f"composition must be one of {', '.join(COMPOSITIONS)}, got composition={composition!r}")
    return BatchSpec(tuple(j), tuple(y), tuple(a), tuple(1 - v for v in a), composition)


# ----------------------------------------------------------------------------------------------------------
# Sigma-space problem


@dataclass
class SigmaProblem:
    """Touched-entry parameterisation of one batch's CL / NSCL losses.

    coord_index (A, K) long: variable index of sim[a, k], -1 for a fixed diagonal entry (value 1);
    mult (d,): number of matrix entries a variable fills (1 ordered, 2 symmetric off-diagonal);
    coord_items (d, 2): the (row item, column item) of each variable (item = 2 j + slot);
    masks: kind -> (pos_mask, den_mask), from ``theory.losses.contrastive_masks``;
    same_class (A, K): key has the anchor's label.
    """

    batch: BatchSpec
    sigma: str
    sym_grad: str
    ids: str
    diag: str
    coord_index: torch.Tensor
    mult: torch.Tensor
    coord_items: np.ndarray
    masks: dict
    same_class: torch.Tensor
    self_mask: torch.Tensor
    _gather: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def d(self) -> int:
        return int(self.mult.numel())

    @property
    def B(self) -> int:
        return self.batch.B

    def sim(self, x: torch.Tensor) -> torch.Tensor:
        """Similarity logits (A, K) from the variables x (d,)."""
        flat = torch.cat([x, torch.ones(1, dtype=x.dtype)])
        return flat[self._gather]

    def loss(self, kind: str, x: torch.Tensor, tau: float) -> torch.Tensor:
        """Paper's batch loss (1/B) sum_a loss_a (invalid anchors contribute 0)."""
        pos, den = self.masks[kind]
        return masked_contrastive_loss(self.sim(x), pos, den, tau).loss.sum() / self.B

    def step(self, kind: str, x: torch.Tensor, tau: float) -> torch.Tensor:
        """Step direction per variable (Eq. 1): G = dL/dx ("sum" / ordered) or dL/dx / mult ("mean"). Shape: (d,).

        Analytic (Lemmas 2-3): row a of dL/dsim is (p_a - 1_{P_a}/|P_a|)/(tau B) (zero for invalid anchors),
        summed onto the variables; differentiable in x through p. ``step_autograd`` is the reference.
        """
        pos, den = self.masks[kind]
        res = masked_contrastive_loss(self.sim(x), pos, den, tau)
        posf = (pos & res.valid[:, None]).to(x.dtype)
        rows = (res.p - posf / posf.sum(dim=1, keepdim=True).clamp(min=1.0)) / (tau * self.B)
        keep = self.coord_index >= 0
        g = torch.zeros(self.d, dtype=x.dtype).index_add(0, self.coord_index[keep], rows[keep])
        return g / self.mult if self.sym_grad == "mean" else g

    def step_autograd(self, kind: str, x: torch.Tensor, tau: float) -> torch.Tensor:
        """Reference for ``step``: autograd of ``loss`` (no graph kept). Shape: (d,)."""
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.loss(kind, x, tau), x)
        return g / self.mult if self.sym_grad == "mean" else g

    def mat_norm(self, v: torch.Tensor) -> torch.Tensor:
        """Frobenius norm of the matrix whose touched entries are v (each variable fills ``mult`` entries)."""
        return torch.sqrt(torch.sum(self.mult * v * v))

    def hessian(self, kind: str, x: torch.Tensor, tau: float) -> torch.Tensor:
        """Analytic Hessian of the batch loss wrt x (Lemma 2): (1/(B tau^2)) sum_a S_a^T (Diag p_a - p_a p_a^T) S_a.

        S_a maps variables to row a's logits; written as (diag(w) - U^T U)/(B tau^2), w_c = sum of p over the
        positions of variable c, U_a = S_a^T p_a. Shape: (d, d).
        """
        pos, den = self.masks[kind]
        p = masked_contrastive_loss(self.sim(x), pos, den, tau).p  # (A, K), zero off D_a / invalid rows
        idx = self.coord_index
        keep = idx >= 0
        A = p.shape[0]
        rows = torch.arange(A).unsqueeze(1).expand_as(idx)[keep]
        cols = idx[keep]
        vals = p[keep]
        U = torch.zeros(A, self.d, dtype=p.dtype).index_put((rows, cols), vals, accumulate=True)
        w = U.sum(dim=0)
        return (torch.diag(w) - U.T @ U) / (self.B * tau * tau)

    def step_operator(self, kind: str, x: torch.Tensor, tau: float) -> torch.Tensor:
        """Jacobian of the step map in matrix-Frobenius coordinates: D^{1/2} D^{-gamma} H D^{-1/2}, D = diag(mult)."""
        H = self.hessian(kind, x, tau)
        s = torch.sqrt(self.mult)
        M = (s[:, None] * H) / s[None, :]
        if self.sym_grad == "mean":
            M = M / self.mult[:, None]
        return M


def build_problem(
    batch: BatchSpec, sigma: str = "ordered", sym_grad: str = "sum", ids: str = "position", diag: str = "free"
) -> SigmaProblem:
    """Variables, masks and matrix multiplicities of ``batch`` (module docstring)."""
    if sigma not in SIGMAS:
        raise ValueError(f"sigma must be one of {', '.join(SIGMAS)}, got sigma={sigma!r}")
    if sym_grad not in SYM_GRADS:
        raise ValueError(f"sym_grad must be 'sum' or 'mean', got sym_grad={sym_grad!r}")
    if ids not in IDS:
        raise ValueError(f"ids must be 'position' or 'sample', got ids={ids!r}")
    if diag not in ("fixed", "free"):
        raise ValueError(f"diag must be 'fixed' or 'free', got diag={diag!r}")
    B = batch.B
    j = np.asarray(batch.sample_ids)
    a = np.asarray(batch.anchor_slots)
    b = np.asarray(batch.pos_slots)
    y = np.asarray(batch.labels)
    anchor_items = 2 * j + a
    key_items = np.concatenate([2 * j + a, 2 * j + b])
    key_elem = np.concatenate([np.arange(B), np.arange(B)])
    self_mask = np.zeros((B, 2 * B), dtype=bool)
    self_mask[np.arange(B), np.arange(B)] = True
    coord_of: dict[tuple[int, int], int] = {}
    coord_index = np.full((B, 2 * B), -1, dtype=np.int64)
    pairs = []
    for s in range(B):
        for k in range(2 * B):
            if self_mask[s, k]:
                continue
            i, kk = int(anchor_items[s]), int(key_items[k])
            if i == kk and diag == "fixed":
                continue
            key = (i, kk) if sigma == "ordered" else (min(i, kk), max(i, kk))
            if key not in coord_of:
                coord_of[key] = len(pairs)
                pairs.append(key)
            coord_index[s, k] = coord_of[key]
    mult = np.array([1.0 if (sigma == "ordered" or p[0] == p[1]) else 2.0 for p in pairs])
    if ids == "position":
        aid, kid = np.arange(B), key_elem
    else:
        aid, kid = j, j[key_elem]
    t = lambda v: torch.as_tensor(np.asarray(v), dtype=torch.long)  # noqa: E731
    sm = torch.as_tensor(self_mask)
    masks = {
        kind: contrastive_masks(kind, t(aid), t(kid), t(y), t(y[key_elem]), sm) for kind in ("CL", "NSCL")
    }
    ci = torch.as_tensor(coord_index)
    prob = SigmaProblem(
        batch=batch,
        sigma=sigma,
        sym_grad=sym_grad,
        ids=ids,
        diag=diag,
        coord_index=ci,
        mult=torch.as_tensor(mult, dtype=DTYPE),
        coord_items=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        masks=masks,
        same_class=torch.as_tensor(y[:, None] == y[key_elem][None, :]),
        self_mask=sm,
    )
    prob._gather = torch.where(ci >= 0, ci, torch.full_like(ci, len(pairs)))
    return prob


# ----------------------------------------------------------------------------------------------------------
# Delta and the Cor. 3 event


def delta_from_eps(C: int, eps: float, tau: float) -> float:
    """Delta = 2 e^{2/tau} (1/C + eps)/(1 - 1/C - eps) (Sec. 3) at a given eps: theory.constants.delta_from_eps,
    the one implementation behind delta_c_delta; ValueError if eps >= 1 - 1/C."""
    return _delta_from_eps(C, eps, tau)


def event_eps(batch: BatchSpec, C: int) -> float:
    """Smallest eps >= 0 with n_c <= B (1/C + eps) for every class (the batch is inside the Cor. 3 event)."""
    n_max = max(batch.class_counts().values())
    return max(0.0, n_max / batch.B - 1.0 / C)


# ----------------------------------------------------------------------------------------------------------
# objectives


@dataclass(frozen=True)
class Objective:
    """One ratio LHS/RHS to maximise. ``pair``: variables (x, x'); else x only. ``per_anchor``: fn returns
    (A,) ratios, the objective is their max."""

    claim: str
    variant: str
    kind: str
    pair: bool
    per_anchor: bool
    fn: Callable  # (problem, x, xp, tau, Delta) -> (ratio, lhs, rhs) tensors


def _l2_pair(prob, x, xp, tau, Delta, kind):
    diff = prob.step(kind, x, tau) - prob.step(kind, xp, tau)
    lhs = prob.mat_norm(diff) / prob.mat_norm(x - xp)
    rhs = torch.tensor(1.0 / (2 * tau * tau * prob.B), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _l2_hess(prob, x, xp, tau, Delta, kind):
    M = prob.step_operator(kind, x, tau)
    if bool(torch.all(prob.mult == prob.mult[0])):
        lhs = torch.linalg.eigvalsh(M)[-1]  # M = c H is symmetric PSD: spectral norm = top eigenvalue
    else:
        lhs = torch.linalg.matrix_norm(M, ord=2)
    rhs = torch.tensor(1.0 / (2 * tau * tau * prob.B), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _anchor_grads(prob, x, tau, kind):
    """Per-anchor gradients wrt the logit rows, (p_a - 1_{P_a}/|P_a|)/tau, and the valid mask. Shape: (A, K)."""
    pos, den = prob.masks[kind]
    res = masked_contrastive_loss(prob.sim(x), pos, den, tau)
    posf = (pos & res.valid[:, None]).to(DTYPE)
    return (res.p - posf / posf.sum(dim=1, keepdim=True).clamp(min=1.0)) / tau, res.valid


def _l3_anchor(prob, x, xp, tau, Delta, kind):
    g, valid = _anchor_grads(prob, x, tau, kind)
    lhs = torch.where(valid, torch.linalg.vector_norm(g, dim=1), torch.zeros((), dtype=DTYPE))
    rhs = torch.full_like(lhs, math.sqrt(2.0) / tau)
    return lhs / rhs, lhs, rhs


def _l3_batch(prob, x, xp, tau, Delta, kind):
    lhs = prob.mat_norm(prob.step(kind, x, tau))
    rhs = torch.tensor(math.sqrt(2.0 / prob.B) / tau, dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _both_valid(prob) -> torch.Tensor:
    v = [prob.masks[k][0].any(1) & prob.masks[k][1].any(1) for k in ("CL", "NSCL")]
    return v[0] & v[1]


def _l6_norm(prob, x, xp, tau, Delta, ord):
    s = prob.sim(x)
    p = masked_contrastive_loss(s, *prob.masks["CL"], tau).p
    q = masked_contrastive_loss(s, *prob.masks["NSCL"], tau).p
    lhs = torch.where(_both_valid(prob), torch.linalg.vector_norm(p - q, ord=ord, dim=1), torch.zeros((), dtype=DTYPE))
    rhs = torch.full_like(lhs, Delta)
    return lhs / rhs, lhs, rhs


def _l6_mass(prob, x, xp, tau, Delta):
    _, den = prob.masks["CL"]
    ms = softmax_mass_split(prob.sim(x), den, prob.same_class, tau)
    lhs = 2 * ms.alpha
    rhs = 2 * torch.exp(ms.log_z_pos - ms.log_z_neg)
    ok = _both_valid(prob) & (ms.n_pos > 0)
    ratio = torch.where(ok, lhs / torch.where(ok, rhs, torch.ones((), dtype=DTYPE)), torch.zeros((), dtype=DTYPE))
    return ratio, lhs, rhs


def _l8(prob, x, xp, tau, Delta):
    diff = prob.step("CL", x, tau) - prob.step("NSCL", xp, tau)
    lhs = prob.mat_norm(diff)
    rhs = Delta / (tau * math.sqrt(prob.B)) + prob.mat_norm(x - xp) / (2 * tau * tau * prob.B)
    return lhs / rhs, lhs, rhs


def _l8_a(prob, x, xp, tau, Delta):
    lhs = prob.mat_norm(prob.step("CL", x, tau) - prob.step("NSCL", x, tau))
    rhs = torch.tensor(Delta / (tau * math.sqrt(prob.B)), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


def _row_mult(prob) -> tuple[int, int, float]:
    """(m, q, kappa): anchor-row multiplicities of the batch (theory.bounds.anchor_row_multiplicity) and the
    symmetric factor (2 for sigma=symmetric with sym_grad=sum, whose step G + G^T - Diag G has norm <= 2 ||G||;
    1 for ordered and for the Frobenius projection sym_grad=mean)."""
    rows = 2 * np.asarray(prob.batch.sample_ids) + np.asarray(prob.batch.anchor_slots)
    m = anchor_row_multiplicity(rows.astype(np.int64))
    kappa = 2.0 if (prob.sigma == "symmetric" and prob.sym_grad == "sum") else 1.0
    return m.m, m.q, kappa


def paper_premise(prob) -> bool:
    """Premise of the paper's Lem. 8 / Thm. 1 constants (theory.bounds.THM1_PREMISE, batch part): every anchor on
    its own row and no symmetric doubling (kappa = 1)."""
    m, _, kappa = _row_mult(prob)
    return m == 1 and kappa == 1.0


def _l6_sharp(prob, x, xp, tau, Delta, ord):
    """Lem. 6 sharpened (theory.bounds.lem6_l1_sharp / lem6_l2_sharp); l2 on merged coordinates (keys on one
    Sigma entry summed, as in the Sigma-space gradient)."""
    s = prob.sim(x)
    p = masked_contrastive_loss(s, *prob.masks["CL"], tau).p
    q = masked_contrastive_loss(s, *prob.masks["NSCL"], tau).p
    d = p - q
    if ord == 1:
        lhs = d.abs().sum(1)
        rhs_v = lem6_l1_sharp(Delta)
    else:
        merged = torch.zeros(d.shape[0], prob.d + 1, dtype=DTYPE).scatter_add(1, prob._gather, d)
        lhs = torch.linalg.vector_norm(merged, dim=1)
        rhs_v = lem6_l2_sharp(Delta)
    lhs = torch.where(_both_valid(prob), lhs, torch.zeros((), dtype=DTYPE))
    rhs = torch.full_like(lhs, rhs_v)
    return lhs / rhs, lhs, rhs


def _l8_sharp(prob, x, xp, tau, Delta, form, term):
    """Lem. 8 with Delta' = lem6_l2_sharp(Delta): form "paper" (1/(tau sqrt B), 1/(2 tau^2 B); premise m = 1,
    kappa = 1) or "mult" (kappa sqrt(q)/(tau B), kappa m/(2 tau^2 B); theory.bounds.thm1_unrolled_multiplicity).
    term "A": x' = x (reweighting term alone); "full": the pair (x, x')."""
    Ds = lem6_l2_sharp(Delta)
    m, q, kappa = _row_mult(prob)
    B = prob.B
    if form == "paper":
        inj, lip = Ds / (tau * math.sqrt(B)), 1.0 / (2 * tau * tau * B)
    else:
        inj, lip = kappa * math.sqrt(q) * Ds / (tau * B), kappa * m / (2 * tau * tau * B)
    if term == "A":
        lhs = prob.mat_norm(prob.step("CL", x, tau) - prob.step("NSCL", x, tau))
        rhs = torch.tensor(inj, dtype=DTYPE)
    else:
        lhs = prob.mat_norm(prob.step("CL", x, tau) - prob.step("NSCL", xp, tau))
        rhs = inj + lip * prob.mat_norm(x - xp)
    return lhs / rhs, lhs, rhs


def _l2_hess_mult(prob, x, xp, tau, Delta, kind):
    """Lem. 2 with row multiplicities: ||step operator||_2 <= kappa m/(2 tau^2 B)."""
    _, lhs, _ = _l2_hess(prob, x, xp, tau, Delta, kind)
    m, _, kappa = _row_mult(prob)
    rhs = torch.tensor(kappa * m / (2 * tau * tau * prob.B), dtype=DTYPE)
    return lhs / rhs, lhs, rhs


# variants evaluated against the paper's constants with the sharpened Lem. 6; valid only under paper_premise
PAPER_PREMISE_VARIANTS = ("A_sharp", "full_sharp")


def claim_objectives(claim: str, prob: SigmaProblem) -> list[Objective]:
    """The ratio objectives of ``claim``. Per-anchor objectives (``per_anchor``) return one ratio per anchor
    (0 for anchors the claim does not apply to) and are maximised as max over anchors."""
    out: list[Objective] = []

    def bind(f, **kw):
        return lambda p, x, xp, tau, D: f(p, x, xp, tau, D, **kw)

    if claim == "L2":
        for kind in ("CL", "NSCL"):
            out.append(Objective("L2", "hessian", kind, False, False, bind(_l2_hess, kind=kind)))
            out.append(Objective("L2", "pair", kind, True, False, bind(_l2_pair, kind=kind)))
            out.append(Objective("L2", "hessian_mult", kind, False, False, bind(_l2_hess_mult, kind=kind)))
    elif claim == "L3":
        for kind in ("CL", "NSCL"):
            out.append(Objective("L3", "anchor", kind, False, True, bind(_l3_anchor, kind=kind)))
            out.append(Objective("L3", "batch", kind, False, False, bind(_l3_batch, kind=kind)))
    elif claim == "L6":
        out.append(Objective("L6", "l1", "CL-NSCL", False, True, bind(_l6_norm, ord=1)))
        out.append(Objective("L6", "l2", "CL-NSCL", False, True, bind(_l6_norm, ord=2)))
        out.append(Objective("L6", "mass", "CL-NSCL", False, True, _l6_mass))
        out.append(Objective("L6", "l1_sharp", "CL-NSCL", False, True, bind(_l6_sharp, ord=1)))
        out.append(Objective("L6", "l2_sharp", "CL-NSCL", False, True, bind(_l6_sharp, ord=2)))
    elif claim == "L8":
        out.append(Objective("L8", "full", "CL-NSCL", True, False, _l8))
        out.append(Objective("L8", "A", "CL-NSCL", False, False, _l8_a))
        out.append(Objective("L8", "A_sharp", "CL-NSCL", False, False, bind(_l8_sharp, form="paper", term="A")))
        out.append(Objective("L8", "full_sharp", "CL-NSCL", True, False, bind(_l8_sharp, form="paper", term="full")))
        out.append(Objective("L8", "A_mult", "CL-NSCL", False, False, bind(_l8_sharp, form="mult", term="A")))
        out.append(Objective("L8", "full_mult", "CL-NSCL", True, False, bind(_l8_sharp, form="mult", term="full")))
    else:
        raise ValueError(f"claim must be one of {', '.join(CLAIMS)}, got claim={claim!r}")
    return out


def _scalar(obj: "Objective", r: torch.Tensor) -> torch.Tensor:
    return r.max() if obj.per_anchor else r


def evaluate_objective(
    obj: Objective, prob: SigmaProblem, x: np.ndarray, xp: np.ndarray | None, tau: float, Delta: float | None
) -> tuple[float, float, float, int | None]:
    """(ratio, lhs, rhs, anchor) of ``obj`` at x (and x'); per-anchor objectives: at the worst anchor."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    xpt = None if xp is None else torch.as_tensor(np.asarray(xp, dtype=np.float64))
    with torch.no_grad():
        r, lhs, rhs = obj.fn(prob, xt, xpt, tau, Delta)
    if obj.per_anchor:
        a = int(torch.argmax(r))
        return float(r[a]), float(lhs[a]), float(rhs[a]), a
    return float(r), float(lhs), float(rhs), None


# ----------------------------------------------------------------------------------------------------------
# optimiser


def maximize_box(
    fun: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    rng: np.random.Generator,
    restarts: int = 4,
    starts: Sequence[np.ndarray] = (),
    maxiter: int = 200,
) -> tuple[float, np.ndarray]:
    """Maximise a scalar torch function of z in [-1, 1]^dim with L-BFGS-B (autograd gradients).

    Starts: the given ``starts``, then ``restarts`` random ones (alternately uniform in the box and random
    sign vertices shrunk to +-0.9). Non-finite values count as -inf (the point is rejected, never clipped).
    Returns (best value, argmax).
    """
    dim = check_positive_int("dim", dim)

    def f_and_g(z: np.ndarray):
        zt = torch.as_tensor(z, dtype=DTYPE).requires_grad_(True)
        v = fun(zt)
        if not torch.isfinite(v):
            return 1e300, np.zeros_like(z)
        (g,) = torch.autograd.grad(v, zt)
        g = g.detach().numpy()
        if not np.all(np.isfinite(g)):
            g = np.zeros_like(z)
        return -float(v.detach()), -g

    x0s = [np.clip(np.asarray(s, dtype=np.float64), -1, 1) for s in starts]
    for r in range(restarts):
        if r % 2 == 0:
            x0s.append(rng.uniform(-1, 1, size=dim))
        else:
            x0s.append(0.9 * rng.choice([-1.0, 1.0], size=dim))
    best_v, best_z = -math.inf, x0s[0] if x0s else np.zeros(dim)
    for z0 in x0s:
        res = minimize(f_and_g, z0, jac=True, method="L-BFGS-B", bounds=[(-1.0, 1.0)] * dim,
                       options={"maxiter": maxiter, "maxfun": 3 * maxiter})  # fmt: skip
        z = np.clip(res.x, -1.0, 1.0)
        with torch.no_grad():
            v = float(fun(torch.as_tensor(z, dtype=DTYPE)))
        if math.isfinite(v) and v > best_v:
            best_v, best_z = v, z
    return best_v, best_z


@dataclass
class ClaimResult:
    """Largest ratio found for one objective on one problem (JSON-serialisable apart from x / xp)."""

    rid: str
    claim: str
    variant: str
    kind: str
    composition: str
    sigma: str
    sym_grad: str
    ids: str
    diag: str
    B: int
    C: int
    tau: float
    eps: float | None
    Delta: float | None
    anchor: int | None
    ratio: float
    lhs: float
    rhs: float
    holds: bool
    batch: dict
    n_vars: int
    note: str = ""
    x: np.ndarray | None = field(default=None, repr=False)
    xp: np.ndarray | None = field(default=None, repr=False)
    in_premise: bool = True  # False: a form proved only for m = 1 / kappa = 1 (PAPER_PREMISE_VARIANTS) on this batch

    def record(self) -> dict:
        d = asdict(self)
        d.pop("x")
        d.pop("xp")
        return d


def search_claim(
    obj: Objective,
    prob: SigmaProblem,
    tau: float,
    Delta: float | None,
    rng: np.random.Generator,
    restarts: int = 4,
    starts: Sequence[np.ndarray] = (),
    maxiter: int = 200,
    pair_random_starts: int | None = None,
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Maximise ``obj`` over the box; returns (ratio, x, x' or None). ``starts``: extra starting points
    (concatenated (x, x') for pair objectives); pair objectives also start from ``pair_random_starts``
    (default restarts // 2, at least 1) random points x with x' = x + small noise."""
    d = prob.d
    if obj.pair:
        def fun(z):
            x, xp = z[:d], z[d:]
            return _scalar(obj, obj.fn(prob, x, xp, tau, Delta)[0])

        starts = list(starts)
        n_near = max(1, restarts // 2) if pair_random_starts is None else pair_random_starts
        for _ in range(n_near):
            x0 = rng.uniform(-1, 1, size=d)
            starts.append(np.concatenate([x0, np.clip(x0 + 0.05 * rng.standard_normal(d), -1, 1)]))
        v, z = maximize_box(fun, 2 * d, rng, restarts=restarts, starts=starts, maxiter=maxiter)
        return v, z[:d], z[d:]
    fun1 = lambda x: _scalar(obj, obj.fn(prob, x, None, tau, Delta)[0])  # noqa: E731
    v, z = maximize_box(fun1, d, rng, restarts=restarts, starts=starts, maxiter=maxiter)
    return v, z, None


def hessian_pair_start(prob: SigmaProblem, kind: str, x: np.ndarray, tau: float, h: float = 1e-3) -> np.ndarray:
    """(x, x + h v) with v the top right-singular direction of the step operator at x (Lemma 2's local
    worst case), clipped to the box; a starting point for the pair form of L2. Shape: (2 d,)."""
    with torch.no_grad():
        M = prob.step_operator(kind, torch.as_tensor(x, dtype=DTYPE), tau)
        _, _, Vh = torch.linalg.svd(M)
        v = (Vh[0] / torch.sqrt(prob.mult)).numpy()
    xp = np.clip(x + h * v / max(np.abs(v).max(), 1e-300), -1.0, 1.0)
    return np.concatenate([x, xp])


def _resolve_eps(batch: BatchSpec, C: int, eps, delta, steps) -> tuple[float | None, str]:
    """eps for Delta and a note; None if the batch is outside the event for the requested eps."""
    need = event_eps(batch, C)
    if delta is not None:
        e = eps_b_delta(batch.B, steps, check_delta(delta))
    elif eps == "auto" or eps is None:
        e = need
    else:
        e = check_nonneg_float("eps", eps)
    if e >= 1.0 - 1.0 / C:
        return None, f"eps={e:.4g} >= 1 - 1/C: Delta undefined"
    if need > e + 1e-15:
        return None, f"batch outside the Cor. 3 event for eps={e:.4g} (needs eps >= {need:.4g})"
    return e, ""


def run_adversarial(
    claims: Sequence[str] = CLAIMS,
    B: int = 4,
    C: int = 2,
    taus: Sequence[float] = (0.1, 0.5),
    compositions: Sequence[str] = COMPOSITIONS,
    sigmas: Sequence[str] = SIGMAS,
    sym_grad: str = "sum",
    ids: str = "position",
    diag: str = "free",
    eps: float | str | None = "auto",
    delta: float | None = None,
    steps: int = 1,
    restarts: int = 4,
    seed: int = 0,
    out_dir: Path | None = None,
    quiet: bool = False,
    threads: int | None = 1,
) -> list[ClaimResult]:
    """Run every objective of ``claims`` on every (tau, composition, sigma); optionally save results.

    ``threads``: torch intra-op threads during the search (restored afterwards; ``None``: unchanged).

    Writes into ``out_dir``: adversarial.json (config, one record per objective, per-claim summary) and
    adversarial.npz (arrays ``<rid>__x`` and ``<rid>__xp`` of the maximisers).
    """
    for c in claims:
        if c not in CLAIMS:
            raise ValueError(f"claims must be among {', '.join(CLAIMS)}, got {c!r}")
    B = check_positive_int("B", B)
    C = check_classes(C)
    taus = [check_tau(t) for t in taus]
    restarts = check_positive_int("restarts", restarts)
    steps = check_positive_int("steps", steps)
    rng = np.random.default_rng(seed)
    jobs = []
    for tau in taus:
        for comp in compositions:
            batch = make_batch(comp, B, C, rng)
            for sigma in sigmas:
                jobs.append((tau, comp, batch, sigma))
    results: list[ClaimResult] = []
    n = 0
    with torch_threads(threads):
        for tau, comp, batch, sigma in tqdm(jobs, disable=quiet, desc="adversarial"):
            prob = build_problem(batch, sigma=sigma, sym_grad=sym_grad, ids=ids, diag=diag)
            e, note = _resolve_eps(batch, C, eps, delta, steps)
            Delta = None if e is None else delta_from_eps(C, e, tau)
            for claim in claims:
                if claim in ("L6", "L8") and Delta is None:
                    results.append(ClaimResult(
                        f"r{n}", claim, "skipped", "-", comp, sigma, sym_grad, ids, diag, B, C, tau, e, None, None,
                        math.nan, math.nan, math.nan, True, asdict(batch), prob.d, note,
                    ))  # fmt: skip
                    n += 1
                    continue
                hess_x: dict[str, np.ndarray] = {}
                for obj in claim_objectives(claim, prob):
                    if obj.per_anchor and sigma != sigmas[0]:
                        continue  # per-anchor quantities do not depend on the Sigma parameterisation
                    if obj.claim == "L2" and obj.pair:
                        # sup of the pair ratio = sup of the local operator norm (mean value theorem): polish
                        # from the Hessian maximiser (random starts only if there is none)
                        if obj.kind in hess_x:
                            st = [hessian_pair_start(prob, obj.kind, hess_x[obj.kind], tau)]
                            v, x, xp = search_claim(obj, prob, tau, Delta, rng, 0, starts=st, maxiter=30,
                                                    pair_random_starts=0)  # fmt: skip
                        else:
                            v, x, xp = search_claim(obj, prob, tau, Delta, rng, restarts)
                    else:
                        v, x, xp = search_claim(obj, prob, tau, Delta, rng, restarts)
                    if obj.claim == "L2" and obj.variant == "hessian":
                        hess_x[obj.kind] = x
                    r, lhs, rhs, anchor = evaluate_objective(obj, prob, x, xp, tau, Delta)
                    inside = obj.variant not in PAPER_PREMISE_VARIANTS or paper_premise(prob)
                    results.append(ClaimResult(
                        f"r{n}", claim, obj.variant, obj.kind, comp, sigma, sym_grad, ids, diag, B, C, tau, e, Delta,
                        anchor, r, lhs, rhs, bool(r <= 1.0 + HOLDS_TOL), asdict(batch), prob.d,
                        "" if inside else "outside the proved premise (anchors share a row / symmetric sum)", x, xp,
                        inside,
                    ))  # fmt: skip
                    n += 1
    if out_dir is not None:
        save_results(results, Path(out_dir), config=dict(
            claims=list(claims), B=B, C=C, taus=taus, compositions=list(compositions), sigmas=list(sigmas),
            sym_grad=sym_grad, ids=ids, diag=diag, eps=eps, delta=delta, steps=steps, restarts=restarts,
            seed=seed,
        ))  # fmt: skip
    return results


def summarize(results: Sequence[ClaimResult]) -> list[dict]:
    """Per claim and variant ("L3.batch", ...): the record with the largest ratio, and whether all held."""
    out = []
    keys = []
    for r in results:
        k = (r.claim, r.variant)
        if r.variant != "skipped" and k not in keys:
            keys.append(k)
    keys.sort(key=lambda k: CLAIMS.index(k[0]))
    for claim, variant in keys:
        rs = [r for r in results if (r.claim, r.variant) == (claim, variant) and math.isfinite(r.ratio)]
        if not rs:
            continue
        inside = [r for r in rs if getattr(r, "in_premise", True)]
        if not inside:  # only batches outside the proved premise: report the worst there, holds = n/a
            best = max(rs, key=lambda r: r.ratio)
            out.append({"claim": f"{claim}.{variant}", "max_ratio": math.nan, "rid": best.rid, "holds": None,
                        "max_ratio_outside_premise": best.ratio,
                        "at": f"outside premise: {best.kind} {best.composition} {best.sigma} tau={best.tau:g}"})
            continue
        best = max(inside, key=lambda r: r.ratio)
        at = f"{best.kind} {best.composition} {best.sigma} tau={best.tau:g}"
        if best.anchor is not None:
            at += f" anchor={best.anchor}"
        row = {"claim": f"{claim}.{variant}", "max_ratio": best.ratio, "at": at,
               "holds": all(r.holds for r in inside), "rid": best.rid}
        outside = [r for r in rs if not getattr(r, "in_premise", True)]
        if outside:  # e.g. Lem. 8 with the paper's constants on batches whose anchors share a row
            row["max_ratio_outside_premise"] = max(r.ratio for r in outside)
        out.append(row)
    for claim in CLAIMS:  # claims never evaluated (every batch outside the Cor. 3 event): say why
        rs = [r for r in results if r.claim == claim]
        if rs and all(r.variant == "skipped" for r in rs):
            out.append({"claim": claim, "max_ratio": math.nan, "at": f"skipped: {rs[0].note}", "holds": None,
                        "rid": rs[0].rid})  # fmt: skip
    return out


def save_results(results: Sequence[ClaimResult], out_dir: Path, config: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for r in results:
        if r.x is not None:
            arrays[f"{r.rid}__x"] = r.x
        if r.xp is not None:
            arrays[f"{r.rid}__xp"] = r.xp
    atomic_write(out_dir / "adversarial.npz", lambda f: np.savez(f, **arrays))
    doc = {"config": config, "summary": summarize(results), "records": [r.record() for r in results]}
    # NaN / Infinity literals (not strings): reproduce() reads ratios and Delta back as floats
    write_json(out_dir / "adversarial.json", doc, nonfinite="literal", indent=1, default=float)


def reproduce(record: dict, arrays: dict) -> tuple[float, float, float, int | None]:
    """Recompute (ratio, lhs, rhs, anchor) of a saved record from its batch, options and the saved maximiser."""
    batch = BatchSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["batch"].items()})
    prob = build_problem(batch, record["sigma"], record["sym_grad"], record["ids"], record.get("diag", "free"))
    objs = [o for o in claim_objectives(record["claim"], prob)
            if o.variant == record["variant"] and o.kind == record["kind"]]  # fmt: skip
    if len(objs) != 1:
        raise ValueError(f"record {record['rid']} does not identify one objective")
    rid = record["rid"]
    x = arrays[f"{rid}__x"]
    xp = arrays[f"{rid}__xp"] if f"{rid}__xp" in arrays else None
    return evaluate_objective(objs[0], prob, x, xp, record["tau"], record["Delta"])


# ----------------------------------------------------------------------------------------------------------
# CLI


def _list(s: str, conv=str) -> list:
    return [conv(v) for v in s.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulate.adversarial``: maximise LHS/RHS of Lemmas 2, 3, 6, 8 over bounded similarities."""
    ap = OneLineParser(prog="python -m simulate.adversarial", description=main.__doc__)
    ap.add_argument("--claims", default="L2,L3,L6,L8", help="comma list of claims to maximise LHS/RHS of")
    ap.add_argument("--batch-size", type=int, default=4, help="B")
    ap.add_argument("--classes", type=int, default=2, help="C")
    ap.add_argument("--tau", default="0.1,0.5", help="comma list")
    ap.add_argument("--compositions", default=",".join(COMPOSITIONS), help="comma list of batch compositions")
    ap.add_argument("--sigma", default="ordered,symmetric", help="comma list of Sigma parameterisations")
    ap.add_argument("--sym-grad", default="sum", choices=SYM_GRADS, help="symmetric gradient convention")
    ap.add_argument("--ids", default="position", choices=IDS, help="positive = own other view (position) or any view of the sample")
    ap.add_argument("--diag", default="free", choices=("fixed", "free"), help="Sigma(i,i) a variable (free) or the constant 1")
    ap.add_argument("--eps", default="auto", help="'auto' (smallest eps for which the batch is in the event) or a number")
    ap.add_argument("--delta", type=float, default=None, help="use eps = eps_{B,delta} with --steps (overrides --eps) (default: none)")
    ap.add_argument("--steps", type=int, default=1, help="T in eps_{B,delta}")
    ap.add_argument("--restarts", type=int, default=4, help="random restarts per search (default: 4)")
    ap.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    ap.add_argument("--out", default="runs/adversarial", help="output folder (adversarial.json, adversarial.npz); '': none")
    ap.add_argument("--quiet", action="store_true")
    args = parse_with_config(ap, argv)
    lock = None
    try:
        eps = args.eps if args.eps == "auto" else comma_list(args.eps, float, "eps")[0]
        out_dir = Path(args.out) if args.out else None
        if out_dir is not None:  # checked and locked before the search; nothing is left if it fails
            lock = OutDirLock(out_dir).acquire()
        t0 = time.time()
        res = run_adversarial(
            claims=_list(args.claims), B=args.batch_size, C=args.classes, taus=comma_list(args.tau, float, "tau"),
            compositions=_list(args.compositions), sigmas=_list(args.sigma), sym_grad=args.sym_grad,
            ids=args.ids, diag=args.diag, eps=eps, delta=args.delta, steps=args.steps,
            restarts=args.restarts, seed=args.seed, out_dir=out_dir, quiet=args.quiet,
        )  # fmt: skip
        if out_dir is not None:  # the run record: python -m simulate.adversarial --config OUT/config.json
            write_json(out_dir / "config.json", record(args, exclude=("config", "out", "quiet"),
                                                       command_line=[ap.prog, *(sys.argv[1:] if argv is None else argv)]))
    except ValueError as e:
        return fail(ap.prog, e)
    finally:
        if lock is not None:
            lock.release()
    print(f"{'claim':<15}| {'max ratio':>10} | {'at':<46} | holds | outside premise")
    for s in summarize(res):
        holds = "n/a" if s["holds"] is None else s["holds"]
        out = s.get("max_ratio_outside_premise")
        print(f"{s['claim']:<15}| {s['max_ratio']:>10.4f} | {s['at']:<46} | {holds!s:<5} | "
              + ("-" if out is None else f"{out:.4f}"))
    if not args.quiet:
        print(f"({len(res)} objectives, {time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
