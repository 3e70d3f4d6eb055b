"""Options of a coupled Sigma-space run (SigmaConfig), their validation, the step sizes and the paper's constants.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 4.1 (Eq. 1,
Thm. 1, Cors. 1-2) and App. D (Lemmas 1-8).

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
              alone leaves the box (the README gives the step at which it does), after which those claims are
              evaluated outside their premise. Clipping is the Euclidean projection onto a convex box, hence non-expansive
              (||P(a) - P(b)|| <= ||a - b||), so the Thm. 1 recurrence D_{t+1} <= (1 + eta L) D_t + eta Delta/(tau
              sqrt B) still holds for the projected runs. ``none``: Eq. 1 exactly (Sigma may leave [-1, 1]).
  diag        ``fixed`` (default): the diagonal Sigma(i, i) = cos(x_i, x_i) = 1 is a constant, as in the
              paper's Sigma (Sec. 3: a cosine-similarity matrix has a unit diagonal); the update is the
              gradient wrt the off-diagonal coordinates only. ``free``: every touched entry is a coordinate,
              Eq. 1 as written: a diagonal entry that a loss reads moves -- under with-replacement sampling a
              duplicated draw puts Sigma(i, i) into the CL denominator (a same-class key with another id),
              and with views=identity the positive logit is Sigma(i, i) itself. NSCL never reads Sigma(i, i)
              in slots mode (same class), so ``free`` moves the CL diagonal only there.
  dtype       ``float64`` (default) or ``float32``: the dtype of Sigma and of the step (gather, softmax, update).
              The per-step checks always recompute the step in float64 from the run's blocks (their
              tolerances, RTOL = 1e-12 and EQ_RTOL = 1e-9, are float64 rounding), and the eval-point N x N
              quantities accumulate in float64. ``device``: cpu (default) or cuda[:K] (Sigma and the step on
              the GPU; the batch draws stay on the CPU generators, so a CUDA run sees the same batches).
  eta         constant (default DEFAULT_ETA = 16, see below), ``cosine`` schedule eta (1 + cos(pi t / T)) / 2,
              or a ``.npy`` file of T sizes.


Default regime: N = 1000, C = 100, V = 2 (M = 2000 items), B = 512, tau = 2, eta = 16, T = 200, delta = 0.05,
aug_noise = 2, clip, diag fixed. Large tau and B keep Delta_{C,delta}(B; tau) small enough that the Thm. 1 / Cor. 1-2
certificates are not vacuous while Sigma still moves (the measured numbers are in the README).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

import runio

from theory.constants import (
    check_bool,
    check_choice,
    check_classes,
    check_delta,
    check_eta_schedule,
    check_nonneg_int,
    check_nonneg_float,
    check_positive_int,
    check_tau,
    delta_c_delta,
    eps_b_delta,
)


VIEWS = ("slots", "identity")
SIGMA_MODES = ("ordered", "symmetric")
PROJECTIONS = ("none", "clip")
DIAG_MODES = ("fixed", "free")
DTYPES = ("float64", "float32")
ETA_SCHEDULES = ("constant", "cosine")
# Default step size of the default regime (see the module docstring): Sum eta = 3200 keeps the Thm. 1 certificate
# non-vacuous (rho = 0.48) while Sigma moves by 13% (CKA(Sigma_0, Sigma_T) = 0.992).
DEFAULT_ETA = 16.0


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
    diag: str = "fixed"
    dtype: str = "float64"  # of Sigma and the step; the per-step checks always run in float64
    device: str = "cpu"  # cpu | cuda | cuda:K
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


def check_device(device: object) -> str:
    """``device`` if it names a usable torch device (cpu, cuda, cuda:K with K < the GPU count), else a one-line
    ValueError."""
    if not isinstance(device, str):
        raise ValueError(f"device must be cpu, cuda or cuda:K, got device={device!r}")
    try:
        d = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be cpu, cuda or cuda:K, got device={device!r}") from None
    if d.type == "cpu":
        return device
    if d.type != "cuda":
        raise ValueError(f"device must be cpu, cuda or cuda:K, got device={device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} needs CUDA, but torch.cuda.is_available() is False on this machine")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


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
    check_choice("views", cfg.views, VIEWS)
    check_choice("sigma", cfg.sigma, SIGMA_MODES)
    check_choice("project", cfg.project, PROJECTIONS)
    check_choice("diag", cfg.diag, DIAG_MODES)
    check_choice("dtype", cfg.dtype, DTYPES)
    check_device(cfg.device)
    V = check_positive_int("view_slots", cfg.view_slots)
    if cfg.views == "slots" and V < 2:
        raise ValueError(f"view_slots must be >= 2 with views=slots (two distinct views), got view_slots={V}")
    check_bool("replacement", cfg.replacement)
    if not cfg.replacement and cfg.init_path is None and B > cfg.n:
        raise ValueError(f"batch_size must be <= n without replacement, got batch_size={B}, n={cfg.n}")
    check_nonneg_float("separation", cfg.separation)
    check_positive_int("embed_dim", cfg.embed_dim)
    check_nonneg_float("aug_noise", cfg.aug_noise)
    for name in ("init_seed", "batch_seed", "aug_seed"):
        check_nonneg_int(name, getattr(cfg, name))
    check_bool("checks", cfg.checks)
    check_nonneg_int("eval_every", cfg.eval_every)
    check_nonneg_int("lemma5_trials", cfg.lemma5_trials)
    check_nonneg_int("checkpoint_every", cfg.checkpoint_every)
    if cfg.stop_after is not None:
        s = check_positive_int("stop_after", cfg.stop_after)
        if s >= T:
            raise ValueError(f"stop_after must be < steps, got stop_after={s}, steps={T}")
    check_bool("save_sigma", cfg.save_sigma)
    check_bool("plot", cfg.plot)
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

