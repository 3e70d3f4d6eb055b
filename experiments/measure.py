"""Measurements on trained encoders: alignment, weight gaps, probes, loss gap, and the App. B constants.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning": Sec. 3 (CKA / RSA on
cosine-similarity matrices), Sec. 4.1 (Cors. 1-2 need ||K_T^CL||_F and sigma_D), Sec. 5 / Tab. 1 (NCCC and
linear-probe accuracy), Sec. 5.1 / Fig. 6 (relative weight gap), App. B (Assumptions 1-2, Lem. 7, Thm. 2),
App. C (L_Sigma, M_Sigma of Eqs. 6-9); companion loss-gap bound (theory.bounds.loss_gap_bound).

Every metric comes from ``theory.alignment_features`` / ``theory.probes`` / ``theory.losses`` /
``theory.bounds``; this module only feeds them
embeddings and models. Nothing here forms an N x N matrix of a reference set except ``cosine_gram`` (the
Sigma-space surrogate needs Sigma itself).

The network as a function f_w. The theory treats f_w(x) as a function of the weights and ONE input. The
encoders contain BatchNorm, which in train mode couples the samples of a batch, so every measurement that
differentiates through the network (G, beta, Lem. 7, L_Sigma, M_Sigma) uses the model in eval mode (running
statistics frozen: a per-sample function of w) on a float64 copy (``theory_copy``). The training steps
themselves are taken in train mode; that difference is stated in the run's report.

Estimates of suprema. G (Assumption 2), beta (Assumption 1), L_Sigma and M_Sigma (App. C) are suprema over
all weights and inputs; what can be measured is a maximum over samples, i.e. an EMPIRICAL LOWER ESTIMATE of the
sup. A bound evaluated with such an estimate is not a certificate: when the measured quantity exceeds it, the
assumption's constant was underestimated or the claim fails; the report says which cannot be told apart.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from theory.bounds import loss_gap_bound, loss_gap_bound_counts
from theory.constants import check_positive_int, check_tau
from theory.losses import masked_contrastive_loss, simclr_sim, softmax_mass_split
from theory.alignment_features import cka_rsa, linear_cka
from theory.probes import WeightGap, nccc_accuracy, relative_weight_gap

__all__ = [
    "SigmaStats",
    "GEstimate",
    "BetaEstimate",
    "cosine_gram",
    "sigma_stats",
    "alignment",
    "common_weight_keys",
    "weight_gap",
    "weight_distance",
    "flat_params",
    "linear_probe_accuracy",
    "nccc",
    "loss_gap",
    "theory_copy",
    "batch_loss",
    "batch_grad",
    "pair_grad_norms",
    "sample_pairs",
    "estimate_G",
    "estimate_beta",
    "lem7_check",
    "sigma_of_params",
    "jacobian_spectral_norm",
    "taylor_remainder",
]

_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# ----------------------------------------------------------------------------------------------------------
# similarity matrices and the scales of Cors. 1-2
def cosine_gram(z: Tensor | np.ndarray) -> Tensor:
    """Sigma(Z)_ij = cos(z_i, z_j) in float64 (Sec. 3), diagonal exactly 1. Raises for a zero row.

    Shape: z (N, d) -> (N, N). Used only where Sigma itself is needed (Sigma-space surrogate, tests).
    """
    Z = torch.as_tensor(z).detach().to("cpu", torch.float64)
    if Z.dim() != 2:
        raise ValueError(f"z must have shape (N, d), got shape {tuple(Z.shape)}")
    nrm = torch.linalg.vector_norm(Z, dim=1)
    if bool((nrm == 0).any()) or not bool(torch.isfinite(nrm).all()):
        i = int(torch.nonzero((nrm == 0) | ~torch.isfinite(nrm))[0, 0])
        raise ValueError(f"z row {i} is zero or non-finite: cosine similarity undefined")
    U = Z / nrm[:, None]
    S = U @ U.T
    S.clamp_(-1.0, 1.0)
    S.fill_diagonal_(1.0)
    return S


class SigmaStats(NamedTuple):
    """Scales of Cors. 1-2 for Sigma = cosine Gram of N embeddings.

    k_fro = ||H Sigma H||_F (Cor. 1 denominator), sigma_d = population std of the M = N(N-1)/2 entries
    1 - Sigma_ij, i < j (Cor. 2: sqrt(M) sigma_d = ||a - mean(a)||_2), M, N.
    """

    k_fro: float
    sigma_d: float
    M: int
    N: int


def sigma_stats(z: Tensor | np.ndarray) -> SigmaStats:
    """||H Sigma H||_F and sigma_D from features in O(N d^2), never forming Sigma (float64).

    With unit rows u_i, m = mean u_i, R = H U, C = R^T R (d x d):
        ||H Sigma H||_F = ||R R^T||_F = ||C||_F;
        sum_{i != j} (a_ij - abar)^2 = 2N m^T C m + ||C||_F^2 - tr(C)^2 / (N - 1)   (a_ij = Sigma_ij; the same
        centred identity as theory.alignment_features.rsa), and the i<j sum is half of it, so
        sigma_d^2 = that / (2 M).  (1 - Sigma has the same spread as Sigma.)
    Shape: z (N, d), N >= 3. Raises ValueError for a zero row.
    """
    Z = torch.as_tensor(z).detach().to("cpu", torch.float64)
    if Z.dim() != 2 or Z.shape[0] < 3:
        raise ValueError(f"z must have shape (N, d) with N >= 3, got shape {tuple(Z.shape)}")
    nrm = torch.linalg.vector_norm(Z, dim=1)
    if bool((nrm == 0).any()) or not bool(torch.isfinite(nrm).all()):
        raise ValueError("z has a zero or non-finite row: cosine similarity undefined")
    U = Z / nrm[:, None]
    N = U.shape[0]
    m = U.mean(0)
    R = U - m
    C = R.T @ R
    c_fro = float(torch.linalg.matrix_norm(C))
    trc = float(torch.trace(C))
    d_aa = 2.0 * N * float(m @ C @ m) + c_fro**2 - trc**2 / (N - 1)
    M = N * (N - 1) // 2
    return SigmaStats(k_fro=c_fro, sigma_d=math.sqrt(max(d_aa, 0.0) / (2.0 * M)), M=M, N=N)


def _metric(fn, *args, **kw) -> tuple[float | None, str | None]:
    try:
        return float(fn(*args, **kw)), None
    except ValueError as e:  # zero-variance input: recorded with the reason, never NaN
        return None, str(e)


def alignment(feats_a: Tensor, proj_a: Tensor, feats_b: Tensor, proj_b: Tensor,
              debiased: bool = True) -> dict[str, Any]:
    """Alignment of two models on the same N inputs (Sec. 3, Sec. 5.1).

    cka, rsa: the paper's CKA / RSA of the cosine-similarity matrices of the PROJECTIONS (what the loss and
    the Sigma of Thm. 1 see); cka_backbone, rsa_backbone: the same on backbone features; cka_linear_raw
    (Kornblith linear CKA on raw backbone features) and cka_linear_raw_debiased. A metric that is undefined
    (zero-variance input) is None and its reason is in ``notes``.
    Shape: feats_* (N, f), proj_* (N, p).
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    for tag, X, Y in (("", proj_a, proj_b), ("_backbone", feats_a, feats_b)):
        try:
            c, r = cka_rsa(X, Y)
            out["cka" + tag], out["rsa" + tag] = float(c), float(r)
        except ValueError as e:
            out["cka" + tag] = out["rsa" + tag] = None
            notes.append(f"cka/rsa{tag}: {e}")
    out["cka_linear_raw"], why = _metric(linear_cka, feats_a, feats_b)
    if why:
        notes.append(f"cka_linear_raw: {why}")
    if debiased:
        out["cka_linear_raw_debiased"], why = _metric(linear_cka, feats_a, feats_b, debiased=True)
        if why:
            notes.append(f"cka_linear_raw_debiased: {why}")
    out["notes"] = "; ".join(notes)
    return out


