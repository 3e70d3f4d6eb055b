"""Sigma-space surrogate of Eq. 1: coupled CL / NSCL similarity descent from one Sigma_0, run exactly.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 4.1 (Eq. 1,
Thm. 1, Cors. 1-2) and App. D (Lemmas 1-8). The claims are checked step by step in ``simulate/checks.py``.

Items, batches, and the update
------------------------------
A reference set of N samples in C balanced classes; each sample j has V view slots, item (j, v) = j V + v,
and Sigma is the (N V) x (N V) similarity matrix of the items. At step t (shared by the two runs):

  * the *batch generator* draws B sample indices j_1..j_B, and the *augmentation generator* draws for each
    batch position s an ordered pair of distinct view slots (a_s, b_s) (its two "augmentations");
  * anchors: rows r_s = (j_s, a_s), s = 1..B (B anchors, as the paper's batch loss, 1/B);
    keys: the 2B items (j_u, a_u), (j_u, b_u), u = 1..B; key id = batch position u, key label = y_{j_u};
    the anchor's own key (column s) is self-masked; its positive is the other view (j_s, b_s) (same id).
    A duplicate draw of the same sample at u != s is a same-class key with a different id (never a
    positive): it sits in the CL denominator and is removed from the NSCL one.
  * the per-anchor loss of o in {CL, NSCL} reads sim^o = Sigma^o[rows, keys] (B x 2B); its gradient wrt Sigma
    is G^o = (1/B) sum_s g_s with g_s = (p_s - e_pos(s))/tau on row r_s (theory.losses, Lemmas 2-3), entries
    read twice by the loss (duplicate keys / anchors) *summed* (chain rule); Sigma^o <- Sigma^o - eta_t G^o.

How a step is computed (the same numbers, to rounding; tests/test_simulate.py checks both ways): the touched
entries are the block Sigma[ur][:, uc] of the R unique anchor rows and K unique key columns; it is gathered
once per run (one flat index_select), and the gradient is formed directly on it: anchors sharing a row share
their denominator (cols[s] = rows[s]), and a column holding m keys of D_s enters their softmax m times, so
every unique row needs ONE softmax of x_rc + log m(r, c) over the K columns (theory.losses.
contrastive_softmax_prepared with a multiset bias, Geometry.bprep_cl / bprep_ns), and
G[r] = (n_r/B) (p_r - pos_r/n_r)/tau (n_r anchors on row r; theory.losses.contrastive_grad_from_softmax).
The update blk - eta G is formed in one pass from p and written back with one index_copy_ per run. The
(B, 2B) logits, per-anchor gradients and their scatter (Geometry.sigma_grad) are computed only on request
(checks of the symmetric parameterisation, tests). What bounds a step at large N: reading and writing the two
R x K blocks scattered over 2 x (N V)^2 doubles (memory traffic; benchmarks/bench_sigma.py measures this floor).

Modelling options (CLI flag; default and why)
---------------------------------------------
  views       ``slots`` (default): V >= 2 view slots per sample, the positive is a different item
              (x' != x, as in SimCLR); ``identity``: V = 1, x' = x, so the positive logit is the diagonal
              Sigma(i, i) and every key appears twice (both "views" of a sample are the same item).
  view_slots  V (default 2: the two SimCLR views; V > 2 gives fresh view pairs across steps).
  sigma       ``ordered`` (default): every ordered pair (i, k) is its own coordinate, the setting in which
              Lem. 1 (disjoint anchor blocks) is stated; ``symmetric``: Sigma is a symmetric parameter,
              the update is the gradient wrt it, G + G^T - Diag(G) (off-diagonal: G_ik + G_ki; the diagonal
              is one coordinate), which couples anchor blocks (Lem. 1 fails by construction).
  replacement batches drawn with replacement (default; the paper's protocol, Sec. 3 / App. B) or without
              (distinct samples within a batch; no duplicate anchors).
  project     ``clip`` (default): touched entries projected onto [-1, 1] after each step. Sec. 4.1 declares
              Sigma_t in [-1, 1]^{N x N} (cosines), and Lemmas 4, 6, 8 and Thm. 1 need bounded logits; Eq. 1
              alone leaves the box (measured: within 1-8 steps at eta = 2 in the previous default regime, after
              103 steps in the default regime below), after which those claims are evaluated outside their
              premise. Clipping is the Euclidean projection onto a convex box, hence non-expansive
              (||P(a) - P(b)|| <= ||a - b||), so the Thm. 1 recurrence D_{t+1} <= (1 + eta L) D_t + eta Delta/(tau
              sqrt B) still holds for the projected runs. ``none``: Eq. 1 exactly (Sigma may leave [-1, 1]).
  eta         constant (default DEFAULT_ETA = 16, see below), ``cosine`` schedule eta (1 + cos(pi t / T)) / 2,
              or a ``.npy`` file of T sizes.

Default regime (simulate/sigma_descent.py documents the measured numbers): N = 1000, C = 100, V = 2 (M = 2000
items), B = 512, tau = 2, eta = 16, T = 200, delta = 0.05, aug_noise = 2, clip. Large tau and B keep
Delta_{C,delta} = 0.81 small enough that the Thm. 1 / Cor. 1-2 certificates are NOT vacuous (rho = 0.48 at
T), while Sigma moves by 13% (CKA(Sigma_0, Sigma_T) = 0.992). The previous default regime is
``--n 500 --classes 10 --batch-size 64 --tau 0.5 --eta 2 --steps 1000 --aug-noise 0.5 --project none
--eval-every 100`` (there Delta = 83 and every certificate is vacuous).

Sigma_0: class-structured random unit embeddings (class means of norm ``separation`` plus isotropic noise,
normalised; ``separation = 0``: no class structure), view slot v = normalise(x_j + aug_noise * xi_jv) (default
aug_noise 2: the two views start at cosine ~0.2, leaving room for the positives to move before the clip at 1),
and Sigma_0 = cosine Gram of the N V items (diagonal set to exactly 1, entries clipped to [-1, 1] against
rounding), or loaded from ``init_path`` (.npy, (N, d) or (N, V, d)) with labels from ``labels_path``.

Incremental drift: ||Sigma^CL - Sigma^NSCL||_F^2 is updated with the touched entries only (old squares out,
new squares in); ``full_drift`` recomputes it (tests; evals.csv ``drift_full``).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import runio

from theory.constants import (
    check_classes,
    check_delta,
    check_eta_schedule,
    check_nonneg_float,
    check_positive_int,
    check_tau,
    delta_c_delta,
    eps_b_delta,
)
from theory.losses import (
    MaskedSoftmax,
    PreparedMasks,
    contrastive_grad_from_softmax,
    contrastive_grad_prepared,
    contrastive_softmax_prepared,
)

__all__ = [
    "VIEWS",
    "SIGMA_MODES",
    "PROJECTIONS",
    "ETA_SCHEDULES",
    "DEFAULT_ETA",
    "SigmaConfig",
    "SigmaResult",
    "NonFiniteError",
    "Reference",
    "Batch",
    "Geometry",
    "StepTensors",
    "CoupledState",
    "derive_seeds",
    "validate_config",
    "eta_values",
    "theory_constants",
    "make_reference",
    "draw_batch",
    "batch_items",
    "build_geometry",
    "compute_step",
    "apply_step",
    "full_drift",
    "RunContext",
    "advance",
    "load_checkpoint",
    "run_sigma_descent",
]

VIEWS = ("slots", "identity")
SIGMA_MODES = ("ordered", "symmetric")
PROJECTIONS = ("none", "clip")
ETA_SCHEDULES = ("constant", "cosine")
# Default step size of the default regime (see the module docstring): Sum eta = 3200 keeps the Thm. 1 certificate
# non-vacuous (rho = 0.48) while Sigma moves by 13% (CKA(Sigma_0, Sigma_T) = 0.992).
DEFAULT_ETA = 16.0

# fields that define the dynamics (a checkpoint can only be resumed with the same values)
_RUN_ONLY_FIELDS = ("checkpoint_every", "stop_after", "save_sigma", "plot")


class NonFiniteError(ValueError):
    """A loss gradient or Sigma became NaN / inf; the message names the step."""


# ----------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class SigmaConfig:
    """All options of a coupled Sigma-space run (see the module docstring for the modelling choices)."""

    n: int = 1000
    classes: int = 100
    batch_size: int = 512
    tau: float = 2.0
    eta: float | list = DEFAULT_ETA
    eta_schedule: str = "constant"  # constant | cosine | path/to/eta.npy (T step sizes)
    steps: int = 200
    delta: float = 0.05
    views: str = "slots"
    view_slots: int = 2
    sigma: str = "ordered"
    replacement: bool = True
    project: str = "clip"
    separation: float = 1.0
    embed_dim: int = 64
    aug_noise: float = 2.0
    init_path: str | None = None
    labels_path: str | None = None
    init_seed: int = 0
    batch_seed: int = 1
    aug_seed: int = 2
    checks: bool = True
    eval_every: int = 50
    lemma5_trials: int = 200
    checkpoint_every: int = 0
    stop_after: int | None = None
    save_sigma: bool = False
    plot: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "SigmaConfig":
        return runio.dataclass_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


def derive_seeds(seed: int) -> tuple[int, int, int]:
    """(init_seed, batch_seed, aug_seed) derived from one seed (numpy SeedSequence; independent streams)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got seed={seed!r}")
    s = np.random.SeedSequence(int(seed)).generate_state(3, dtype=np.uint32)
    return int(s[0]), int(s[1]), int(s[2])


