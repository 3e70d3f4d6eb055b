"""One step's shared randomness: the batch of sample indices and the per-position view-slot pairs.

Items, batches, and the update
------------------------------
A reference set of N samples in C balanced classes; each sample j has V view slots, item (j, v) = j V + v,
and Sigma is the (N V) x (N V) similarity matrix of the items. At step t (shared by the two runs):

  * the *batch generator* draws B sample indices j_1..j_B, and the *augmentation generator* draws for each
    batch position s an ordered pair of distinct view slots (a_s, b_s) (its two "augmentations");

The anchors and keys these define, and their index bookkeeping on Sigma, are in simulate/layout.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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

