"""Index bookkeeping of one batch on Sigma: touched block, masks, multiset softmax preparation, scatter.

Item (j, v) = j V + v. Given a batch (simulate/batches.py):

  * anchors: rows r_s = (j_s, a_s), s = 1..B (B anchors, as the paper's batch loss, 1/B);
    keys: the 2B items (j_u, a_u), (j_u, b_u), u = 1..B; key id = batch position u, key label = y_{j_u};
    the anchor's own key (column s) is self-masked; its positive is the other view (j_s, b_s) (same id).
    A duplicate draw of the same sample at u != s is a same-class key with a different id (never a
    positive): it sits in the CL denominator and is removed from the NSCL one.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from theory.losses import PreparedMasks


class BatchLayout:
    """Index bookkeeping of one step (shared by both runs and the checks).

    rows (B,) anchor items; cols (2B,) key items; unique_rows (R,) / unique_cols (K,) the sorted unique rows /
    cols, with inverse maps row_inv (B,), col_inv (2B,); the rows are a subset of the cols (the anchor is its own
    self-masked key). The touched block is Sigma[block_rows][:, unique_cols]: block_rows = unique_rows (ordered)
    or unique_cols (symmetric: the update G + G^T also touches the transpose). anchor_block_row (B,) = row of
    each anchor within the block; block_index (R K,) = flat indices of the block in the (M, M) matrix;
    flat_rc (2 B^2,) = flat index of each (anchor, key) logit within the block (its gather and scatter index).

    Computed on first use (cached): the block-level data of the hot path (own_col, keys_per_col, n_r,
    row_scale, row_labels, col_labels, other_label_mask, self_only_entries, and the multiset PreparedMasks
    bprep_cl / bprep_ns of the (R, K) anchor rows); the (B, 2B) bool masks of theory.losses.contrastive_masks
    (same_class, pos_cl, den_cl, pos_ns, den_ns) and their PreparedMasks (prep_cl, prep_ns); the coalescing
    plan of the (B, 2B) scatter (ordered Sigma).

    diag_fixed: the diagonal Sigma(i, i) is a constant (SigmaConfig.diag = "fixed"), not a coordinate: every
    Sigma-space gradient built here (rows_to_block, to_block, sigma_grad) is zero on the block's diagonal
    entries ``diag_entries``, and the step (simulate/step.py) leaves them unchanged.
    """

    def __init__(self, B: int, M: int, symmetric: bool, rows: Tensor, cols: Tensor, anchor_labels: Tensor,
                 key_labels: Tensor, unique_rows: Tensor, row_inv: Tensor, unique_cols: Tensor, col_inv: Tensor,
                 diag_fixed: bool = False, dtype: torch.dtype = torch.float64):
        self.B, self.M, self.symmetric = int(B), int(M), bool(symmetric)
        self.diag_fixed = bool(diag_fixed)
        self.dtype = dtype  # of Sigma: the float tensors built here (biases, weights, masks) share it
        self.device = rows.device  # every index tensor lives beside Sigma (CPU or CUDA)
        self.rows, self.cols = rows, cols
        self.anchor_labels, self.key_labels = anchor_labels, key_labels
        self.unique_rows, self.row_inv, self.unique_cols, self.col_inv = unique_rows, row_inv, unique_cols, col_inv
        if symmetric:
            self.block_rows = unique_cols
            self.anchor_block_row = col_inv[:B]  # the anchor item is key s
        else:
            self.block_rows = unique_rows
            self.anchor_block_row = row_inv
        self.block_index = (self.block_rows[:, None] * M + unique_cols[None, :]).reshape(-1)

    @functools.cached_property
    def diag_entries(self) -> Tensor:
        """(D,) flat indices within the block of its diagonal entries Sigma(i, i): the anchor rows' own columns
        (ordered; D = R) or the block's diagonal (symmetric; D = K)."""
        if self.symmetric:
            K = int(self.unique_cols.shape[0])
            return torch.arange(K, device=self.device) * (K + 1)
        return torch.arange(self.R, device=self.device) * self.K + self.own_col

    def drop_diag_(self, blk: Tensor) -> Tensor:
        """Zero the diagonal entries of a block-shaped Sigma-space gradient when the diagonal is fixed (in place)."""
        if self.diag_fixed:
            blk.view(-1).index_fill_(0, self.diag_entries, 0.0)
        return blk

    @functools.cached_property
    def flat_rc(self) -> Tensor:
        """(2 B^2,) flat index of each (anchor, key) logit within the block."""
        return (self.anchor_block_row[:, None] * int(self.unique_cols.shape[0]) + self.col_inv[None, :]).reshape(-1)

    @property
    def block_shape(self) -> tuple[int, int]:
        return int(self.block_rows.shape[0]), int(self.unique_cols.shape[0])

    # -- masks (theory.losses conventions: key k < B is anchor k itself, key B + s its positive; ids = positions)
    @functools.cached_property
    def _ar(self) -> Tensor:
        return torch.arange(self.B, device=self.device)

    @functools.cached_property
    def same_class(self) -> Tensor:
        """(B, 2B) bool: key has the anchor's label (the anchor itself included)."""
        return self.anchor_labels[:, None] == self.key_labels[None, :]

    @functools.cached_property
    def pos_cl(self) -> Tensor:
        """(B, 2B) bool: the positive key B + s of anchor s (same id, not the anchor itself); CL and NSCL."""
        pos = torch.zeros(self.B, 2 * self.B, dtype=torch.bool, device=self.device)
        pos[self._ar, self.B + self._ar] = True
        return pos

    @property
    def pos_ns(self) -> Tensor:
        return self.pos_cl

    @functools.cached_property
    def den_cl(self) -> Tensor:
        """(B, 2B) bool: every key but the anchor itself (the paper's CL denominator)."""
        den = torch.ones(self.B, 2 * self.B, dtype=torch.bool, device=self.device)
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
        bias = torch.zeros(B, 2 * B, dtype=self.dtype, device=self.device)
        bias[ar, ar] = -math.inf
        ones = torch.ones(B, dtype=self.dtype, device=self.device)
        n_den = torch.full((B,), 2 * B - 1, dtype=torch.long, device=self.device)
        dev = self.device
        return PreparedMasks(self.pos_cl, self.den_cl, bias, ar, B + ar, ones, torch.ones(B, dtype=torch.bool, device=dev),
                             ar[:0], torch.ones(B, dtype=torch.long, device=dev), n_den)

    @functools.cached_property
    def prep_ns(self) -> PreparedMasks:
        """PreparedMasks of (pos_ns, den_ns); anchors without a negative are invalid (zero rows)."""
        B, ar = self.B, self._ar
        bias = torch.zeros(B, 2 * B, dtype=self.dtype, device=self.device).masked_fill_(self.same_class, -math.inf)
        n_den = 2 * B - self.same_class.sum(dim=1)
        valid = n_den > 0
        keep = ar[valid]
        dev = self.device
        return PreparedMasks(self.pos_ns, self.den_ns, bias, keep, B + keep,
                             torch.ones(keep.shape[0], dtype=self.dtype, device=dev),
                             valid, ar[~valid], torch.ones(B, dtype=torch.long, device=dev), n_den)

    # -- the step on the block (the hot path): one softmax row per unique anchor row over the unique key columns.
    # Anchor s on row r reads the keys of its denominator D_s; a column c holding m keys of D_s enters its
    # softmax m times, so the per-key softmax over D_s is the softmax of x_rc + log m(r, c) over the columns
    # (anchors sharing a row share D, as cols[s] = rows[s]). The anchors of row r add up to the block gradient
    # U[r] = (1/(B tau)) (n_r p_r - sum_{s on r} e_{pos(s)}) = (n_r / B) (p_r - pos_r/|P_r|)/tau.
    @property
    def R(self) -> int:
        return int(self.unique_rows.shape[0])

    @property
    def K(self) -> int:
        return int(self.unique_cols.shape[0])

    @functools.cached_property
    def own_col(self) -> Tensor:
        """(R,) column (within unique_cols) of each anchor row's own item."""
        return torch.searchsorted(self.unique_cols, self.unique_rows)

    @functools.cached_property
    def keys_per_col(self) -> Tensor:
        """(K,) number of keys on each unique column."""
        return torch.bincount(self.col_inv, minlength=self.K)

    @functools.cached_property
    def n_r(self) -> Tensor:
        """(R,) number of anchors on each unique row."""
        return torch.bincount(self.row_inv, minlength=self.R)

    @functools.cached_property
    def row_scale(self) -> Tensor:
        """(R,) n_r / B: the weight of a row's softmax in the batch gradient."""
        return self.n_r.to(self.dtype) / self.B

    @functools.cached_property
    def row_labels(self) -> Tensor:
        return torch.zeros(self.R, dtype=self.anchor_labels.dtype, device=self.device).scatter_(0, self.row_inv, self.anchor_labels)

    @functools.cached_property
    def col_labels(self) -> Tensor:
        return torch.zeros(self.K, dtype=self.key_labels.dtype, device=self.device).scatter_(0, self.col_inv, self.key_labels)

    @functools.cached_property
    def same_count(self) -> Tensor:
        """(B,) number of batch positions u with the anchor's label (the anchor itself included)."""
        _, inv, counts = torch.unique(self.anchor_labels, return_inverse=True, return_counts=True)
        return counts[inv]

    @functools.cached_property
    def other_label_mask(self) -> Tensor:
        """(R, K) float64: 1 where the column item's label differs from the row's (the NSCL-read entries)."""
        lr, lc = self.row_labels.to(self.dtype), self.col_labels.to(self.dtype)
        return (lr[:, None] - lc[None, :]).abs_().clamp_(max=1.0)  # integer labels: exactly 0 or 1

    @functools.cached_property
    def self_only_entries(self) -> Tensor:
        """(L,) flat (R, K) indices of the entries (r, own column) that no key of D_s reaches (only the self
        key sits there): outside every denominator of the row."""
        lone = self.keys_per_col[self.own_col] == 1
        return (torch.arange(self.R, device=self.device) * self.K + self.own_col)[lone]

    @functools.cached_property
    def _log_keys_per_col(self) -> Tensor:
        return torch.log(self.keys_per_col.to(self.dtype))

    @functools.cached_property
    def _pos_unique(self) -> tuple[Tensor, Tensor, Tensor]:
        """Unique (row, column) positives of the anchors, with the weights count / n_r."""
        K = self.K
        uk, counts = torch.unique(self.row_inv * K + self.col_inv[self.B:], return_counts=True)
        pr = uk // K
        return pr, uk % K, counts.to(self.dtype) / self.n_r[pr].to(self.dtype)

    def _block_positives(self, valid_rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The positives on valid rows (all anchors of a row share its validity)."""
        pr, pc, w = self._pos_unique
        if bool(valid_rows.all()):
            return pr, pc, w
        keep = valid_rows[pr]
        return pr[keep], pc[keep], w[keep]

    @functools.cached_property
    def bprep_cl(self) -> PreparedMasks:
        """Block PreparedMasks of CL: bias log m(r, c) with m = keys_per_col(c), minus 1 on the row's own column."""
        R, K = self.R, self.K
        bias = self._log_keys_per_col.expand(R, K).clone()
        own = torch.arange(R, device=self.device) * K + self.own_col
        bias.view(-1)[own] = torch.log((self.keys_per_col[self.own_col] - 1).to(self.dtype))
        valid = torch.ones(R, dtype=torch.bool, device=self.device)
        pr, pc, w = self._block_positives(valid)
        n_den = torch.full((R,), 2 * self.B - 1, dtype=torch.long, device=self.device)
        return PreparedMasks(None, None, bias, pr, pc, w, valid, pr[:0], self.n_r, n_den)

    @functools.cached_property
    def bprep_ns(self) -> PreparedMasks:
        """Block PreparedMasks of NSCL: bias log keys_per_col(c) on other-label columns, -inf elsewhere; rows without
        an other-label key are invalid (their anchors have no negative: zero gradient)."""
        R = self.R
        # log cnt - (1/other - 1): 1/1 - 1 = 0 and 1/0 - 1 = inf, so the bias is exactly log cnt or -inf
        bias = torch.sub(self._log_keys_per_col[None, :], torch.reciprocal(self.other_label_mask).sub_(1.0))
        n_neg = 2 * (self.B - self.same_count)  # (B,) keys with another label
        n_den = torch.zeros(R, dtype=torch.long, device=self.device).scatter_(0, self.row_inv, n_neg)
        valid = n_den > 0
        pr, pc, w = self._block_positives(valid)
        return PreparedMasks(None, None, bias, pr, pc, w, valid, (~valid).nonzero().squeeze(1), self.n_r, n_den)

    # -- the fused hot path (simulate/step.py, compute_step): both runs' blocks in one (2, R_b, K) buffer and one
    # softmax over their (2 R, K) anchor rows, with the biases of bprep_cl / bprep_ns applied without building them
    # (equal entry for entry: tests/test_step_fused.py)
    @functools.cached_property
    def own_flat(self) -> Tensor:
        """(R,) flat (R, K) index of each anchor row's own column."""
        return torch.arange(self.R, device=self.device) * self.K + self.own_col

    @functools.cached_property
    def own_bias(self) -> Tensor:
        """(R,) CL bias on the row's own column: log(keys_per_col - 1) (the self key is not in D_s; -inf if alone)."""
        return torch.log((self.keys_per_col[self.own_col] - 1).to(self.dtype))

    @functools.cached_property
    def same_label(self) -> Tensor:
        """(R, K) bool: the column item has the row's label (outside the NSCL denominator)."""
        return self.row_labels[:, None] == self.col_labels[None, :]

    @functools.cached_property
    def bpos_cl(self) -> tuple[Tensor, Tensor, Tensor]:
        """(pos_rows, pos_cols, pos_w) of bprep_cl (every row valid)."""
        return self._pos_unique

    @functools.cached_property
    def ns_valid(self) -> Tensor:
        """(R,) bool: rows with an other-label key (bprep_ns.valid)."""
        n_neg = 2 * (self.B - self.same_count)
        return torch.zeros(self.R, dtype=torch.long, device=self.device).scatter_(0, self.row_inv, n_neg) > 0

    @functools.cached_property
    def ns_invalid_rows(self) -> Tensor:
        """(I,) rows without an other-label key (bprep_ns.invalid_rows)."""
        return (~self.ns_valid).nonzero().squeeze(1)

    @functools.cached_property
    def bpos_ns(self) -> tuple[Tensor, Tensor, Tensor]:
        """(pos_rows, pos_cols, pos_w) of bprep_ns (the positives of the valid rows)."""
        return self._block_positives(self.ns_valid)

    def gather_pair(self, sigma_cl: Tensor, sigma_ns: Tensor) -> Tensor:
        """Both runs' touched blocks in one new buffer (two flat gathers). Shape: (M, M) x 2 -> (2,) + block_shape."""
        out = torch.empty((2, self.block_index.shape[0]), dtype=sigma_cl.dtype, device=sigma_cl.device)
        torch.index_select(sigma_cl.view(-1), 0, self.block_index, out=out[0])
        torch.index_select(sigma_ns.view(-1), 0, self.block_index, out=out[1])
        return out.view((2,) + self.block_shape)

    def softmax_pair(self, s2: Tensor, tau: float) -> tuple[Tensor, Tensor]:
        """(p, x) of both runs at once: x[0] = s2[0]/tau + bprep_cl.den_bias, x[1] = s2[1]/tau + bprep_ns.den_bias,
        p = their row softmaxes (zero rows for NSCL-invalid rows); the same values as
        theory.losses.contrastive_softmax_prepared on each (the same elementwise operations, one softmax kernel over
        the 2 R rows). Shape: s2 (2, R, K) -> p, x (2, R, K)."""
        R, K = self.R, self.K
        t = torch.tensor(tau, dtype=s2.dtype, device=s2.device)
        x = torch.addcdiv(self._log_keys_per_col, s2, t)  # log m(c) + s/tau (bias broadcast over rows)
        xf, sf = x.view(2, R * K), s2.reshape(2, R * K)
        own = self.own_flat
        xf[0].index_copy_(0, own, torch.addcdiv(self.own_bias, sf[0].index_select(0, own), t))
        x[1].masked_fill_(self.same_label, -math.inf)  # -inf + s/tau = -inf: the NSCL bias
        p = torch.softmax(x.view(2 * R, K), dim=1).view(2, R, K)
        if self.ns_invalid_rows.numel():
            p[1].index_fill_(0, self.ns_invalid_rows, 0.0)
        return p, x

    def logit_rows(self, blk: Tensor) -> Tensor:
        """(R, K) logits of the unique anchor rows: the block itself (ordered) or its anchor rows (symmetric)."""
        return blk.index_select(0, self.own_col) if self.symmetric else blk

    def rows_to_block(self, U_rows: Tensor) -> Tensor:
        """Block gradient from the (R, K) anchor-row gradient (symmetric: embedded and symmetrised)."""
        if not self.symmetric:
            return self.drop_diag_(U_rows)
        out = torch.zeros(self.block_shape, dtype=U_rows.dtype, device=U_rows.device).index_copy_(0, self.own_col, U_rows)
        return self.drop_diag_(self._symmetrise(out))

    # -- scatter (B, 2B) -> block
    @functools.cached_property
    def _plan(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """Ordered Sigma: (rep, src, dst). Every block entry (r, c) takes the logit (first anchor of row r, first
        key of column c) (rep) and then adds the other (anchor, key) pairs on it (src -> dst; a fixed order).
        None in symmetric mode (rows without anchors: plain index_add_)."""
        if self.symmetric:
            return None
        B, R, K = self.B, int(self.unique_rows.shape[0]), int(self.unique_cols.shape[0])
        ar, ak = self._ar, torch.arange(2 * B, device=self.device)
        first_s = torch.full((R,), B, dtype=torch.long, device=self.device).scatter_reduce_(0, self.row_inv, ar, "amin")
        first_k = torch.full((K,), 2 * B, dtype=torch.long, device=self.device).scatter_reduce_(0, self.col_inv, ak, "amin")
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
            return torch.zeros(R * K, dtype=g.dtype, device=self.device).index_add_(0, self.flat_rc, gf).view(R, K)
        rep, src, dst = plan
        out = gf.index_select(0, rep)
        if src.numel():
            out.index_add_(0, dst, gf.index_select(0, src))
        return out.view(R, K)

    def coalesce_cols(self, g: Tensor) -> Tensor:
        """Per-anchor rows on the unique key items: duplicate keys summed. Shape: (B, 2B) -> (B, K)."""
        K = self.unique_cols.shape[0]
        idx = (torch.arange(g.shape[0], device=self.device)[:, None] * K + self.col_inv[None, :]).reshape(-1)
        return torch.zeros(g.shape[0] * K, dtype=g.dtype, device=self.device).index_add_(0, idx, g.reshape(-1)).view(-1, K)

    def to_block(self, gc: Tensor, scale: float) -> Tensor:
        """Sigma-space matrix on the touched block: scale * sum of the anchors' coalesced rows, symmetrised
        (X + X^T - Diag X) in symmetric mode. Shape: (B, K) -> block_shape."""
        R, K = self.block_shape
        idx = (self.anchor_block_row[:, None] * K + torch.arange(K, device=self.device)[None, :]).reshape(-1)
        out = torch.zeros(R * K, dtype=gc.dtype, device=self.device).index_add_(0, idx, gc.reshape(-1)).view(R, K)
        if scale != 1.0:
            out.mul_(scale)
        return self.drop_diag_(self._symmetrise(out))

    def sigma_grad(self, g: Tensor) -> Tensor:
        """Batch gradient wrt Sigma (Eq. 1, 1/B) from per-anchor logit gradients: the (B, 2B) entries summed
        onto the unique touched entries (``scatter_sum``), times 1/B, symmetrised in symmetric mode. -> block."""
        out = self.scatter_sum(g)
        out.mul_(1.0 / self.B)
        return self.drop_diag_(self._symmetrise(out))

    def gather_block(self, sigma: Tensor) -> Tensor:
        """Sigma on the touched block (a copy; one flat gather). Shape: (M, M) -> block_shape."""
        return sigma.view(-1).index_select(0, self.block_index).view(self.block_shape)

    def block_sim(self, blk: Tensor) -> Tensor:
        """(B, 2B) logits of the batch (anchor s, key k) from the block."""
        return blk.reshape(-1).index_select(0, self.flat_rc).view(self.B, 2 * self.B)

    def gather(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(block, sim): Sigma on the touched block (a copy; one flat gather) and the (B, 2B) logits of the
        batch (a gather from the block)."""
        blk = sigma.view(-1).index_select(0, self.block_index)
        sim = blk.index_select(0, self.flat_rc).view(self.B, 2 * self.B)
        return blk.view(self.block_shape), sim


def build_layout(
    rows: Tensor, cols: Tensor, anchor_labels: Tensor, key_labels: Tensor, M: int, symmetric: bool,
    diag: str = "free", dtype: torch.dtype = torch.float64,
) -> BatchLayout:
    """BatchLayout of a batch given its anchor items ``rows`` (B,) and key items ``cols`` (2B,) in [0, M).

    Key k < B is anchor k's own item (self-masked); key B + s is anchor s's positive (id = batch position).
    ``diag``: "free" (every touched entry a coordinate: Eq. 1 as written; the default of this low-level builder)
    or "fixed" (Sigma(i, i) a constant; SigmaConfig's default). See simulate/config.py. ``dtype``: Sigma's float
    dtype (float64 or float32); the layout's tensors live on ``rows.device``.
    """
    if diag not in ("fixed", "free"):
        raise ValueError(f"diag must be one of fixed, free, got diag={diag!r}")
    B = int(rows.shape[0])
    if cols.shape[0] != 2 * B or not torch.equal(cols[:B], rows):
        raise ValueError("cols must be [rows; positives] of length 2B (anchor s is key s)")
    unique_rows, row_inv = torch.unique(rows, return_inverse=True)
    unique_cols, col_inv = torch.unique(cols, return_inverse=True)
    return BatchLayout(B, int(M), bool(symmetric), rows, cols, anchor_labels, key_labels, unique_rows, row_inv,
                       unique_cols, col_inv, diag_fixed=diag == "fixed", dtype=dtype)
