"""Array inputs of the metrics: numpy / torch dispatch, shape and dtype checks, one-line errors.

Shared by theory/alignment_features.py, theory/alignment_gram.py and theory/probes.py.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np



# Zero-variance detection threshold, in machine epsilons of the compute dtype (see
# theory/alignment_features.py).
_TOL_EPS = 1024.0


# --------------------------------------------------------------------------------------------- helpers
def _torch():
    return sys.modules.get("torch")


def _is_torch(x: object) -> bool:
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


def _as_2d(fn: str, name: str, x: object) -> Any:
    """Validate a feature matrix (numpy array / array-like / torch tensor) of shape (N, d), numeric."""
    if _is_torch(x):
        if x.ndim != 2:
            raise ValueError(f"{fn}: {name} must have shape (N, d), got shape {tuple(x.shape)}")
        if x.is_complex() or x.dtype == _torch().bool:
            raise ValueError(f"{fn}: {name} must be a real floating/integer tensor, got dtype={x.dtype}")
        return x.detach()
    try:
        a = np.asarray(x)
    except Exception:  # pragma: no cover - exotic objects
        raise ValueError(f"{fn}: {name} must be an array of shape (N, d), got {type(x).__name__}") from None
    if a.ndim != 2:
        raise ValueError(f"{fn}: {name} must have shape (N, d), got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{fn}: {name} must be a real numeric array, got dtype={a.dtype}")
    return a


def _pair(fn: str, X: object, Y: object) -> tuple[Any, Any]:
    """Validate both feature matrices; keep "Y is X" (one pass over the data instead of two)."""
    Xa = _as_2d(fn, "X", X)
    return Xa, (Xa if Y is X else _as_2d(fn, "Y", Y))


def _match_backend(fn: str, X: Any, Y: Any) -> tuple[Any, Any]:
    """Both numpy, or both torch on one device (a numpy partner is moved to the tensor's device)."""
    tx, ty = _is_torch(X), _is_torch(Y)
    if tx and ty:
        if X.device != Y.device:
            raise ValueError(f"{fn}: X and Y must be on the same device, got {X.device} and {Y.device}")
        return X, Y
    t = _torch()
    if tx:
        return X, t.as_tensor(Y, device=X.device)
    if ty:
        return t.as_tensor(X, device=Y.device), Y
    return X, Y


def _compute_dtype(fn: str, like: Any, dtype: Any) -> Any:
    """float64 by default; float32 / float64 as a numpy, torch or string dtype (torch dtype for torch input)."""
    t = _torch()
    if dtype is None:
        name = "float64"
    else:
        try:
            if t is not None and isinstance(dtype, t.dtype):
                name = str(dtype).replace("torch.", "")
            else:
                name = np.dtype(dtype).name
        except TypeError:
            name = repr(dtype)
        if name not in ("float32", "float64"):
            raise ValueError(f"{fn}: dtype must be float32 or float64, got dtype={dtype!r}")
    if _is_torch(like):
        return getattr(t, name)
    return np.dtype(name)


def _eps(dt: Any) -> float:
    if _torch() is not None and isinstance(dt, _torch().dtype):
        return float(_torch().finfo(dt).eps)
    return float(np.finfo(dt).eps)


def _check_n(fn: str, X: Any, Y: Any, n_min: int) -> int:
    nx, ny = int(X.shape[0]), int(Y.shape[0])
    if nx != ny:
        raise ValueError(f"{fn}: X and Y must have the same number of rows N, got {nx} and {ny}")
    if nx < n_min:
        raise ValueError(f"{fn}: needs N >= {n_min} rows (inputs), got N={nx}")
    if X.shape[1] < 1 or Y.shape[1] < 1:
        raise ValueError(f"{fn}: feature dimension must be >= 1, got X {tuple(X.shape)}, Y {tuple(Y.shape)}")
    return nx


def _f64(x: Any) -> Any:
    """float64 numpy copy of a small result (d x d moments, vectors) for the final scalar algebra."""
    if _is_torch(x):
        return x.detach().to(dtype=_torch().float64, device="cpu").numpy()
    return np.asarray(x, dtype=np.float64)


def _bad_row_error(fn: str, name: str, idx: int, nrm2: float, normalize: bool) -> ValueError:
    if normalize and nrm2 == 0.0:
        return ValueError(f"{fn}: row {idx} of {name} is all zeros, cosine similarity undefined")
    return ValueError(
        f"{fn}: row {idx} of {name} has non-finite squared norm {nrm2!r} (NaN/inf entries or |x| > 1e154)"
    )

