"""Encoder-training helper: the two-view SimCLR similarity batch (sim, ids, labels, self mask) that the
losses take (Sec. 3; Chen et al. 2020).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import _check_vector
from .masked_loss import contrastive_loss
from .masks import contrastive_masks

__all__ = [
    "SimCLRBatch",
    "simclr_sim",
]


class SimCLRBatch(NamedTuple):
    """Two-view similarity batch from ``simclr_sim``; all fields are keyword arguments of ``contrastive_loss``.

    Shape: sim (A, K); anchor_ids (A,); key_ids (K,); anchor_labels (A,) or None; key_labels (K,) or None;
    self_mask (A, K) bool. Use ``batch.loss(kind, tau)`` or ``contrastive_loss(**batch._asdict(), kind=..,
    tau=..)``.
    """

    sim: Tensor
    anchor_ids: Tensor
    key_ids: Tensor
    anchor_labels: Tensor | None
    key_labels: Tensor | None
    self_mask: Tensor

    def masks(self, kind: str) -> tuple[Tensor, Tensor]:
        """(pos_mask, den_mask) of this batch for ``kind``; see ``contrastive_masks``."""
        return contrastive_masks(
            kind, self.anchor_ids, self.key_ids, self.anchor_labels, self.key_labels, self.self_mask
        )

    def loss(self, kind: str, tau: float, reduction: str = "mean") -> Tensor:
        """``contrastive_loss`` of this batch."""
        return contrastive_loss(**self._asdict(), kind=kind, tau=tau, reduction=reduction)


def simclr_sim(
    z1: Tensor,
    z2: Tensor,
    labels: Tensor | None = None,
    normalize: bool = True,
    anchors: str = "both",
) -> SimCLRBatch:
    """Two-view SimCLR similarity batch for encoder training (Sec. 3; Chen et al. 2020).

    Keys are the 2B views [z1; z2]; ids = sample position in the batch (0..B-1, repeated for the two views),
    labels repeated likewise. sim = cosine similarities (F.normalize, eps 1e-12, then matmul) or raw dot
    products if ``normalize=False``.
      anchors="both":  rows = [z1; z2], sim (2B, 2B): SimCLR / NT-Xent symmetrised (every view is an anchor).
      anchors="first": rows = z1, sim (B, 2B): the paper's form, one anchor x_i per sample with denominator
                       {x_j : j != i} + {x'_j : all j} (Sec. 3).
    self_mask marks each anchor's own column. ``batch.loss(kind, tau)`` then gives SimCLR/NT-Xent ("CL"),
    DCL ("DCL"), NSCL ("NSCL", needs labels) and SupCon L_out ("SCL", needs labels).

    Shape: z1, z2 (B, d); labels (B,) integer or None. Returns SimCLRBatch.
    """
    if not isinstance(z1, Tensor) or not isinstance(z2, Tensor):
        raise ValueError(f"z1 and z2 must be torch.Tensors, got {type(z1).__name__} and {type(z2).__name__}")
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both have shape (B, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if anchors not in ("both", "first"):
        raise ValueError(f"anchors must be 'both' or 'first', got anchors={anchors!r}")
    B = z1.shape[0]
    if B < 1:
        raise ValueError(f"batch size must be >= 1, got z1 of shape {tuple(z1.shape)}")
    if labels is not None:
        labels = _check_vector("labels", labels, B)
    if normalize:
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
    keys = torch.cat([z1, z2], dim=0)
    rows = keys if anchors == "both" else z1
    sim = rows @ keys.T
    A = rows.shape[0]
    dev = z1.device
    ids = torch.arange(B, device=dev)
    key_ids = torch.cat([ids, ids])
    anchor_ids = key_ids if anchors == "both" else ids
    self_mask = torch.eye(A, 2 * B, dtype=torch.bool, device=dev)
    if labels is None:
        key_labels = anchor_labels = None
    else:
        labels = labels.to(dev)
        key_labels = torch.cat([labels, labels])
        anchor_labels = key_labels if anchors == "both" else labels
    return SimCLRBatch(sim, anchor_ids, key_ids, anchor_labels, key_labels, self_mask)