# ----------------------------------------------------------------------------------------------------------
# weights
def common_weight_keys(model_a: nn.Module | Mapping[str, Tensor], model_b: nn.Module | Mapping[str, Tensor]) -> list[str]:
    """Floating-point state entries present in both models with equal shapes, minus BatchNorm running stats
    (buffers, not weights). A CE classifier head exists in one model only and is therefore left out."""
    sa = model_a.state_dict() if isinstance(model_a, nn.Module) else model_a
    sb = model_b.state_dict() if isinstance(model_b, nn.Module) else model_b
    keys = [k for k, v in sa.items() if k in sb and not k.endswith(_BN_BUFFERS) and torch.is_tensor(v)
            and v.is_floating_point() and tuple(v.shape) == tuple(sb[k].shape)]
    if not keys:
        raise ValueError("the two models share no floating-point weights")
    return keys


def weight_gap(model_a: nn.Module, model_b: nn.Module) -> WeightGap:
    """Relative weight gap of Sec. 5.1 / Fig. 6 per layer (theory.probes.relative_weight_gap) on the weights the
    two models share. ``.total`` = the paper's sum over layers, ``.mean`` = average."""
    return relative_weight_gap(model_a.state_dict(), model_b.state_dict(), keys=common_weight_keys(model_a, model_b))


