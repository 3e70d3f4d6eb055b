"""Sigma-space problem of the adversarial search: the batch model, its touched-entry variables, masks and
losses, and Delta with the Cor. 3 event of a batch.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Eq. 1, Lemmas 1-2,
Sec. 3 (Delta) and Cor. 3 (App. D).

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
from dataclasses import dataclass, field

import numpy as np
import torch

from theory.constants import check_classes, check_positive_int
from theory.constants import delta_from_eps as _delta_from_eps
from theory.losses import contrastive_masks, masked_contrastive_loss

__all__ = [
    "COMPOSITIONS",
    "SIGMAS",
    "SYM_GRADS",
    "IDS",
    "DTYPE",
    "torch_threads",
    "BatchSpec",
    "make_batch",
    "SigmaProblem",
    "build_problem",
    "delta_from_eps",
    "event_eps",
]

COMPOSITIONS = ("distinct", "skewed", "duplicates", "dup-flip", "one-per-class", "random")
SIGMAS = ("ordered", "symmetric")
SYM_GRADS = ("sum", "mean")
IDS = ("position", "sample")
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