def _check_choice(name: str, value: object, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {name}={value!r}")
    return value  # type: ignore[return-value]


def _check_seed(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {name}={value!r}")
    return int(value)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {name}={value!r}")
    return bool(value)


def _check_nonneg_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {name}={value!r}")
    return int(value)


def validate_config(cfg: SigmaConfig) -> None:
    """Raise a one-line ValueError for the first bad option (validators of theory/constants.py)."""
    if cfg.init_path is None:
        n = check_positive_int("n", cfg.n)
        C = check_classes(cfg.classes)
        if n % C != 0:
            raise ValueError(f"n must be divisible by classes (balanced classes), got n={n}, classes={C}")
        if cfg.labels_path is not None:
            raise ValueError("labels_path needs init_path (labels of loaded embeddings), got init_path=None")
    else:
        if cfg.labels_path is None:
            raise ValueError("init_path needs labels_path (.npy of N labels), got labels_path=None")
    B = check_positive_int("batch_size", cfg.batch_size)
    if B < 2:
        raise ValueError(f"batch_size must be >= 2 (an anchor needs other batch samples), got batch_size={B}")
    check_tau(cfg.tau)
    check_delta(cfg.delta)
    T = check_positive_int("steps", cfg.steps)
    _check_choice("views", cfg.views, VIEWS)
    _check_choice("sigma", cfg.sigma, SIGMA_MODES)
    _check_choice("project", cfg.project, PROJECTIONS)
    V = check_positive_int("view_slots", cfg.view_slots)
    if cfg.views == "slots" and V < 2:
        raise ValueError(f"view_slots must be >= 2 with views=slots (two distinct views), got view_slots={V}")
    _check_bool("replacement", cfg.replacement)
    if not cfg.replacement and cfg.init_path is None and B > cfg.n:
        raise ValueError(f"batch_size must be <= n without replacement, got batch_size={B}, n={cfg.n}")
    check_nonneg_float("separation", cfg.separation)
    check_positive_int("embed_dim", cfg.embed_dim)
    check_nonneg_float("aug_noise", cfg.aug_noise)
    for name in ("init_seed", "batch_seed", "aug_seed"):
        _check_seed(name, getattr(cfg, name))
    _check_bool("checks", cfg.checks)
    _check_nonneg_int("eval_every", cfg.eval_every)
    _check_nonneg_int("lemma5_trials", cfg.lemma5_trials)
    _check_nonneg_int("checkpoint_every", cfg.checkpoint_every)
    if cfg.stop_after is not None:
        s = check_positive_int("stop_after", cfg.stop_after)
        if s >= T:
            raise ValueError(f"stop_after must be < steps, got stop_after={s}, steps={T}")
    _check_bool("save_sigma", cfg.save_sigma)
    _check_bool("plot", cfg.plot)
    eta_values(cfg)


def eta_values(cfg: SigmaConfig) -> np.ndarray:
    """The step sizes eta_0..eta_{T-1} (float64, finite, >= 0). Shape: (T,)."""
    T = check_positive_int("steps", cfg.steps)
    sched = cfg.eta_schedule
    if isinstance(cfg.eta, (list, tuple, np.ndarray)):
        if sched != "constant":
            raise ValueError(f"eta given as a list needs eta_schedule=constant, got eta_schedule={sched!r}")
        return check_eta_schedule(list(cfg.eta), T)
    if isinstance(cfg.eta, bool) or not isinstance(cfg.eta, (int, float, np.floating, np.integer)):
        raise ValueError(f"eta must be a number >= 0 or a list of T numbers, got eta={cfg.eta!r}")
    eta = float(cfg.eta)
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0, got eta={cfg.eta!r}")
    if sched == "constant":
        return np.full(T, eta, dtype=np.float64)
    if sched == "cosine":
        t = np.arange(T, dtype=np.float64)
        return eta * 0.5 * (1.0 + np.cos(np.pi * t / T))
    if isinstance(sched, str) and sched.endswith(".npy"):
        if not os.path.isfile(sched):
            raise ValueError(f"eta_schedule file not found: {sched}")
        arr = np.load(sched, allow_pickle=False)
        return check_eta_schedule(np.asarray(arr, dtype=np.float64).reshape(-1) if arr.ndim == 1 else arr, T)
    raise ValueError(f"eta_schedule must be constant, cosine or a .npy file, got eta_schedule={sched!r}")


def theory_constants(C: int, B: int, T: int, delta: float, tau: float) -> dict:
    """eps_{B,delta}, Delta_{C,delta}(B; tau) (inf + note when undefined), L = 1/(2 tau^2 B), Delta/(tau sqrt B)."""
    eps = eps_b_delta(B, T, delta)
    try:
        Delta = delta_c_delta(C, B, T, delta, tau)
        note = ""
    except ValueError as e:  # eps >= 1 - 1/C: the paper's constant is undefined -> bounds vacuous
        Delta = math.inf
        note = str(e)
    return {
        "eps": eps,
        "Delta": Delta,
        "Delta_note": note,
        "lipschitz": 1.0 / (2.0 * tau * tau * B),
        "inject": Delta / (tau * math.sqrt(B)),
        "frac_bound": 1.0 - 1.0 / C - eps,
    }


# ----------------------------------------------------------------------------------------------------------
# reference set and Sigma_0


@dataclass
class Reference:
    """Reference set: Sigma_0 over the N V items and the sample labels.

    Shape: sigma0 (N V, N V) float64; labels (N,) long; item labels = labels repeated V times.
    """

    sigma0: Tensor
    labels: Tensor
    views: int
    classes: int
    balanced: bool
    source: str

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def item_labels(self) -> Tensor:
        return self.labels.repeat_interleave(self.views)


def _gram(X: Tensor) -> Tensor:
    """Cosine Gram of unit rows: exactly symmetric (X X^T is not, bitwise, from BLAS), diagonal exactly 1,
    clipped to [-1, 1] (rounding of unit vectors)."""
    S = X @ X.T
    S = 0.5 * (S + S.T)
    S.clamp_(-1.0, 1.0)
    S.fill_diagonal_(1.0)
    return S


def _normalise(X: Tensor, what: str) -> Tensor:
    nrm = torch.linalg.vector_norm(X, dim=-1, keepdim=True)
    if bool((nrm == 0).any()) or not bool(torch.isfinite(X).all()):
        raise ValueError(f"{what} has a zero or non-finite row (cosine undefined)")
    return X / nrm


def make_reference(cfg: SigmaConfig) -> Reference:
    """Sigma_0 and labels: synthetic class-structured embeddings or loaded ``init_path`` / ``labels_path``."""
    V = 1 if cfg.views == "identity" else cfg.view_slots
    if cfg.init_path is not None:
        return _load_reference(cfg)
    gen = torch.Generator().manual_seed(int(cfg.init_seed))
    N, C, d = cfg.n, cfg.classes, cfg.embed_dim
    labels = torch.arange(N) // (N // C)  # class blocks of N / C samples
    means = _normalise(torch.randn(C, d, generator=gen, dtype=torch.float64), "class means") * cfg.separation
    noise = torch.randn(N, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    x = _normalise(means[labels] + noise, "embeddings")
    if cfg.views == "identity":
        items = x
    else:
        xi = torch.randn(N, V, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
        items = _normalise(x[:, None, :] + cfg.aug_noise * xi, "view embeddings").reshape(N * V, d)
    return Reference(_gram(items), labels, V, C, True, "synthetic")


def _load_reference(cfg: SigmaConfig) -> Reference:
    for name, p in (("init_path", cfg.init_path), ("labels_path", cfg.labels_path)):
        if not os.path.isfile(str(p)):
            raise ValueError(f"{name} file not found: {p}")
    try:
        E = np.load(cfg.init_path, allow_pickle=False)
        y = np.load(cfg.labels_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read .npy file: {e}".splitlines()[0]) from None
    if E.ndim not in (2, 3) or not np.issubdtype(E.dtype, np.number):
        raise ValueError(f"init_path must hold an (N, d) or (N, V, d) numeric array, got shape {E.shape}")
    N = E.shape[0]
    if y.ndim != 1 or y.shape[0] != N or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels_path must hold ({N},) integer labels, got shape {y.shape} dtype {y.dtype}")
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    C = check_classes(int(counts.size))
    labels = torch.as_tensor(inv.reshape(-1), dtype=torch.long)
    Et = torch.as_tensor(np.asarray(E, dtype=np.float64))
    if Et.dim() == 3:
        if cfg.views == "identity":
            raise ValueError(f"views=identity needs (N, d) embeddings, got shape {tuple(E.shape)}")
        V = Et.shape[1]
        if V < 2:
            raise ValueError(f"(N, V, d) embeddings need V >= 2 view slots, got V={V}")
        items = _normalise(Et, "embeddings").reshape(N * V, -1)
    else:
        x = _normalise(Et, "embeddings")
        if cfg.views == "identity":
            V, items = 1, x
        else:
            V = cfg.view_slots
            gen = torch.Generator().manual_seed(int(cfg.init_seed))
            d = x.shape[1]
            xi = torch.randn(N, V, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
            items = _normalise(x[:, None, :] + cfg.aug_noise * xi, "view embeddings").reshape(N * V, d)
    return Reference(_gram(items), labels, V, C, bool(np.all(counts == counts[0])), str(cfg.init_path))


# ----------------------------------------------------------------------------------------------------------
# batches and their geometry


@dataclass
class Batch:
    """One step's shared randomness. Shape: samples, anchor_slot, pos_slot (B,) long."""

    samples: Tensor
    anchor_slot: Tensor
    pos_slot: Tensor


def draw_batch(
    N: int, B: int, V: int, replacement: bool, batch_gen: torch.Generator, aug_gen: torch.Generator
) -> Batch:
    """B sample indices (batch generator) and per position an ordered pair of distinct slots (aug generator).

    V = 1 (views=identity): both slots are 0 and the augmentation generator is not used.
    """
    if replacement:
        samples = torch.randint(N, (B,), generator=batch_gen)
    else:
        samples = torch.randperm(N, generator=batch_gen)[:B]
    if V == 1:
        z = torch.zeros(B, dtype=torch.long)
        return Batch(samples, z, z.clone())
    a = torch.randint(V, (B,), generator=aug_gen)
    off = torch.randint(V - 1, (B,), generator=aug_gen)
    return Batch(samples, a, (a + 1 + off) % V)


def batch_items(batch: Batch, V: int) -> tuple[Tensor, Tensor]:
    """(rows, cols): anchor items (j_s, a_s) (B,) and key items [(j_u, a_u); (j_u, b_u)] (2B,)."""
    first = batch.samples * V + batch.anchor_slot
    second = batch.samples * V + batch.pos_slot
    return first, torch.cat([first, second])


class Geometry:
    """Index bookkeeping of one step (shared by both runs and the checks).

    rows (B,) anchor items; cols (2B,) key items; ur (R,) / uc (K,) sorted unique rows / cols with inverse maps
    row_inv (B,), col_inv (2B,); the rows are a subset of the cols (the anchor is its own self-masked key).
    The touched block is Sigma[block_rows][:, uc]: block_rows = ur (ordered) or uc (symmetric: the update
    G + G^T also touches the transpose). anchor_block_row (B,) = row of each anchor within the block;
    lin (R K,) = flat indices of the block in the (M, M) matrix; flat_rc (2 B^2,) = flat index of each (anchor,
    key) logit within the block (its gather index and its scatter index).

    Computed on first use (cached): the block-level data of the hot path (own_c, cnt, n_r, row_scale, lab_r,
    lab_c, other_blk_f, lone_own, and the multiset PreparedMasks bprep_cl / bprep_ns of the (R, K) anchor rows);
    the (B, 2B) bool masks of theory.losses.contrastive_masks (same_class, pos_cl, den_cl, pos_ns, den_ns) and
    their PreparedMasks (prep_cl, prep_ns); the coalescing plan of the (B, 2B) scatter (ordered Sigma).
    """

    def __init__(self, B: int, M: int, symmetric: bool, rows: Tensor, cols: Tensor, anchor_labels: Tensor,
                 key_labels: Tensor, ur: Tensor, row_inv: Tensor, uc: Tensor, col_inv: Tensor):
        self.B, self.M, self.symmetric = int(B), int(M), bool(symmetric)
        self.rows, self.cols = rows, cols
        self.anchor_labels, self.key_labels = anchor_labels, key_labels
        self.ur, self.row_inv, self.uc, self.col_inv = ur, row_inv, uc, col_inv
        if symmetric:
            self.block_rows = uc
            self.anchor_block_row = col_inv[:B]  # the anchor item is key s
        else:
            self.block_rows = ur
            self.anchor_block_row = row_inv
        self.lin = (self.block_rows[:, None] * M + uc[None, :]).reshape(-1)

    @functools.cached_property
    def flat_rc(self) -> Tensor:
        """(2 B^2,) flat index of each (anchor, key) logit within the block."""
        return (self.anchor_block_row[:, None] * int(self.uc.shape[0]) + self.col_inv[None, :]).reshape(-1)

    @property
    def block_shape(self) -> tuple[int, int]:
        return int(self.block_rows.shape[0]), int(self.uc.shape[0])

    # -- masks (theory.losses conventions: key k < B is anchor k itself, key B + s its positive; ids = positions)
    @functools.cached_property
    def _ar(self) -> Tensor:
        return torch.arange(self.B)

    @functools.cached_property
    def same_class(self) -> Tensor:
        """(B, 2B) bool: key has the anchor's label (the anchor itself included)."""
        return self.anchor_labels[:, None] == self.key_labels[None, :]

    @functools.cached_property
    def pos_cl(self) -> Tensor:
        """(B, 2B) bool: the positive key B + s of anchor s (same id, not the anchor itself); CL and NSCL."""
        pos = torch.zeros(self.B, 2 * self.B, dtype=torch.bool)
        pos[self._ar, self.B + self._ar] = True
        return pos

    @property
    def pos_ns(self) -> Tensor:
        return self.pos_cl

    @functools.cached_property
    def den_cl(self) -> Tensor:
        """(B, 2B) bool: every key but the anchor itself (the paper's CL denominator)."""
        den = torch.ones(self.B, 2 * self.B, dtype=torch.bool)
        den[self._ar, self._ar] = False
        return den

    @functools.cached_property
    def den_ns(self) -> Tensor:
        """(B, 2B) bool: keys with a different label (NSCL denominator, Sec. 3)."""
        return ~self.same_class

    @functools.cached_property
    def prep_cl(self) -> PreparedMasks:
        """PreparedMasks of (pos_cl, den_cl), built from the structure (equal to theory.losses.prepare_masks)."""
        B, ar = self.B, self._ar
        bias = torch.zeros(B, 2 * B, dtype=torch.float64)
        bias[ar, ar] = -math.inf
        ones = torch.ones(B, dtype=torch.float64)
        n_den = torch.full((B,), 2 * B - 1, dtype=torch.long)
        return PreparedMasks(self.pos_cl, self.den_cl, bias, ar, B + ar, ones, torch.ones(B, dtype=torch.bool),
                             ar[:0], torch.ones(B, dtype=torch.long), n_den)

    @functools.cached_property
    def prep_ns(self) -> PreparedMasks:
        """PreparedMasks of (pos_ns, den_ns); anchors without a negative are invalid (zero rows)."""
        B, ar = self.B, self._ar
        bias = torch.zeros(B, 2 * B, dtype=torch.float64).masked_fill_(self.same_class, -math.inf)
        n_den = 2 * B - self.same_class.sum(dim=1)
        valid = n_den > 0
        keep = ar[valid]
        return PreparedMasks(self.pos_ns, self.den_ns, bias, keep, B + keep, torch.ones(keep.shape[0], dtype=torch.float64),
                             valid, ar[~valid], torch.ones(B, dtype=torch.long), n_den)

    # -- the step on the block (the hot path): one softmax row per unique anchor row over the unique key columns.
    # Anchor s on row r reads the keys of its denominator D_s; a column c holding m keys of D_s enters its
    # softmax m times, so the per-key softmax over D_s is the softmax of x_rc + log m(r, c) over the columns
    # (anchors sharing a row share D, as cols[s] = rows[s]). The anchors of row r add up to the block gradient
    # U[r] = (1/(B tau)) (n_r p_r - sum_{s on r} e_{pos(s)}) = (n_r / B) (p_r - pos_r/|P_r|)/tau.
    @property
    def R(self) -> int:
        return int(self.ur.shape[0])

    @property
    def K(self) -> int:
        return int(self.uc.shape[0])

    @functools.cached_property
    def own_c(self) -> Tensor:
        """(R,) column (within uc) of each anchor row's own item."""
        return torch.searchsorted(self.uc, self.ur)

    @functools.cached_property
    def cnt(self) -> Tensor:
        """(K,) number of keys on each unique column."""
        return torch.bincount(self.col_inv, minlength=self.K)

    @functools.cached_property
    def n_r(self) -> Tensor:
        """(R,) number of anchors on each unique row."""
        return torch.bincount(self.row_inv, minlength=self.R)

    @functools.cached_property
    def row_scale(self) -> Tensor:
        """(R,) n_r / B: the weight of a row's softmax in the batch gradient."""
        return self.n_r.to(torch.float64) / self.B

    @functools.cached_property
    def lab_r(self) -> Tensor:
        return torch.zeros(self.R, dtype=self.anchor_labels.dtype).scatter_(0, self.row_inv, self.anchor_labels)

    @functools.cached_property
    def lab_c(self) -> Tensor:
        return torch.zeros(self.K, dtype=self.key_labels.dtype).scatter_(0, self.col_inv, self.key_labels)

    @functools.cached_property
    def same_count(self) -> Tensor:
        """(B,) number of batch positions u with the anchor's label (the anchor itself included)."""
        _, inv, counts = torch.unique(self.anchor_labels, return_inverse=True, return_counts=True)
        return counts[inv]

    @functools.cached_property
    def other_blk_f(self) -> Tensor:
        """(R, K) float64: 1 where the column item's label differs from the row's (the NSCL-read entries)."""
        lr, lc = self.lab_r.to(torch.float64), self.lab_c.to(torch.float64)
        return (lr[:, None] - lc[None, :]).abs_().clamp_(max=1.0)  # integer labels: exactly 0 or 1

    @functools.cached_property
    def lone_own(self) -> Tensor:
        """(L,) flat (R, K) indices of the entries (r, own column) that no key of D_s reaches (only the self
        key sits there): outside every denominator of the row."""
        lone = self.cnt[self.own_c] == 1
        return (torch.arange(self.R) * self.K + self.own_c)[lone]

    @functools.cached_property
    def _logcnt(self) -> Tensor:
        return torch.log(self.cnt.to(torch.float64))

    @functools.cached_property
    def _pos_unique(self) -> tuple[Tensor, Tensor, Tensor]:
        """Unique (row, column) positives of the anchors, with the weights count / n_r."""
        K = self.K
        uk, counts = torch.unique(self.row_inv * K + self.col_inv[self.B:], return_counts=True)
        pr = uk // K
        return pr, uk % K, counts.to(torch.float64) / self.n_r[pr].to(torch.float64)

    def _block_positives(self, valid_rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The positives on valid rows (all anchors of a row share its validity)."""
        pr, pc, w = self._pos_unique
        if bool(valid_rows.all()):
            return pr, pc, w
        keep = valid_rows[pr]
        return pr[keep], pc[keep], w[keep]

    @functools.cached_property
    def bprep_cl(self) -> PreparedMasks:
        """Block PreparedMasks of CL: bias log m(r, c) with m = cnt(c), minus 1 on the row's own column."""
        R, K = self.R, self.K
        bias = self._logcnt.expand(R, K).clone()
        bias.view(-1)[torch.arange(R) * K + self.own_c] = torch.log((self.cnt[self.own_c] - 1).to(torch.float64))
        valid = torch.ones(R, dtype=torch.bool)
        pr, pc, w = self._block_positives(valid)
        n_den = torch.full((R,), 2 * self.B - 1, dtype=torch.long)
        return PreparedMasks(None, None, bias, pr, pc, w, valid, pr[:0], self.n_r, n_den)

    @functools.cached_property
    def bprep_ns(self) -> PreparedMasks:
        """Block PreparedMasks of NSCL: bias log cnt(c) on other-label columns, -inf elsewhere; rows without
        an other-label key are invalid (their anchors have no negative: zero gradient)."""
        R = self.R
        # log cnt - (1/other - 1): 1/1 - 1 = 0 and 1/0 - 1 = inf, so the bias is exactly log cnt or -inf
        bias = torch.sub(self._logcnt[None, :], torch.reciprocal(self.other_blk_f).sub_(1.0))
        n_neg = 2 * (self.B - self.same_count)  # (B,) keys with another label
        n_den = torch.zeros(R, dtype=torch.long).scatter_(0, self.row_inv, n_neg)
        valid = n_den > 0
        pr, pc, w = self._block_positives(valid)
        return PreparedMasks(None, None, bias, pr, pc, w, valid, (~valid).nonzero().squeeze(1), self.n_r, n_den)

    def logit_rows(self, blk: Tensor) -> Tensor:
        """(R, K) logits of the unique anchor rows: the block itself (ordered) or its anchor rows (symmetric)."""
        return blk.index_select(0, self.own_c) if self.symmetric else blk

    def rows_to_block(self, U_rows: Tensor) -> Tensor:
        """Block gradient from the (R, K) anchor-row gradient (symmetric: embedded and symmetrised)."""
        if not self.symmetric:
            return U_rows
        out = torch.zeros(self.block_shape, dtype=U_rows.dtype).index_copy_(0, self.own_c, U_rows)
        return self._symmetrise(out)

    # -- scatter (B, 2B) -> block
    @functools.cached_property
    def _plan(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """Ordered Sigma: (rep, src, dst). Every block entry (r, c) takes the logit (first anchor of row r, first
        key of column c) (rep) and then adds the other (anchor, key) pairs on it (src -> dst; a fixed order).
        None in symmetric mode (rows without anchors: plain index_add_)."""
        if self.symmetric:
            return None
        B, R, K = self.B, int(self.ur.shape[0]), int(self.uc.shape[0])
        ar, ak = self._ar, torch.arange(2 * B)
        first_s = torch.full((R,), B, dtype=torch.long).scatter_reduce_(0, self.row_inv, ar, "amin")
        first_k = torch.full((K,), 2 * B, dtype=torch.long).scatter_reduce_(0, self.col_inv, ak, "amin")
        rep = (first_s[:, None] * (2 * B) + first_k[None, :]).reshape(-1)
        is_first_s = first_s[self.row_inv] == ar
        dup_s = (~is_first_s).nonzero().squeeze(1)
        one_s = is_first_s.nonzero().squeeze(1)
        dup_k = (first_k[self.col_inv] != ak).nonzero().squeeze(1)
        src = torch.cat([(dup_s[:, None] * (2 * B) + ak[None, :]).reshape(-1),
                         (one_s[:, None] * (2 * B) + dup_k[None, :]).reshape(-1)])
        return rep, src, self.flat_rc[src]

    def _symmetrise(self, out: Tensor) -> Tensor:
        return out + out.T - torch.diag_embed(torch.diagonal(out)) if self.symmetric else out

    def scatter_sum(self, g: Tensor) -> Tensor:
        """Sum of the (B, 2B) entries of g onto their block entries (duplicates summed; = index_put_ with
        accumulate=True), no scaling, no symmetrisation. Shape: (B, 2B) -> block_shape."""
        R, K = self.block_shape
        gf = g.reshape(-1)
        plan = self._plan
        if plan is None:
            return torch.zeros(R * K, dtype=g.dtype).index_add_(0, self.flat_rc, gf).view(R, K)
        rep, src, dst = plan
        out = gf.index_select(0, rep)
        if src.numel():
            out.index_add_(0, dst, gf.index_select(0, src))
        return out.view(R, K)

    def coalesce_cols(self, g: Tensor) -> Tensor:
        """Per-anchor rows on the unique key items: duplicate keys summed. Shape: (B, 2B) -> (B, K)."""
        K = self.uc.shape[0]
        idx = (torch.arange(g.shape[0])[:, None] * K + self.col_inv[None, :]).reshape(-1)
        return torch.zeros(g.shape[0] * K, dtype=g.dtype).index_add_(0, idx, g.reshape(-1)).view(-1, K)

    def to_block(self, gc: Tensor, scale: float) -> Tensor:
        """Sigma-space matrix on the touched block: scale * sum of the anchors' coalesced rows, symmetrised
        (X + X^T - Diag X) in symmetric mode. Shape: (B, K) -> block_shape."""
        R, K = self.block_shape
        idx = (self.anchor_block_row[:, None] * K + torch.arange(K)[None, :]).reshape(-1)
        out = torch.zeros(R * K, dtype=gc.dtype).index_add_(0, idx, gc.reshape(-1)).view(R, K)
        if scale != 1.0:
            out.mul_(scale)
        return self._symmetrise(out)

    def sigma_grad(self, g: Tensor) -> Tensor:
        """Batch gradient wrt Sigma (Eq. 1, 1/B) from per-anchor logit gradients: the (B, 2B) entries summed
        onto the unique touched entries (``scatter_sum``), times 1/B, symmetrised in symmetric mode. -> block."""
        out = self.scatter_sum(g)
        out.mul_(1.0 / self.B)
        return self._symmetrise(out)

    def gather_block(self, sigma: Tensor) -> Tensor:
        """Sigma on the touched block (a copy; one flat gather). Shape: (M, M) -> block_shape."""
        return sigma.view(-1).index_select(0, self.lin).view(self.block_shape)

    def block_sim(self, blk: Tensor) -> Tensor:
        """(B, 2B) logits of the batch (anchor s, key k) from the block."""
        return blk.reshape(-1).index_select(0, self.flat_rc).view(self.B, 2 * self.B)

    def gather(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(block, sim): Sigma on the touched block (a copy; one flat gather) and the (B, 2B) logits of the
        batch (a gather from the block)."""
        blk = sigma.view(-1).index_select(0, self.lin)
        sim = blk.index_select(0, self.flat_rc).view(self.B, 2 * self.B)
        return blk.view(self.block_shape), sim


def build_geometry(
    rows: Tensor, cols: Tensor, anchor_labels: Tensor, key_labels: Tensor, M: int, symmetric: bool
) -> Geometry:
    """Geometry of a batch given its anchor items ``rows`` (B,) and key items ``cols`` (2B,) in [0, M).

    Key k < B is anchor k's own item (self-masked); key B + s is anchor s's positive (id = batch position).
    """
    B = int(rows.shape[0])
    if cols.shape[0] != 2 * B or not torch.equal(cols[:B], rows):
        raise ValueError("cols must be [rows; positives] of length 2B (anchor s is key s)")
    ur, row_inv = torch.unique(rows, return_inverse=True)
    uc, col_inv = torch.unique(cols, return_inverse=True)
    return Geometry(B, int(M), bool(symmetric), rows, cols, anchor_labels, key_labels, ur, row_inv, uc, col_inv)


# ----------------------------------------------------------------------------------------------------------
# one coupled step


class StepTensors:
    """Everything one coupled step computes before writing Sigma (read by the checks).

    blk_cl / blk_ns: Sigma^CL / Sigma^NSCL on the touched block BEFORE the update (copies);
    sm_cl / sm_ns: theory.losses.MaskedSoftmax of the (R, K) anchor rows of the block (multiset softmax over the
    unique key columns, Geometry.bprep_cl / bprep_ns): p_cl = the CL softmax at Sigma^CL, q_ns = the NSCL softmax
    at Sigma^NSCL (zero rows where the row's anchors have no negative).
    On first use: U_cl / U_ns, the Sigma-space batch gradients G^CL(Sigma^CL), G^NSCL(Sigma^NSCL) on the block;
    sim_cl / sim_ns (B, 2B) per-(anchor, key) logits, g_cl / g_ns (B, 2B) per-anchor logit gradients
    (theory.losses on the (B, 2B) masks), gc_cl / gc_ns (B, K) those rows coalesced onto the unique key items;
    diff = blk_cl - blk_ns.
    """

    def __init__(self, geom: Geometry, tau: float, blk_cl: Tensor, blk_ns: Tensor, sm_cl: MaskedSoftmax,
                 sm_ns: MaskedSoftmax):
        self.geom, self.tau = geom, tau
        self.blk_cl, self.blk_ns = blk_cl, blk_ns
        self.sm_cl, self.sm_ns = sm_cl, sm_ns
        self.p_cl, self.q_ns = sm_cl.p, sm_ns.p

    def _U(self, p: Tensor, prep: PreparedMasks) -> Tensor:
        g = self.geom
        return g.rows_to_block(contrastive_grad_from_softmax(p, prep, self.tau, g.row_scale))

    @functools.cached_property
    def U_cl(self) -> Tensor:
        return self._U(self.p_cl, self.geom.bprep_cl)

    @functools.cached_property
    def U_ns(self) -> Tensor:
        return self._U(self.q_ns, self.geom.bprep_ns)

    @functools.cached_property
    def sim_cl(self) -> Tensor:
        return self.geom.block_sim(self.blk_cl)

    @functools.cached_property
    def sim_ns(self) -> Tensor:
        return self.geom.block_sim(self.blk_ns)

    @functools.cached_property
    def g_cl(self) -> Tensor:
        return contrastive_grad_prepared(self.sim_cl, self.geom.prep_cl, self.tau).grad

    @functools.cached_property
    def g_ns(self) -> Tensor:
        return contrastive_grad_prepared(self.sim_ns, self.geom.prep_ns, self.tau).grad

    @functools.cached_property
    def gc_cl(self) -> Tensor:
        return self.geom.coalesce_cols(self.g_cl)

    @functools.cached_property
    def gc_ns(self) -> Tensor:
        return self.geom.coalesce_cols(self.g_ns)

    @functools.cached_property
    def diff(self) -> Tensor:
        """Sigma^CL - Sigma^NSCL on the block before the update."""
        return self.blk_cl - self.blk_ns


def compute_step(sigma_cl: Tensor, sigma_ns: Tensor, geom: Geometry, tau: float, per_anchor: bool = True) -> StepTensors:
    """Gather both runs' blocks and their softmaxes; the batch gradients follow on first use (st.U_cl, st.U_ns).

    The gradients come from theory.losses (contrastive_softmax_prepared / contrastive_grad_from_softmax, the
    project's one gradient implementation) on the unique anchor rows of the block with multiset denominators
    (see Geometry.bprep_cl): every Sigma entry is read once, no (B, 2B) logits and no scatter. Equal (to
    rounding) to scattering the per-anchor gradients of the (B, 2B) logits (Geometry.sigma_grad;
    tests/test_simulate.py). ``per_anchor`` is accepted for compatibility; the per-anchor (B, 2B) quantities
    are computed on first use.
    """
    blk_cl = geom.gather_block(sigma_cl)
    blk_ns = geom.gather_block(sigma_ns)
    sm_cl = contrastive_softmax_prepared(geom.logit_rows(blk_cl), geom.bprep_cl, tau)
    sm_ns = contrastive_softmax_prepared(geom.logit_rows(blk_ns), geom.bprep_ns, tau)
    return StepTensors(geom, tau, blk_cl, blk_ns, sm_cl, sm_ns)


def _updated_block(blk: Tensor, p: Tensor, prep: PreparedMasks, geom: Geometry, tau: float, eta: float,
                   U: Tensor | None) -> Tensor:
    """blk - eta G on the block. Ordered Sigma: one pass from the softmax, blk + p * (-eta n_r/(B tau)) and
    blk - eta (p - w) n_r/(B tau) on the positives (the gradient of contrastive_grad_from_softmax, never
    materialised); symmetric: blk - eta U with the symmetrised U."""
    if geom.symmetric:
        return torch.add(blk, U, alpha=-eta)
    coef = geom.row_scale * (-eta / tau)
    new = torch.addcmul(blk, p, coef[:, None])
    r, c = prep.pos_rows, prep.pos_cols
    if r.numel():
        new.index_put_((r, c), blk[r, c] + (p[r, c] - prep.pos_w) * coef[r])
    return new


def apply_step(
    sigma_cl: Tensor, sigma_ns: Tensor, st: StepTensors, eta: float, clip: bool
) -> tuple[float, Tensor, Tensor]:
    """Write Sigma^o <- Sigma^o - eta G^o on the touched block (optionally clipped to [-1, 1]).

    Returns (d_drift_sq, new_cl_block, new_ns_block): the change of ||Sigma^CL - Sigma^NSCL||_F^2, computed from
    the touched entries only (unique entries, so the difference of sums of squares is exact bookkeeping).
    """
    g = st.geom
    sym = g.symmetric
    new_cl = _updated_block(st.blk_cl, st.p_cl, g.bprep_cl, g, st.tau, eta, st.U_cl if sym else None)
    new_ns = _updated_block(st.blk_ns, st.q_ns, g.bprep_ns, g, st.tau, eta, st.U_ns if sym else None)
    if clip:
        new_cl.clamp_(-1.0, 1.0)
        new_ns.clamp_(-1.0, 1.0)
    lin = g.lin
    sigma_cl.view(-1).index_copy_(0, lin, new_cl.view(-1))
    sigma_ns.view(-1).index_copy_(0, lin, new_ns.view(-1))
    d_new = float(torch.linalg.vector_norm(new_cl - new_ns))
    d_old = float(torch.linalg.vector_norm(st.diff))
    return d_new * d_new - d_old * d_old, new_cl, new_ns


def full_drift(sigma_cl: Tensor, sigma_ns: Tensor) -> float:
    """||Sigma^CL - Sigma^NSCL||_F recomputed over all entries (row blocks, no N x N temporary)."""
    M = sigma_cl.shape[0]
    blk = max(1, (1 << 22) // max(1, M))
    s = 0.0
    for r0 in range(0, M, blk):
        d = sigma_cl[r0 : r0 + blk] - sigma_ns[r0 : r0 + blk]
        s += float((d * d).sum())
    return math.sqrt(s)


# ----------------------------------------------------------------------------------------------------------
# run state (checkpointable)


@dataclass
class CoupledState:
    """Mutable state of a run; everything needed to resume bit-exactly."""

    step: int
    sigma_cl: Tensor
    sigma_ns: Tensor
    drift_sq: float
    batch_gen: torch.Generator
    aug_gen: torch.Generator
    gap_bound: float = 0.0  # Thm 1 recurrence driven by the measured Lem. 8 term (A)
    premise_all: bool = True  # Cor. 3 event and bounded logits at every step so far
    step_rows: list = field(default_factory=list)
    eval_rows: list = field(default_factory=list)

    @property
    def drift(self) -> float:
        # the incremental sum of squares can round to -1e-30 around an exact 0
        return math.sqrt(max(self.drift_sq, 0.0))


@dataclass
class SigmaResult:
    """What ``run_sigma_descent`` returns (the files in out_dir hold the same numbers)."""

    config: dict
    constants: dict
    steps_completed: int
    completed: bool
    drift: float
    drift_full: float | None
    cka: float | None
    rsa: float | None
    checks: dict
    verdict: str
    step_rows: list
    eval_rows: list
    sigma_cl: Tensor
    sigma_ns: Tensor
    wall_s: float
    steps_per_s: float
    out_dir: Path | None
    aborted: str | None = None


def _versions() -> dict:
    return {**runio.package_versions("torch", "numpy", "scipy", "matplotlib"), "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------------------
# the run


def _eval_point(state: CoupledState, sigma0: Tensor, consts: dict, bounds: dict, cfg: SigmaConfig) -> dict:
    """N x N quantities at an eval point: full drift, CKA / RSA, ||K^CL||_F, sigma_D, certificates."""
    from theory.metrics import cka_gram, rsa_gram

    from .checks import certificates, upper_std

    t = state.step
    S1, S2 = state.sigma_cl, state.sigma_ns
    M = S1.shape[0]
    row = {"step": t, "drift_fro": state.drift, "drift_full": full_drift(S1, S2)}
    row["drift_rel_err"] = abs(row["drift_fro"] - row["drift_full"]) / row["drift_full"] if row["drift_full"] > 0 else 0.0
    row["cka"] = cka_gram(S1, S2)
    row["rsa"] = rsa_gram(S1, S2)
    rm = S1.mean(dim=1, keepdim=True)
    cm = S1.mean(dim=0, keepdim=True)
    row["k_cl_fro"] = float(torch.linalg.matrix_norm(S1 - rm - cm + S1.mean()))
    row["sigma_d"] = upper_std(S1)
    row["n_pairs"] = M * (M - 1) // 2
    row["bound_closed"] = float(bounds["closed"][t])
    row["bound_unrolled"] = float(bounds["unrolled"][t])
    row["bound_gap"] = state.gap_bound
    row.update(certificates(row, symmetric=cfg.sigma == "symmetric", S1=S1, S2=S2))
    row["rel_move_cl"] = float(torch.linalg.matrix_norm(S1 - sigma0) / torch.linalg.matrix_norm(sigma0))
    row["rel_move_ns"] = float(torch.linalg.matrix_norm(S2 - sigma0) / torch.linalg.matrix_norm(sigma0))
    row["cka_cl_vs_init"] = cka_gram(S1, sigma0)
    row["max_abs_sigma_cl"] = float(S1.abs().max())
    row["frac_outside_cl"] = float((S1.abs() > 1.0).double().mean())
    return row


def _ckpt_path(out_dir: Path) -> Path:
    return out_dir / "checkpoint.pt"


def _save_checkpoint(out_dir: Path, cfg: SigmaConfig, state: CoupledState, suite) -> None:
    payload = {
        "version": 1,
        "config": cfg.to_dict(),
        "step": state.step,
        "sigma_cl": state.sigma_cl,
        "sigma_ns": state.sigma_ns,
        "drift_sq": state.drift_sq,
        "gap_bound": state.gap_bound,
        "premise_all": state.premise_all,
        "batch_gen": state.batch_gen.get_state(),
        "aug_gen": state.aug_gen.get_state(),
        "step_rows": state.step_rows,
        "eval_rows": state.eval_rows,
        "checks": suite.state_dict() if suite is not None else None,
    }
    runio.atomic_write(_ckpt_path(out_dir), lambda f: torch.save(payload, f))


def load_checkpoint(out_dir: Path | str) -> dict:
    """Read ``out_dir/checkpoint.pt`` (ValueError if missing)."""
    path = _ckpt_path(Path(out_dir))
    if not path.is_file():
        raise ValueError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, weights_only=False)
    except Exception as e:  # truncated / overwritten / not a torch file: one line, nothing else touched
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({msg}); delete it or rerun without --resume") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is corrupt: expected a dict of run state, got {type(state).__name__}")
    return state


def _dynamics(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _RUN_ONLY_FIELDS}


@dataclass
class RunContext:
    """Constants of a run that ``advance`` needs (sizes, options, step sizes, Thm. 1 trajectory bounds)."""

    N: int
    B: int
    V: int
    M: int
    tau: float
    replacement: bool
    symmetric: bool
    clip: bool
    item_labels: Tensor
    eta: np.ndarray
    bounds: dict
    consts: dict


def _all_finite(x: Tensor) -> bool:
    """No NaN / inf in x: one summation pass; the exact elementwise test only if the sum is not finite."""
    return math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all())


def advance(state: CoupledState, ctx: RunContext, suite=None) -> dict:
    """One coupled step t = state.step: shared batch, both gradients, update, per-step checks (if ``suite``).

    Returns the steps.csv row; raises NonFiniteError naming the step on a NaN / inf gradient or Sigma.
    """
    t = state.step
    eta_t = float(ctx.eta[t])
    batch = draw_batch(ctx.N, ctx.B, ctx.V, ctx.replacement, state.batch_gen, state.aug_gen)
    rows, cols = batch_items(batch, ctx.V)
    lab = ctx.item_labels
    geom = build_geometry(rows, cols, lab[rows], lab[cols], ctx.M, ctx.symmetric)
    st = compute_step(state.sigma_cl, state.sigma_ns, geom, ctx.tau)
    if not (_all_finite(st.p_cl) and _all_finite(st.q_ns)):
        raise NonFiniteError(f"non-finite loss gradient at step {t} (Sigma entries too large for tau?)")
    drift_t = state.drift
    d_sq, new_cl, new_ns = apply_step(state.sigma_cl, state.sigma_ns, st, eta_t, ctx.clip)
    if not (_all_finite(new_cl) and _all_finite(new_ns)):
        raise NonFiniteError(f"non-finite Sigma after step {t} (eta={eta_t!r} too large?)")
    state.drift_sq += d_sq
    state.step = t + 1
    row = {"step": t, "eta": eta_t, "drift_fro": state.drift,
           "bound_thm1_unrolled": float(ctx.bounds["unrolled"][t + 1]),
           "bound_thm1_closed": float(ctx.bounds["closed"][t + 1])}
    if suite is not None:
        info = suite.evaluate_step(st, t, eta_t, drift_t, state.drift, batch, lab)
        state.gap_bound = (1.0 + eta_t * ctx.consts["lipschitz"]) * state.gap_bound + eta_t * info["gap_A"]
        state.premise_all = state.premise_all and info["premise_step"]
        suite.evaluate_trajectory(t + 1, state.drift, row["bound_thm1_closed"], row["bound_thm1_unrolled"],
                                  state.gap_bound, state.premise_all)
        row["bound_thm1_gap"] = state.gap_bound
        row.update(info["row"])
    return row


def _safe_sum(x: np.ndarray) -> float:
    with np.errstate(over="ignore"):
        return float(np.sum(x))


def _bounds(eta: np.ndarray, consts: dict, B: int, tau: float, T: int) -> dict:
    """Thm. 1 trajectory bounds D_t, t = 0..T (closed form Eq. 2 with horizon t, and exact unrolled)."""
    from theory.bounds import thm1_trajectory_from_delta

    if not math.isfinite(consts["Delta"]):
        return {"unrolled": np.full(T + 1, math.inf), "closed": np.full(T + 1, math.inf)}
    return {form: thm1_trajectory_from_delta(eta, consts["Delta"], B, tau, form=form) for form in ("unrolled", "closed")}


def run_sigma_descent(
    cfg: SigmaConfig,
    out_dir: Path | str | None,
    quiet: bool = False,
    resume: bool = False,
    argv: list[str] | None = None,
) -> SigmaResult:
    """Run the coupled CL / NSCL Sigma-space descent (Eq. 1) with per-step claim checks.

    Writes into ``out_dir`` (if not None): config.json, steps.csv, evals.csv, checks.json, counterexamples/,
    sigma_descent.png/.pdf, optional sigma_cl.npy / sigma_ns.npy, checkpoint.pt (``checkpoint_every`` /
    ``stop_after``). ``resume=True`` continues from out_dir/checkpoint.pt (same dynamics options required)
    and reproduces the uninterrupted run exactly. Raises ValueError on bad options and NonFiniteError (a
    ValueError naming the step) when a gradient or Sigma becomes non-finite, after writing the outputs so far.
    """
    from tqdm import tqdm

    from . import checks as chk

    validate_config(cfg)
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    ref = make_reference(cfg)
    eta = eta_values(cfg)
    T = cfg.steps
    B = cfg.batch_size
    N, V, C = ref.n, ref.views, ref.classes
    M = N * V
    if not cfg.replacement and B > N:
        raise ValueError(f"batch_size must be <= n without replacement, got batch_size={B}, n={N}")
    consts = theory_constants(C, B, T, cfg.delta, cfg.tau)
    with np.errstate(over="ignore", invalid="ignore"):
        bounds = _bounds(eta, consts, B, cfg.tau, T)
    options = {
        "views": cfg.views, "view_slots": V, "sigma": cfg.sigma, "replacement": cfg.replacement,
        "project": cfg.project, "eta_schedule": cfg.eta_schedule,
    }
    resolved = cfg.to_dict()
    resolved.update({"n": N, "classes": C, "view_slots": V})
    config_doc = {
        "config": resolved,
        "resolved": {"items_M": M, "balanced_classes": ref.balanced, "reference": ref.source,
                     "eta_sum": _safe_sum(eta), "eta_first": float(eta[0]), "eta_last": float(eta[-1])},
        "constants": consts,
        "seeds": {"init_seed": cfg.init_seed, "batch_seed": cfg.batch_seed, "aug_seed": cfg.aug_seed},
        "versions": _versions(),
        "git_revision": runio.git_revision(),
        "command_line": argv if argv is not None else None,
        "dtype": "float64",
    }
    if out is not None:
        runio.write_json(out / "config.json", config_doc)

    suite = None
    if cfg.checks:
        suite = chk.CheckSuite(
            tau=cfg.tau, B=B, C=C, T=T, delta=cfg.delta, consts=consts, options=options,
            out_dir=out, symmetric=cfg.sigma == "symmetric",
        )
    if resume:
        if out is None:
            raise ValueError("resume needs an output directory holding checkpoint.pt")
        ck = load_checkpoint(out)
        if _dynamics(ck["config"]) != _dynamics(cfg.to_dict()):
            diff = sorted(k for k in _dynamics(cfg.to_dict()) if ck["config"].get(k) != cfg.to_dict().get(k))
            raise ValueError(f"checkpoint config differs from this run in: {', '.join(diff)}")
        bg = torch.Generator()
        bg.set_state(ck["batch_gen"])
        ag = torch.Generator()
        ag.set_state(ck["aug_gen"])
        state = CoupledState(ck["step"], ck["sigma_cl"], ck["sigma_ns"], ck["drift_sq"], bg, ag, ck["gap_bound"],
                             ck["premise_all"], ck["step_rows"], ck["eval_rows"])
        if suite is not None and ck["checks"] is not None:
            suite.load_state_dict(ck["checks"])
    else:
        state = CoupledState(
            0, ref.sigma0.clone(), ref.sigma0.clone(), 0.0,
            torch.Generator().manual_seed(int(cfg.batch_seed)), torch.Generator().manual_seed(int(cfg.aug_seed)),
        )
        state.eval_rows.append(_eval_point(state, ref.sigma0, consts, bounds, cfg))  # step 0 (D_0 = 0)
    ctx = RunContext(N=N, B=B, V=V, M=M, tau=cfg.tau, replacement=cfg.replacement,
                     symmetric=cfg.sigma == "symmetric", clip=cfg.project == "clip", item_labels=ref.item_labels,
                     eta=eta, bounds=bounds, consts=consts)
    stop_at = cfg.stop_after if cfg.stop_after is not None else T
    aborted = None
    t_loop = time.perf_counter()
    step_s = 0.0  # time inside the coupled steps (checks included, eval points excluded)
    first_step = state.step
    bar = tqdm(total=stop_at, initial=state.step, disable=quiet, desc="sigma descent", unit="step",
               dynamic_ncols=True)
    try:
        while state.step < stop_at:
            t = state.step
            t0 = time.perf_counter()
            row = advance(state, ctx, suite)
            step_s += time.perf_counter() - t0
            state.step_rows.append(row)
            if (cfg.eval_every and state.step % cfg.eval_every == 0) or state.step == T:
                try:
                    ev = _eval_point(state, ref.sigma0, consts, bounds, cfg)
                except ValueError as e:  # degenerate / overflowing Sigma (e.g. a huge eta)
                    raise NonFiniteError(f"evaluation after step {t} failed: {e}") from None
                state.eval_rows.append(ev)
                if suite is not None:
                    suite.evaluate_eval_point(ev, state.premise_all)
                bar.set_postfix(drift=f"{state.drift:.3g}", cka=f"{ev['cka']:.6f}")
            if out is not None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                _save_checkpoint(out, cfg, state, suite)
            bar.update(1)
    except NonFiniteError as e:
        aborted = str(e)
    finally:
        bar.close()
    loop_s = time.perf_counter() - t_loop
    done_steps = state.step - first_step
    completed = state.step == T
    if out is not None and cfg.stop_after is not None and not completed and aborted is None:
        _save_checkpoint(out, cfg, state, suite)
    if suite is not None and completed:
        suite.finalize_lemma5(n=N, replacement=cfg.replacement, trials=cfg.lemma5_trials, seed=cfg.init_seed)
    checks_doc = suite.to_json() if suite is not None else {"note": "checks disabled (--no-checks)"}
    if isinstance(checks_doc, dict):
        checks_doc.setdefault("_run", {})
        checks_doc["_run"] = {"completed": completed, "steps_completed": state.step, "steps": T,
                              "aborted": aborted, "options": options, "constants": consts}
    verdict = chk.format_verdict_table(checks_doc) if suite is not None else "checks disabled"
    last_eval = state.eval_rows[-1] if state.eval_rows else {}
    wall = time.perf_counter() - t_start
    if out is not None:
        runio.write_csv(out / "steps.csv", state.step_rows)
        runio.write_csv(out / "evals.csv", state.eval_rows)
        runio.write_json(out / "checks.json", checks_doc)
        runio.write_json(out / "timing.json", {"wall_s": wall, "loop_s": loop_s, "step_s": step_s, "steps_run": done_steps,
                                         "steps_per_s": done_steps / step_s if step_s > 0 else None,
                                         "threads": torch.get_num_threads()})
        if cfg.save_sigma:
            sig_cl, sig_ns = state.sigma_cl.numpy(), state.sigma_ns.numpy()
            runio.atomic_write(out / "sigma_cl.npy", lambda f: np.save(f, sig_cl))
            runio.atomic_write(out / "sigma_ns.npy", lambda f: np.save(f, sig_ns))
        if cfg.plot and len(state.step_rows) > 0:
            from .plot import plot_sigma_run

            plot_sigma_run(out, out / "sigma_descent")
    result = SigmaResult(
        config=resolved, constants=consts, steps_completed=state.step, completed=completed, drift=state.drift,
        drift_full=last_eval.get("drift_full"), cka=last_eval.get("cka"), rsa=last_eval.get("rsa"),
        checks=checks_doc, verdict=verdict, step_rows=state.step_rows, eval_rows=state.eval_rows,
        sigma_cl=state.sigma_cl, sigma_ns=state.sigma_ns, wall_s=wall,
        steps_per_s=done_steps / step_s if step_s > 0 else float("nan"), out_dir=out, aborted=aborted,
    )
    if aborted is not None:
        raise NonFiniteError(aborted)
    return result