def flat_params(model: nn.Module, keys: Sequence[str] | None = None) -> Tensor:
    """Trainable parameters (or the named state entries) concatenated, float64 CPU. Shape: (p,)."""
    if keys is None:
        return torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for p in model.parameters()])
    sd = model.state_dict()
    return torch.cat([sd[k].detach().reshape(-1).to("cpu", torch.float64) for k in keys])


def weight_distance(model_a: nn.Module, model_b: nn.Module) -> float:
    """e = ||w_a - w_b||_2 over the trainable parameters both models share (App. B, e_t of Thm. 2)."""
    names_b = dict(model_b.named_parameters())
    sq = 0.0
    n = 0
    for name, pa in model_a.named_parameters():
        pb = names_b.get(name)
        if pb is None or pb.shape != pa.shape:
            continue
        d = pa.detach().to("cpu", torch.float64) - pb.detach().to("cpu", torch.float64)
        sq += float((d * d).sum())
        n += 1
    if n == 0:
        raise ValueError("the two models share no parameters")
    return math.sqrt(sq)


# ----------------------------------------------------------------------------------------------------------
# downstream accuracy (Tab. 1)
def nccc(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> float:
    """Nearest class-centre accuracy (theory.probes.nccc_accuracy, l2-normalised features)."""
    return nccc_accuracy(train_x, train_y, test_x, test_y, normalize=True)


def linear_probe_accuracy(train_x: Tensor | np.ndarray, train_y: Tensor | np.ndarray, test_x: Tensor | np.ndarray,
                          test_y: Tensor | np.ndarray, num_classes: int | None = None, l2: float = 1e-4,
                          max_iter: int = 100, seed: int = 0, standardize: bool = True) -> float:
    """Linear probe (Tab. 1): multinomial logistic regression on frozen features, full-batch LBFGS, float64.

    Minimises mean cross-entropy + (l2/2) ||W||_F^2 over (W, b) with torch.optim.LBFGS (strong-Wolfe line
    search, ``max_iter`` iterations) from W ~ N(0, 0.01^2) drawn by ``seed``. ``standardize``: features are
    centred and scaled by the TRAINING mean / std (constant columns are left unscaled). Returns the test
    accuracy in [0, 1].
    Shape: train_x (N, d), train_y (N,) int, test_x (M, d), test_y (M,) int.
    """
    Xtr = torch.as_tensor(train_x).detach().to("cpu", torch.float64)
    Xte = torch.as_tensor(test_x).detach().to("cpu", torch.float64)
    ytr = torch.as_tensor(train_y).detach().to("cpu", torch.long)
    yte = torch.as_tensor(test_y).detach().to("cpu", torch.long)
    if Xtr.dim() != 2 or Xte.dim() != 2 or Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(f"train_x and test_x must be (N, d) and (M, d), got {tuple(Xtr.shape)} and {tuple(Xte.shape)}")
    if ytr.shape != (Xtr.shape[0],) or yte.shape != (Xte.shape[0],):
        raise ValueError(f"labels must match the rows, got {tuple(ytr.shape)} and {tuple(yte.shape)}")
    if not (bool(torch.isfinite(Xtr).all()) and bool(torch.isfinite(Xte).all())):
        raise ValueError("linear probe features must be finite")
    C = int(max(int(ytr.max()), int(yte.max())) + 1) if num_classes is None else check_positive_int("num_classes", num_classes)
    if int(ytr.min()) < 0 or int(ytr.max()) >= C or int(yte.min()) < 0 or int(yte.max()) >= C:
        raise ValueError(f"labels must lie in [0, {C - 1}]")
    if standardize:
        mu = Xtr.mean(0)
        sd = Xtr.std(0)
        sd = torch.where(sd > 0, sd, torch.ones_like(sd))
        Xtr = (Xtr - mu) / sd
        Xte = (Xte - mu) / sd
    g = torch.Generator().manual_seed(int(seed))
    W = (0.01 * torch.randn(Xtr.shape[1], C, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=check_positive_int("max_iter", max_iter), history_size=20,
                            tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(Xtr @ W + b, ytr) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = (Xte @ W + b).argmax(1)
    return float((pred == yte).double().mean())


# ----------------------------------------------------------------------------------------------------------
# loss gap (companion paper)
def loss_gap(z1: Tensor, z2: Tensor, labels: Tensor, tau: float, kind: str = "CL",
             anchors: str = "both") -> dict[str, Any]:
    """Measured L^kind - L^NSCL of ONE encoder on a fixed two-view batch, with the companion paper's bounds.

    Per anchor a (valid for both losses, i.e. it has a negative), the numerators coincide and
        loss^kind_a - loss^NSCL_a = log(1 + Z_same_a / Z_neg_a),
    Z_same over the same-class keys of the kind's denominator (CL: including the positive view; DCL: other
    same-class samples only). Bounds reported:
      bound_counts    mean over anchors of log(1 + n_same_a e^{2/tau} / n_neg_a) (theory.bounds.
                      loss_gap_bound_counts; exact per-anchor counts of this batch, holds for every encoder);
      bound_companion log(1 + n_max e^{2/tau} / (N - n_max)) of the batch's class counts (theory.bounds.
                      loss_gap_bound; the dataset-level statement; >= every per-anchor term of the CL and DCL
                      forms here, since (2 n_y - 1)/(2 (N - n_y)) <= n_max/(N - n_max));
      bound_balanced  log(1 + e^{2/tau}/(C - 1)) (balanced classes, blog Part I at temperature tau).
    Shape: z1, z2 (N, p) projections of the two views; labels (N,) int.
    """
    tau = check_tau(tau)
    if kind not in ("CL", "DCL"):
        raise ValueError(f"kind must be 'CL' or 'DCL', got kind={kind!r}")
    with torch.no_grad():
        z1 = z1.detach().to("cpu", torch.float64)
        z2 = z2.detach().to("cpu", torch.float64)
        labels = torch.as_tensor(labels).to("cpu", torch.long)
        bt = simclr_sim(z1, z2, labels, normalize=True, anchors=anchors)
        pos_k, den_k = bt.masks(kind)
        pos_n, den_n = bt.masks("NSCL")
        rk = masked_contrastive_loss(bt.sim, pos_k, den_k, tau)
        rn = masked_contrastive_loss(bt.sim, pos_n, den_n, tau)
        ok = rk.valid & rn.valid
        if not bool(ok.any()):
            raise ValueError("loss_gap: no anchor has both a positive and a negative (one class only?)")
        same = bt.anchor_labels[:, None] == bt.key_labels[None, :]  # type: ignore[index]
        n_same = (den_k & same).sum(1)[ok]
        n_neg = (den_k & ~same).sum(1)[ok]
        gaps = (rk.loss - rn.loss)[ok]
        per_anchor_bound = [loss_gap_bound_counts(int(a), int(b), tau) for a, b in zip(n_same.tolist(), n_neg.tolist())]
        counts = torch.bincount(labels)
        counts = counts[counts > 0]
        C = int(counts.numel())
        N = int(labels.numel())
        n_max = int(counts.max())
        out = {
            "kind": kind,
            "loss_kind": float(rk.loss[ok].mean()),
            "loss_nscl": float(rn.loss[ok].mean()),
            "gap": float(gaps.mean()),
            "gap_max_anchor": float(gaps.max()),
            "bound_counts": float(np.mean(per_anchor_bound)),
            "bound_companion": loss_gap_bound(C, tau, n_max=n_max, N=N) if C >= 2 and n_max < N else None,
            "bound_balanced": loss_gap_bound(C, tau) if C >= 2 else None,
            "anchors_used": int(ok.sum()),
            "anchors_total": int(ok.numel()),
        }
        out["holds_counts"] = bool(out["gap"] <= out["bound_counts"] * (1 + 1e-12))
    return out


# ----------------------------------------------------------------------------------------------------------
# App. B: the network as f_w, its gradients and the constants G, beta
def theory_copy(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A float64, eval-mode deep copy of ``model`` (BatchNorm frozen: f_w(x) depends on one input only)."""
    m = copy.deepcopy(model).to(dtype=dtype).eval()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def _params(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _views_to(model: nn.Module, views: Tensor) -> Tensor:
    p = next(model.parameters())
    x = views.to(p.device)
    if x.dtype == torch.uint8:
        x = x.to(p.dtype) / 255.0
    return x.to(p.dtype)


def batch_loss(model: nn.Module, views: Tensor, labels: Tensor, kind: str, tau: float,
               anchors: str = "both") -> Tensor:
    """The training batch loss of ``kind`` (same definition as experiments.train: simclr_sim on the projections
    of [view1; view2], theory.losses masks, mean over valid anchors) at the model's current weights.

    Shape: views (2B, C, H, W); labels (B,) int.
    """
    x = _views_to(model, views)
    _, z = model(x)
    B = z.shape[0] // 2
    bt = simclr_sim(z[:B], z[B:], labels.to(z.device), normalize=True, anchors=anchors)
    return bt.loss(kind, tau)


def batch_grad(model: nn.Module, views: Tensor, labels: Tensor, kind: str, tau: float,
               anchors: str = "both") -> Tensor:
    """grad_w of ``batch_loss`` as one flat float64 vector over the trainable parameters. Shape: (p,)."""
    params = _params(model)
    with torch.enable_grad():
        loss = batch_loss(model, views, labels, kind, tau, anchors)
        g = torch.autograd.grad(loss, params)
    return torch.cat([t.reshape(-1) for t in g]).to(torch.float64)


def pair_grad_norms(model: nn.Module, x_u: Tensor, x_v: Tensor) -> Tensor:
    """||grad_w sim(f_w(u_k), f_w(v_k))||_2 for each pair k (Assumption 2), sim = cosine of the projections.

    One forward / backward per pair on a 2-image batch (in eval mode f_w is per-sample, so the pair's batch
    does not change the function). Shape: x_u, x_v (P, C, H, W) -> (P,) float64.
    """
    params = _params(model)
    out = []
    with torch.enable_grad():
        for k in range(x_u.shape[0]):
            x = _views_to(model, torch.stack([x_u[k], x_v[k]]))
            _, z = model(x)
            s = F.cosine_similarity(z[0:1], z[1:2], dim=1, eps=0.0)[0]
            g = torch.autograd.grad(s, params, allow_unused=True)
            sq = sum(float((t.to(torch.float64) ** 2).sum()) for t in g if t is not None)
            out.append(math.sqrt(sq))
    return torch.tensor(out, dtype=torch.float64)


def sample_pairs(n_views: int, n_pairs: int, generator: torch.Generator, include_positives: bool = True) -> Tensor:
    """Index pairs (i, k), i != k, among the 2B views of a batch (key k is in anchor i's CL denominator).

    The first min(n_pairs // 2, B) pairs are positives (i, i + B) if ``include_positives``; the rest are drawn
    uniformly. Shape: -> (P, 2) long.
    """
    n_pairs = check_positive_int("n_pairs", n_pairs)
    if n_views < 2:
        raise ValueError(f"need >= 2 views to form a pair, got n_views={n_views}")
    B = n_views // 2
    rows = []
    n_pos = min(n_pairs // 2, B) if include_positives else 0
    if n_pos:
        i = torch.randperm(B, generator=generator)[:n_pos]
        rows.append(torch.stack([i, i + B], 1))
    n_rand = n_pairs - n_pos
    if n_rand:
        i = torch.randint(n_views, (n_rand,), generator=generator)
        k = (i + 1 + torch.randint(n_views - 1, (n_rand,), generator=generator)) % n_views
        rows.append(torch.stack([i, k], 1))
    return torch.cat(rows)


@dataclass
class GEstimate:
    """G_hat = max sampled ||grad_w sim(f(u), f(v))||: an empirical LOWER estimate of the sup of Assumption 2."""

    G: float
    mean: float
    n_pairs: int


def estimate_G(model: nn.Module, views: Tensor, n_pairs: int, generator: torch.Generator) -> GEstimate:
    """Estimate G (Assumption 2) on sampled pairs of the 2B views of a batch (see ``sample_pairs``)."""
    pairs = sample_pairs(views.shape[0], n_pairs, generator)
    norms = pair_grad_norms(model, views[pairs[:, 0]], views[pairs[:, 1]])
    return GEstimate(float(norms.max()), float(norms.mean()), int(norms.numel()))


@dataclass
class BetaEstimate:
    """beta_hat = max over kinds and directions of ||grad l(w + h d) - grad l(w)|| / h (||d|| = 1): an empirical
    LOWER estimate of the smoothness constant of Assumption 1 (a directional second derivative)."""

    beta: float
    ratios: dict[str, float]


@torch.no_grad()
def _shift(params: list[Tensor], d: Tensor, scale: float) -> None:
    i = 0
    for p in params:
        n = p.numel()
        p.add_(d[i:i + n].view_as(p).to(p.device, p.dtype), alpha=scale)
        i += n


def estimate_beta(model: nn.Module, views: Tensor, labels: Tensor, kinds: Iterable[str], tau: float,
                  directions: Mapping[str, Tensor], rel: float = 1e-3, anchors: str = "both") -> BetaEstimate:
    """Finite-difference estimate of beta (Assumption 1) at the model's weights w on one batch.

    For each loss kind and each named direction d (flat, any norm; normalised here), h = rel * ||w||:
    ratio = ||grad l(w + h d) - grad l(w)|| / h. The model's weights are restored exactly afterwards.
    """
    params = _params(model)
    w_norm = float(torch.sqrt(sum((p.detach().to(torch.float64) ** 2).sum() for p in params)))
    h = float(rel) * max(w_norm, 1.0)
    saved = [p.detach().clone() for p in params]
    ratios: dict[str, float] = {}
    try:
        for kind in kinds:
            g0 = batch_grad(model, views, labels, kind, tau, anchors)
            for name, d in directions.items():
                d = d.to(torch.float64)
                dn = float(torch.linalg.vector_norm(d))
                if dn == 0.0 or not math.isfinite(dn):
                    continue
                _shift(params, d / dn, h)
                g1 = batch_grad(model, views, labels, kind, tau, anchors)
                with torch.no_grad():
                    for p, s in zip(params, saved):
                        p.copy_(s)
                ratios[f"{kind}:{name}"] = float(torch.linalg.vector_norm(g1 - g0)) / h
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    if not ratios:
        raise ValueError("estimate_beta: no usable direction (all zero)")
    return BetaEstimate(max(ratios.values()), ratios)


def lem7_check(model: nn.Module, views: Tensor, labels: Tensor, tau: float, G: float, Delta: float | None,
               kind: str = "CL", anchors: str = "both") -> dict[str, Any]:
    """Lem. 7 at the model's weights w on one batch: ||grad l^kind(w) - grad l^NSCL(w)|| vs (G/tau) Delta.

    Also reported: ``realized_bound`` = (G/tau) mean_a 2 alpha_a, the proof's intermediate bound with the
    measured same-class softmax mass alpha_a of every anchor (theory.losses.softmax_mass_split) in place of
    its worst case Delta/2 (alpha_a <= r_a <= Delta/2 on the event of Cor. 3); ``nscl_invalid``: anchors without
    a negative (then the two losses average over different anchors and Lem. 7 is not claimed).
    """
    tau = check_tau(tau)
    g_k = batch_grad(model, views, labels, kind, tau, anchors)
    g_n = batch_grad(model, views, labels, "NSCL", tau, anchors)
    lhs = float(torch.linalg.vector_norm(g_k - g_n))
    with torch.no_grad():
        x = _views_to(model, views)
        _, z = model(x)
        B = z.shape[0] // 2
        bt = simclr_sim(z[:B], z[B:], labels.to(z.device), normalize=True, anchors=anchors)
        pos, den = bt.masks(kind)
        same = bt.anchor_labels[:, None] == bt.key_labels[None, :]  # type: ignore[index]
        ms = softmax_mass_split(bt.sim, den, same, tau)
        _, den_n = bt.masks("NSCL")
        nscl_invalid = int((den_n.sum(1) == 0).sum())
        alpha = ms.alpha.to(torch.float64)
    out = {
        "lhs": lhs,
        "grad_norm_kind": float(torch.linalg.vector_norm(g_k)),
        "grad_norm_nscl": float(torch.linalg.vector_norm(g_n)),
        "alpha_mean": float(alpha.mean()),
        "alpha_max": float(alpha.max()),
        "realized_bound": float(G / tau * 2.0 * alpha.mean()),
        "bound": None if Delta is None or not math.isfinite(Delta) else float(G / tau * Delta),
        "nscl_invalid": nscl_invalid,
    }
    out["holds"] = None if out["bound"] is None else bool(lhs <= out["bound"])
    out["holds_realized"] = bool(lhs <= out["realized_bound"] * (1 + 1e-9) + 1e-15)
    return out


# ----------------------------------------------------------------------------------------------------------
# App. C: Sigma(w), ||J||_2 and the Taylor remainder
def sigma_of_params(model: nn.Module, images: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
    """Sigma(w): cosine Gram (float64, flattened row-major) of the projections of ``images`` at the parameters
    ``params`` (name -> tensor; default the model's own) and the model's buffers, eval mode, differentiable.

    Shape: images (n, C, H, W) -> (n * n,).
    """
    x = _views_to(model, images)
    if params is None:
        _, z = model(x)
    else:
        state = dict(model.named_buffers())
        state.update(params)
        _, z = torch.func.functional_call(model, state, (x,))
    u = F.normalize(z.to(torch.float64), dim=1, eps=0.0)
    return (u @ u.T).reshape(-1)


def jacobian_spectral_norm(model: nn.Module, images: Tensor, iters: int = 8,
                           generator: torch.Generator | None = None) -> float:
    """||J(w)||_2 of w -> Sigma(w) on ``images`` by power iteration on J^T J (JVP + VJP, torch.func).

    Power iteration from a random start increases monotonically towards ||J||_2, so the value returned is a
    LOWER estimate of ||J(w)||_2, itself a lower estimate of L_Sigma = sup_w ||J(w)||_2 (App. C); Sigma on a
    subset of the reference items is a sub-block, so a subset also gives a lower estimate.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    w = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def f(*ps: Tensor) -> Tensor:
        return sigma_of_params(model, images, dict(zip(names, ps)))

    primals = tuple(w[n] for n in names)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.device, p.dtype) for p in primals]
    nrm = math.sqrt(sum(float((t * t).sum()) for t in v))
    v = [t / nrm for t in v]
    sigma_max = 0.0
    _, vjp_fn = torch.func.vjp(f, *primals)
    for _ in range(check_positive_int("iters", iters)):
        _, jv = torch.func.jvp(f, primals, tuple(v))
        sigma_max = max(sigma_max, float(torch.linalg.vector_norm(jv)))  # ||J v|| with ||v|| = 1
        jtjv = vjp_fn(jv)
        nrm = math.sqrt(sum(float((t.to(torch.float64) ** 2).sum()) for t in jtjv))
        if nrm == 0.0:
            break
        v = [t / nrm for t in jtjv]
    return sigma_max


def taylor_remainder(model: nn.Module, images: Tensor, w0: Mapping[str, Tensor], w1: Mapping[str, Tensor]) -> dict[str, float]:
    """R = Sigma(w1) - Sigma(w0) - J(w0)(w1 - w0) on ``images`` (App. C, Eq. 4), same buffers for both.

    Returns ||R||_F, ||dw||_2, ||Sigma(w1) - Sigma(w0)||_F, ||J dw||_F and M_hat = 2 ||R||_F / ||dw||^2, a LOWER
    estimate of M_Sigma (Eq. 6 assumes ||R||_F <= (M_Sigma / 2) ||dw||^2 for every step).
    """
    names = list(w0)
    p0 = tuple(w0[n].detach().to(torch.float64) for n in names)
    dw = tuple(w1[n].detach().to(torch.float64) - w0[n].detach().to(torch.float64) for n in names)

    def f(*ps: Tensor) -> Tensor:
        return sigma_of_params(model, images, dict(zip(names, ps)))

    with torch.no_grad():
        s0, jdw = torch.func.jvp(f, p0, dw)
        s1 = f(*tuple(w1[n].detach().to(torch.float64) for n in names))
    R = s1 - s0 - jdw
    dwn = math.sqrt(sum(float((t * t).sum()) for t in dw))
    r = float(torch.linalg.vector_norm(R))
    return {"R_fro": r, "dw_norm": dwn, "dsigma_fro": float(torch.linalg.vector_norm(s1 - s0)),
            "jdw_fro": float(torch.linalg.vector_norm(jdw)), "M_hat": 2.0 * r / dwn**2 if dwn > 0 else 0.0}
