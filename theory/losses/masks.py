"""Positive and denominator masks (P_a, D_a) of each loss kind CL, DCL, NSCL, SCL from ids and labels
(Sec. 3; the table in the docstring of ``theory.losses``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import _check_kind, _check_mask, _check_vector

__all__ = [
    "contrastive_masks",
]


def contrastive_masks(
    kind: str,
    anchor_ids: Tensor,
    key_ids: Tensor,
    anchor_labels: Tensor | None = None,
    key_labels: Tensor | None = None,
    self_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Positive and denominator masks (P_a, D_a) of the loss ``kind`` (table in the module docstring).

    CL / DCL / NSCL: P_a = {k : key_ids[k] == anchor_ids[a]} minus the anchor itself.
    SCL:             P_a = {k : key_labels[k] == anchor_labels[a]} minus the anchor itself.
    CL, SCL: D_a = all keys but the anchor itself; DCL: D_a = keys with a different id; NSCL: D_a = keys with a
    different label (Sec. 3, B_i^-). ``self_mask`` (True where key k IS anchor a) is removed from both masks;
    ``None`` means no key is an anchor (then an anchor's own copy among the keys would count as a positive).

    Shape: anchor_ids, anchor_labels (A,) integer; key_ids, key_labels (K,) integer; self_mask (A, K) bool.
    Returns (pos_mask, den_mask), both (A, K) bool.
    """
    kind = _check_kind(kind)
    anchor_ids = _check_vector("anchor_ids", anchor_ids)
    key_ids = _check_vector("key_ids", key_ids)
    A, K = anchor_ids.shape[0], key_ids.shape[0]
    if kind in ("NSCL", "SCL"):
        if anchor_labels is None or key_labels is None:
            raise ValueError(f"{kind} needs class labels, got anchor_labels=None or key_labels=None")
    if anchor_labels is not None:
        anchor_labels = _check_vector("anchor_labels", anchor_labels, A)
    if key_labels is not None:
        key_labels = _check_vector("key_labels", key_labels, K)
    not_self = None
    if self_mask is not None:
        not_self = ~_check_mask("self_mask", self_mask, torch.Size((A, K)))

    same_id = anchor_ids[:, None] == key_ids[None, :]
    if kind == "SCL":
        pos = anchor_labels[:, None] == key_labels[None, :]  # type: ignore[index]
    else:
        pos = same_id
    if kind in ("CL", "SCL"):
        den = torch.ones_like(same_id) if not_self is None else not_self.clone()
    elif kind == "DCL":
        den = ~same_id
    else:  # NSCL
        den = anchor_labels[:, None] != key_labels[None, :]  # type: ignore[index]
    if not_self is not None:
        pos = pos & not_self
        den = den & not_self
    return pos, den
