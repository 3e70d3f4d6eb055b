"""The optimiser of the adversarial search: L-BFGS-B over the box [-1, 1]^d with autograd gradients and random
restarts, applied to one objective (pair objectives over (x, x')).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from theory.constants import check_positive_int

from .objectives import Objective, _scalar
from .problem import DTYPE, SigmaProblem

__all__ = ["maximize_box", "search_claim", "hessian_pair_start"]


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
