"""Probes of a representation beyond alignment: NCCC accuracy (Sec. 5, Tab. 1) and the relative weight gap
(Sec. 5.1, Fig. 6).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ._arrays import _as_2d, _bad_row_error, _is_torch, _match_backend, _torch

__all__ = ["nccc_accuracy", "relative_weight_gap", "WeightGap"]


# ------------------------------------------------------------------------------------------------ NCCC
def _labels_np(fn: str, name: str, y: object, n: int) -> np.ndarray:
    a = y.detach().cpu().numpy() if _is_torch(y) else np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{fn}: {name} must have shape ({n},), got shape {a.shape}")
    if a.dtype.kind not in "iub":
        raise ValueError(f"{fn}: {name} must be integer class labels, got dtype={a.dtype}")
    return a.astype(np.int64)


def nccc_accuracy(
    train_feats: Any,
    train_labels: Any,
    test_feats: Any,
    test_labels: Any,
    normalize: bool = True,
    *,
    chunk_size: int = 8192,
) -> float:
    """Nearest class-centre classifier (NCCC) accuracy (Galanti et al., 2022; paper Sec. 5, Tab. 1).

    Class centres mu_c = mean of the training features of class c; a test point is assigned the class
    argmin_c ||f(x) - mu_c||_2 = argmax_c (f(x) . mu_c - ||mu_c||^2 / 2) (ties: smallest label).
    normalize=True l2-normalises every feature row (train and test) BEFORE the centres are formed; the
    centres themselves are not renormalised. Computed in float64 (torch inputs on their device).

    Shape: train_feats (N, d), train_labels (N,) int, test_feats (M, d), test_labels (M,) int.
    Returns the fraction of test points classified correctly, in [0, 1].
    Raises ValueError for mismatched shapes, a zero row with normalize=True, or a test label that has no
    training example (it could never be predicted).
    """
    fn = "nccc_accuracy"
    Xtr, Xte = _as_2d(fn, "train_feats", train_feats), _as_2d(fn, "test_feats", test_feats)
    if Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(
            f"{fn}: train_feats and test_feats must have the same dimension, "
            f"got {Xtr.shape[1]} and {Xte.shape[1]}"
        )
    if Xtr.shape[0] < 1 or Xte.shape[0] < 1:
        raise ValueError(f"{fn}: needs >= 1 train and test row, got {Xtr.shape[0]} and {Xte.shape[0]}")
    ytr = _labels_np(fn, "train_labels", train_labels, int(Xtr.shape[0]))
    yte = _labels_np(fn, "test_labels", test_labels, int(Xte.shape[0]))
    classes, inv = np.unique(ytr, return_inverse=True)
    missing = np.setdiff1d(np.unique(yte), classes)
    if missing.size:
        raise ValueError(
            f"{fn}: test label {int(missing[0])} has no training example (training classes: {classes.size})"
        )
    Xtr, Xte = _match_backend(fn, Xtr, Xte)
    n_cls = classes.size
    torch_in = _is_torch(Xtr)
    t = _torch()

    def prep(Z, name, s, e):
        b = Z[s:e].to(t.float64) if torch_in else Z[s:e].astype(np.float64)
        nrm2 = (b * b).sum(1)
        bad = ~(t.isfinite(nrm2) if torch_in else np.isfinite(nrm2))
        if normalize:
            bad = bad | (nrm2 == 0)
        if bool(bad.any()):
            i = int(t.nonzero(bad)[0, 0]) if torch_in else int(np.flatnonzero(bad)[0])
            raise _bad_row_error(fn, name, s + i, float(nrm2[i]), bool(normalize))
        if normalize:
            b = b / nrm2.sqrt()[:, None] if torch_in else b / np.sqrt(nrm2)[:, None]
        return b

    d = int(Xtr.shape[1])
    if torch_in:
        sums = t.zeros((n_cls, d), dtype=t.float64, device=Xtr.device)
        inv_t = t.as_tensor(inv, device=Xtr.device)
    else:
        sums = np.zeros((n_cls, d), dtype=np.float64)
    for s in range(0, int(Xtr.shape[0]), chunk_size):
        e = min(int(Xtr.shape[0]), s + chunk_size)
        b = prep(Xtr, "train_feats", s, e)
        if torch_in:
            sums.index_add_(0, inv_t[s:e], b)
        else:
            _add_by_class(sums, inv[s:e], b)
    counts = np.bincount(inv, minlength=n_cls).astype(np.float64)
    if torch_in:
        mu = sums / t.as_tensor(counts, device=Xtr.device)[:, None]
    else:
        mu = sums / counts[:, None]
    half_sq = 0.5 * (mu * mu).sum(1)
    correct = 0
    for s in range(0, int(Xte.shape[0]), chunk_size):
        e = min(int(Xte.shape[0]), s + chunk_size)
        b = prep(Xte, "test_feats", s, e)
        score = b @ mu.T - half_sq[None, :]
        pred = score.argmax(1)
        pred = pred.cpu().numpy() if torch_in else pred
        correct += int((classes[pred] == yte[s:e]).sum())
    return correct / int(Xte.shape[0])


def _add_by_class(sums: np.ndarray, idx: np.ndarray, b: np.ndarray) -> None:
    """sums[c] += sum of the rows b[i] with idx[i] == c (sorted segments, np.add.reduceat)."""
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    starts = np.flatnonzero(np.r_[True, sidx[1:] != sidx[:-1]])
    sums[sidx[starts]] += np.add.reduceat(b[order], starts, axis=0)


# ------------------------------------------------------------------------------------- weight gap
class WeightGap(NamedTuple):
    """Relative weight gap of Sec. 5.1 / Fig. 6: per entry ||w_a - w_b||_F / (0.5 (||w_a||_F + ||w_b||_F))."""

    per_layer: dict[str, float]
    total: float  # sum over layers (the paper's formula)

    @property
    def mean(self) -> float:
        """Average over layers (Fig. 6 speaks of the "average weight gap")."""
        return self.total / len(self.per_layer)


_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _np_weight(v: Any) -> Any:
    if _is_torch(v):
        return v.detach()
    return np.asarray(v)


def relative_weight_gap(
    model_a_state: Mapping[str, Any],
    model_b_state: Mapping[str, Any],
    keys: Iterable[str] | None = None,
) -> WeightGap:
    """Relative weight gap (Sec. 5.1):  sum_l ||w_a^l - w_b^l||_F / (0.5 (||w_a^l||_F + ||w_b^l||_F)).

    Operates on state_dict-style mappings name -> tensor/array; each entry is one "layer" l (weights and
    biases are separate entries). keys=None uses every floating-point entry present in both, except
    BatchNorm running statistics (names ending in running_mean / running_var / num_batches_tracked), which
    are buffers, not weights. When both w_a^l and w_b^l are exactly zero the layers are identical and the
    gap is 0 (not 0/0). Norms in float64.

    Returns WeightGap(per_layer: dict name -> gap, total: sum of the gaps); ``.mean`` averages them.
    Raises ValueError for different key sets, a missing key, mismatched shapes, non-finite weights or an
    empty selection.
    """
    fn = "relative_weight_gap"
    if not isinstance(model_a_state, Mapping) or not isinstance(model_b_state, Mapping):
        raise ValueError(f"{fn}: states must be mappings name -> tensor, got {type(model_a_state).__name__}, "
                         f"{type(model_b_state).__name__}")
    if keys is None:
        ka, kb = set(model_a_state), set(model_b_state)
        if ka != kb:
            diff = sorted(ka ^ kb)
            raise ValueError(f"{fn}: the two states have different keys, e.g. {diff[0]!r} is in only one")

        def is_float(v: Any) -> bool:
            w = _np_weight(v)
            return w.dtype.is_floating_point if _is_torch(w) else w.dtype.kind == "f"

        sel = [k for k in model_a_state if not k.endswith(_BN_BUFFERS) and is_float(model_a_state[k])]
    else:
        if isinstance(keys, str):
            raise ValueError(f"{fn}: keys must be an iterable of names, got the string {keys!r}")
        sel = list(keys)
        for k in sel:
            if k not in model_a_state or k not in model_b_state:
                where = "model_a_state" if k not in model_a_state else "model_b_state"
                raise ValueError(f"{fn}: key {k!r} missing from {where}")
    if not sel:
        raise ValueError(f"{fn}: no floating-point weights selected")
    gaps: dict[str, float] = {}
    for k in sel:
        a, b = _np_weight(model_a_state[k]), _np_weight(model_b_state[k])
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"{fn}: {k!r} has shape {tuple(a.shape)} in model a and {tuple(b.shape)} in model b")
        if _is_torch(a) or _is_torch(b):
            t = _torch()
            a = t.as_tensor(a).to(t.float64)
            b = t.as_tensor(b).to(device=a.device, dtype=t.float64)
            na, nb = float(t.linalg.vector_norm(a)), float(t.linalg.vector_norm(b))
            nd = float(t.linalg.vector_norm(a - b))
        else:
            a, b = a.astype(np.float64), b.astype(np.float64)
            na, nb = float(np.linalg.norm(a.ravel())), float(np.linalg.norm(b.ravel()))
            nd = float(np.linalg.norm((a - b).ravel()))
        if not (math.isfinite(na) and math.isfinite(nb) and math.isfinite(nd)):
            raise ValueError(f"{fn}: {k!r} has non-finite weights")
        gaps[k] = 0.0 if na + nb == 0.0 else nd / (0.5 * (na + nb))
    return WeightGap(gaps, float(sum(gaps.values())))
