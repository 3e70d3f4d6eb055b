"""The Σ-space surrogate of Eq. 1 run alongside a real encoder (App. C), for ``bound_vs_empirical --surrogate``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import measure as ms

__all__ = ["MAX_SURROGATE_ITEMS", "SigmaSurrogate"]

#: the surrogate holds dense (2N)^2 float64 matrices (two runs + the networks' Sigma); keep them small
MAX_SURROGATE_ITEMS = 4096


class SigmaSurrogate:
    """Coupled CL / NSCL Sigma-space descent (simulate.step, Eq. 1) on the training set's items.

    Items: every training image j with two view slots v in {0, 1}: fixed augmentations drawn once
    (theory_seed); item (j, v) = 2 j + v. Sigma_0 = cosine Gram of the initial encoder's projections of the items
    (CL and NSCL start identical). Step t uses the trainer's batch indices and step size eta_t; the ordered pair
    of view slots per batch position is drawn from its own generator (as simulate.batches.draw_batch). Anchors:
    the paper's B anchors, loss CL (positive in the denominator) vs NSCL, ordered Sigma coordinates.
    """

    def __init__(self, s: Any) -> None:
        cfg, tr = s.cfg, s.trainer
        N = len(s.train)
        self.M = 2 * N
        if self.M > MAX_SURROGATE_ITEMS:
            raise ValueError(f"--surrogate keeps dense (2N)^2 matrices: needs 2 x (training set size) <= "
                             f"{MAX_SURROGATE_ITEMS}, got 2 x {N} = {self.M} (use --n-per-class / --classes)")
        g = torch.Generator().manual_seed(cfg.theory_seed + 7)
        v0 = tr.augment(s.train.images, g)
        v1 = tr.augment(s.train.images, g)
        self.items = torch.stack([v0, v1], 1).reshape(self.M, *v0.shape[1:]).float()
        self.item_labels = s.train.labels.cpu().repeat_interleave(2)
        self.orient_gen = torch.Generator().manual_seed(cfg.theory_seed + 11)
        _, z0 = tr.embed(s.contrastive, self.items)
        self.sigma0 = ms.cosine_gram(z0)
        self.sigma_cl = self.sigma0.clone()
        self.sigma_ns = self.sigma0.clone()
        self.tau = cfg.tau
        self.B = s.B
        self.g_norms: dict[str, list[float]] = {"CL": [], "NSCL": []}
        # subset of items on which L_Sigma and M_Sigma are estimated (a sub-block of Sigma: lower estimates)
        sub = torch.randperm(self.M, generator=torch.Generator().manual_seed(cfg.theory_seed + 13))[:64]
        self.sub_items = self.items[sub.sort().values]
        self.L_hat: dict[str, float] = {}
        self.M_hat: dict[str, float] = {}
        self.remainders: list[dict] = []

    def step(self, idx: Tensor, eta: float) -> None:
        from simulate.layout import build_layout
        from simulate.step import apply_step, compute_step

        idx = idx.cpu()
        B = idx.shape[0]
        a = torch.randint(2, (B,), generator=self.orient_gen)
        rows = 2 * idx + a
        cols = torch.cat([rows, 2 * idx + (1 - a)])
        geom = build_layout(rows, cols, self.item_labels[rows], self.item_labels[cols], self.M, False)
        st = compute_step(self.sigma_cl, self.sigma_ns, geom, self.tau)
        self.g_norms["CL"].append(float(torch.linalg.matrix_norm(st.U_cl)))
        self.g_norms["NSCL"].append(float(torch.linalg.matrix_norm(st.U_ns)))
        apply_step(self.sigma_cl, self.sigma_ns, st, float(eta), False)

    def constants(self, name: str) -> tuple[float | None, float | None, list[str]]:
        """(C_Sigma, M_Sigma, missing): C_Sigma = max(L^2 - 1, 1) (J J^T is singular: the diagonal of Sigma(w) is
        constant, so lambda_min(P) = 0 and ||P - I||_2 = max(lambda_max - 1, 1))."""
        missing = []
        L = self.L_hat.get(name)
        Mh = self.M_hat.get(name)
        if L is None:
            missing.append("L_Sigma")
        if Mh is None:
            missing.append("M_Sigma")
        C_sigma = None if L is None else max(L * L - 1.0, 1.0)
        return C_sigma, Mh, missing
