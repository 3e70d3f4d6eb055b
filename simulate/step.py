"""One coupled CL / NSCL step of Eq. 1 on the touched block, and the full drift.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", Sec. 4.1 (Eq. 1,
Thm. 1, Cors. 1-2) and App. D (Lemmas 1-8).

  * the per-anchor loss of o in {CL, NSCL} reads sim^o = Sigma^o[rows, keys] (B x 2B); its gradient wrt Sigma
    is G^o = (1/B) sum_s g_s with g_s = (p_s - e_pos(s))/tau on row r_s (theory.losses, Lemmas 2-3), entries
    read twice by the loss (duplicate keys / anchors) *summed* (chain rule); Sigma^o <- Sigma^o - eta_t G^o.

How a step is computed (the same numbers, to rounding; tests/test_simulate.py checks both ways): the touched
entries are the block Sigma[unique_rows][:, unique_cols] of the R unique anchor rows and K unique key columns; it
is gathered once per run (one flat index_select), and the gradient is formed directly on it: anchors sharing a row share
their denominator (cols[s] = rows[s]), and a column holding m keys of D_s enters their softmax m times, so
every unique row needs ONE softmax of x_rc + log m(r, c) over the K columns (theory.losses.
contrastive_softmax_prepared with a multiset bias, BatchLayout.bprep_cl / bprep_ns), and
G[r] = (n_r/B) (p_r - pos_r/n_r)/tau (n_r anchors on row r; theory.losses.contrastive_grad_from_softmax).
The update blk - eta G is formed in one pass from p and written back with one index_copy_ per run. The
(B, 2B) logits, per-anchor gradients and their scatter (BatchLayout.sigma_grad) are computed only on request
(checks of the symmetric parameterisation, tests). What bounds a step at large N: reading and writing the two
R x K blocks scattered over 2 x (N V)^2 doubles (memory traffic; benchmarks/bench_sigma.py measures this floor).

Fused form (issue 8, throughput): compute_step gathers both runs' blocks into one (2, R_b, K) buffer and takes one
softmax over their 2 R anchor rows, with the multiset biases of bprep_cl / bprep_ns applied in place
(BatchLayout.softmax_pair: log m(c) broadcast, the own column's log(m - 1), -inf on same-label NSCL columns), and
apply_step updates both in one addcmul / clamp. The run's advance calls step_and_apply, which does the same per chunk
of ROWS_PER_CHUNK block rows (gather, softmax, update, write-back), so the write-back finds the Sigma cache lines the
gather loaded. Both perform exactly the elementwise operations and row softmaxes of the reference path
(step_from_blocks + the per-run update), so runs are bit-identical to it (tests/test_step_fused.py).

Incremental drift: ||Sigma^CL - Sigma^NSCL||_F^2 is updated with the touched entries only (old squares out,
new squares in); ``full_drift`` recomputes it (tests; evals.csv ``drift_full``).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from theory.losses import (
    MaskedSoftmax,
    PreparedMasks,
    contrastive_grad_from_softmax,
    contrastive_grad_prepared,
    contrastive_softmax_prepared,
)

from .layout import BatchLayout


class StepTensors:
    """Everything one coupled step computes before writing Sigma (read by the checks).

    blk_cl / blk_ns: Sigma^CL / Sigma^NSCL on the touched block BEFORE the update (copies);
    sm_cl / sm_ns: theory.losses.MaskedSoftmax of the (R, K) anchor rows of the block (multiset softmax over the
    unique key columns, BatchLayout.bprep_cl / bprep_ns): p_cl = the CL softmax at Sigma^CL, q_ns = the NSCL softmax
    at Sigma^NSCL (zero rows where the row's anchors have no negative).
    On first use: U_cl / U_ns, the Sigma-space batch gradients G^CL(Sigma^CL), G^NSCL(Sigma^NSCL) on the block;
    sim_cl / sim_ns (B, 2B) per-(anchor, key) logits, g_cl / g_ns (B, 2B) per-anchor logit gradients
    (theory.losses on the (B, 2B) masks), gc_cl / gc_ns (B, K) those rows coalesced onto the unique key items;
    diff = blk_cl - blk_ns.
    """

    def __init__(self, layout: BatchLayout, tau: float, blk_cl: Tensor, blk_ns: Tensor, sm_cl: MaskedSoftmax,
                 sm_ns: MaskedSoftmax):
        self.layout, self.tau = layout, tau
        self.blk_cl, self.blk_ns = blk_cl, blk_ns
        self.sm_cl, self.sm_ns = sm_cl, sm_ns
        self.p_cl, self.q_ns = sm_cl.p, sm_ns.p
        # compute_step's fused form: blk2 = stack(blk_cl, blk_ns) (2,) + block_shape, p2 = stack(p_cl, q_ns)
        self.blk2: Tensor | None = None
        self.p2: Tensor | None = None

    def _U(self, p: Tensor, prep: PreparedMasks) -> Tensor:
        g = self.layout
        return g.rows_to_block(contrastive_grad_from_softmax(p, prep, self.tau, g.row_scale))

    @functools.cached_property
    def U_cl(self) -> Tensor:
        return self._U(self.p_cl, self.layout.bprep_cl)

    @functools.cached_property
    def U_ns(self) -> Tensor:
        return self._U(self.q_ns, self.layout.bprep_ns)

    @functools.cached_property
    def sim_cl(self) -> Tensor:
        return self.layout.block_sim(self.blk_cl)

    @functools.cached_property
    def sim_ns(self) -> Tensor:
        return self.layout.block_sim(self.blk_ns)

    @functools.cached_property
    def g_cl(self) -> Tensor:
        return contrastive_grad_prepared(self.sim_cl, self.layout.prep_cl, self.tau).grad

    @functools.cached_property
    def g_ns(self) -> Tensor:
        return contrastive_grad_prepared(self.sim_ns, self.layout.prep_ns, self.tau).grad

    @functools.cached_property
    def gc_cl(self) -> Tensor:
        return self.layout.coalesce_cols(self.g_cl)

    @functools.cached_property
    def gc_ns(self) -> Tensor:
        return self.layout.coalesce_cols(self.g_ns)

    def float64_cpu(self) -> "StepTensors":
        """The same step recomputed in float64 on the CPU from the (exactly representable) blocks of this one: what
        the per-step checks read, so that a float32 or CUDA run is checked with the float64 rounding the checks'
        tolerances assume (simulate/claims.py). ``self`` when already float64 on the CPU."""
        if self.blk_cl.dtype == torch.float64 and self.blk_cl.device.type == "cpu":
            return self
        g = self.layout
        cpu = lambda t: t.to("cpu")  # noqa: E731
        lay = BatchLayout(g.B, g.M, g.symmetric, cpu(g.rows), cpu(g.cols), cpu(g.anchor_labels), cpu(g.key_labels),
                          cpu(g.unique_rows), cpu(g.row_inv), cpu(g.unique_cols), cpu(g.col_inv),
                          diag_fixed=g.diag_fixed, dtype=torch.float64)
        f64 = lambda t: t.to(device="cpu", dtype=torch.float64)  # noqa: E731
        return step_from_blocks(lay, f64(self.blk_cl), f64(self.blk_ns), self.tau)

    @functools.cached_property
    def diff(self) -> Tensor:
        """Sigma^CL - Sigma^NSCL on the block before the update."""
        return self.blk_cl - self.blk_ns


def compute_step(sigma_cl: Tensor, sigma_ns: Tensor, layout: BatchLayout, tau: float, per_anchor: bool = True) -> StepTensors:
    """Gather both runs' blocks and their softmaxes; the batch gradients follow on first use (st.U_cl, st.U_ns).

    The gradients come from theory.losses (contrastive_softmax_prepared / contrastive_grad_from_softmax, the
    project's one gradient implementation) on the unique anchor rows of the block with multiset denominators
    (see BatchLayout.bprep_cl): every Sigma entry is read once, no (B, 2B) logits and no scatter. Equal (to
    rounding) to scattering the per-anchor gradients of the (B, 2B) logits (BatchLayout.sigma_grad;
    tests/test_simulate.py). ``per_anchor`` is accepted for compatibility; the per-anchor (B, 2B) quantities
    are computed on first use.
    """
    blk2 = layout.gather_pair(sigma_cl, sigma_ns)
    s2 = blk2.index_select(1, layout.own_col) if layout.symmetric else blk2
    p2, x2 = layout.softmax_pair(s2, tau)
    st = StepTensors(layout, tau, blk2[0], blk2[1], MaskedSoftmax(p2[0], x2[0]), MaskedSoftmax(p2[1], x2[1]))
    st.blk2, st.p2 = blk2, p2
    return st


def step_from_blocks(layout: BatchLayout, blk_cl: Tensor, blk_ns: Tensor, tau: float) -> StepTensors:
    """StepTensors of the two runs' touched blocks (as gathered by ``layout.gather_block``). Shape: block_shape."""
    sm_cl = contrastive_softmax_prepared(layout.logit_rows(blk_cl), layout.bprep_cl, tau)
    sm_ns = contrastive_softmax_prepared(layout.logit_rows(blk_ns), layout.bprep_ns, tau)
    return StepTensors(layout, tau, blk_cl, blk_ns, sm_cl, sm_ns)


def _updated_block(blk: Tensor, p: Tensor, prep: PreparedMasks, layout: BatchLayout, tau: float, eta: float,
                   U: Tensor | None) -> Tensor:
    """blk - eta G on the block. Ordered Sigma: one pass from the softmax, blk + p * (-eta n_r/(B tau)) and
    blk - eta (p - w) n_r/(B tau) on the positives (the gradient of contrastive_grad_from_softmax, never
    materialised); symmetric: blk - eta U with the symmetrised U. A fixed diagonal (layout.diag_fixed) keeps
    its block entries (U is zero there already)."""
    if layout.symmetric:
        return torch.add(blk, U, alpha=-eta)
    coef = layout.row_scale * (-eta / tau)
    new = torch.addcmul(blk, p, coef[:, None])
    r, c = prep.pos_rows, prep.pos_cols
    if r.numel():
        new.index_put_((r, c), blk[r, c] + (p[r, c] - prep.pos_w) * coef[r])
    if layout.diag_fixed:
        d = layout.diag_entries
        new.view(-1).index_copy_(0, d, blk.view(-1).index_select(0, d))
    return new


def apply_step(
    sigma_cl: Tensor, sigma_ns: Tensor, st: StepTensors, eta: float, clip: bool
) -> tuple[float, Tensor, Tensor]:
    """Write Sigma^o <- Sigma^o - eta G^o on the touched block (optionally clipped to [-1, 1]).

    Returns (d_drift_sq, new_cl_block, new_ns_block): the change of ||Sigma^CL - Sigma^NSCL||_F^2, computed from
    the touched entries only (unique entries, so the difference of sums of squares is exact bookkeeping).
    """
    g = st.layout
    sym = g.symmetric
    if st.blk2 is not None and not sym:
        return _apply_pair(sigma_cl, sigma_ns, st, eta, clip)
    new_cl = _updated_block(st.blk_cl, st.p_cl, g.bprep_cl, g, st.tau, eta, st.U_cl if sym else None)
    new_ns = _updated_block(st.blk_ns, st.q_ns, g.bprep_ns, g, st.tau, eta, st.U_ns if sym else None)
    if clip:
        new_cl.clamp_(-1.0, 1.0)
        new_ns.clamp_(-1.0, 1.0)
    block_index = g.block_index
    sigma_cl.view(-1).index_copy_(0, block_index, new_cl.view(-1))
    sigma_ns.view(-1).index_copy_(0, block_index, new_ns.view(-1))
    return _drift_change(new_cl, new_ns, st), new_cl, new_ns


def _drift_change(new_cl: Tensor, new_ns: Tensor, st: StepTensors) -> float:
    """||new_cl - new_ns||^2 - ||blk_cl - blk_ns||^2 on the block (float64 for float32 blocks: exact differences)."""
    if new_cl.dtype == torch.float64:
        d_new = float(torch.linalg.vector_norm(new_cl - new_ns))
        d_old = float(torch.linalg.vector_norm(st.diff))
    else:  # float32 Sigma: the drift bookkeeping in float64 (differences of float32 entries are exact there); the
        # float64 - float32 subtraction promotes its second operand entry by entry (one conversion pass fewer)
        d_new = float(torch.linalg.vector_norm(torch.sub(new_cl.double(), new_ns)))
        d_old = float(torch.linalg.vector_norm(torch.sub(st.blk_cl.double(), st.blk_ns)))
    return d_new * d_new - d_old * d_old


def _apply_pair(sigma_cl: Tensor, sigma_ns: Tensor, st: StepTensors, eta: float, clip: bool
                ) -> tuple[float, Tensor, Tensor]:
    """apply_step on compute_step's fused buffers (ordered Sigma): both runs' blk - eta G in one addcmul over
    (2, R, K), their positives and fixed diagonals, one clamp; the same elementwise operations as _updated_block
    (equal entry for entry)."""
    g, tau, blk2, p2 = st.layout, st.tau, st.blk2, st.p2
    coef = g.row_scale * (-eta / tau)
    new2 = torch.addcmul(blk2, p2, coef[:, None])
    for k, (r, c, w) in enumerate((g.bpos_cl, g.bpos_ns)):
        if r.numel():
            blk, p = blk2[k], p2[k]
            new2[k].index_put_((r, c), blk[r, c] + (p[r, c] - w) * coef[r])
    if g.diag_fixed:
        d = g.diag_entries
        flat_new, flat_old = new2.view(2, -1), blk2.view(2, -1)
        for k in range(2):
            flat_new[k].index_copy_(0, d, flat_old[k].index_select(0, d))
    if clip:
        new2.clamp_(-1.0, 1.0)
    new_cl, new_ns = new2[0], new2[1]
    sigma_cl.view(-1).index_copy_(0, g.block_index, new_cl.view(-1))
    sigma_ns.view(-1).index_copy_(0, g.block_index, new_ns.view(-1))
    return _drift_change(new_cl, new_ns, st), new_cl, new_ns


# rows of both runs' blocks processed while their Sigma cache lines stay in L3, with ONE intra-op thread (measured
# +10% at N = 4096, B = 512); with 2 threads every extra small op is a fork/join barrier and the chunked step was
# erratic on 2 shared cores (best-of windows between 45 and 105 steps/s), so there the block is one chunk
ROWS_PER_CHUNK = 128


def step_and_apply(sigma_cl: Tensor, sigma_ns: Tensor, layout: BatchLayout, tau: float, eta: float, clip: bool,
                   rows_per_chunk: int | None = None) -> tuple[StepTensors, float, Tensor, Tensor]:
    """compute_step followed by apply_step, the same numbers exactly (tests/test_step_fused.py), as the run's
    advance uses it. Ordered Sigma: the block rows are processed in chunks of ``rows_per_chunk`` (gather, softmax,
    update, clamp, write-back of one chunk before the next), so that the write-back finds the Sigma cache lines the
    gather loaded (the block rows are distinct Sigma rows: the chunks do not interact). Every row softmax and
    elementwise operation is the one compute_step / apply_step performs, and the drift is taken over the whole
    blocks afterwards, so the results are bit-identical. ``rows_per_chunk`` None: ROWS_PER_CHUNK with one intra-op
    thread, all rows (one chunk) otherwise. Symmetric Sigma: compute_step then apply_step.
    Returns (st, d_drift_sq, new_cl_block, new_ns_block)."""
    if layout.symmetric:
        st = compute_step(sigma_cl, sigma_ns, layout, tau)
        return (st,) + apply_step(sigma_cl, sigma_ns, st, eta, clip)
    g = layout
    R, K = g.R, g.K
    dt, dev = sigma_cl.dtype, sigma_cl.device
    blk2 = torch.empty((2, R, K), dtype=dt, device=dev)
    x2, p2, new2 = torch.empty_like(blk2), torch.empty_like(blk2), torch.empty_like(blk2)
    t = torch.tensor(tau, dtype=dt, device=dev)
    coef = g.row_scale * (-eta / tau)
    logm, own, own_bias, same = g._log_keys_per_col, g.own_flat, g.own_bias, g.same_label
    if rows_per_chunk is None:
        rows_per_chunk = ROWS_PER_CHUNK if torch.get_num_threads() == 1 else R
    starts = list(range(0, R, max(1, int(rows_per_chunk)))) + [R]
    bnd = torch.tensor(starts, device=dev)
    pos = [g.bpos_cl, g.bpos_ns]
    pos_cut = [torch.searchsorted(r, bnd).tolist() for r, _, _ in pos]
    inv = g.ns_invalid_rows
    inv_cut = torch.searchsorted(inv, bnd).tolist()
    diag = g.diag_entries if g.diag_fixed else None
    sig = (sigma_cl.view(-1), sigma_ns.view(-1))
    for i in range(len(starts) - 1):
        r0, r1 = starts[i], starts[i + 1]
        idx = g.block_index[r0 * K : r1 * K]
        for k in range(2):
            bf = blk2[k].view(-1)
            torch.index_select(sig[k], 0, idx, out=bf[r0 * K : r1 * K])
            xs, ps = x2[k, r0:r1], p2[k, r0:r1]
            torch.addcdiv(logm, blk2[k, r0:r1], t, out=xs)
            if k == 0:
                o = own[r0:r1]
                x2[0].view(-1).index_copy_(0, o, torch.addcdiv(own_bias[r0:r1], bf.index_select(0, o), t))
            else:
                xs.masked_fill_(same[r0:r1], -math.inf)
            torch.ops.aten._softmax.out(xs, 1, False, out=ps)
            if k == 1 and inv_cut[i + 1] > inv_cut[i]:
                p2[1].index_fill_(0, inv[inv_cut[i] : inv_cut[i + 1]], 0.0)
            ns = new2[k, r0:r1]
            torch.addcmul(blk2[k, r0:r1], ps, coef[r0:r1, None], out=ns)
            b0, b1 = pos_cut[k][i], pos_cut[k][i + 1]
            if b1 > b0:
                r, c, w = (v[b0:b1] for v in pos[k])
                blk, p = blk2[k], p2[k]
                new2[k].index_put_((r, c), blk[r, c] + (p[r, c] - w) * coef[r])
            if diag is not None:
                d = diag[r0:r1]
                new2[k].view(-1).index_copy_(0, d, bf.index_select(0, d))
            if clip:
                ns.clamp_(-1.0, 1.0)
            sig[k].index_copy_(0, idx, ns.reshape(-1))
    st = StepTensors(layout, tau, blk2[0], blk2[1], MaskedSoftmax(p2[0], x2[0]), MaskedSoftmax(p2[1], x2[1]))
    st.blk2, st.p2 = blk2, p2
    new_cl, new_ns = new2[0], new2[1]
    return st, _drift_change(new_cl, new_ns, st), new_cl, new_ns


def full_drift(sigma_cl: Tensor, sigma_ns: Tensor) -> float:
    """||Sigma^CL - Sigma^NSCL||_F recomputed over all entries (row blocks, no N x N temporary)."""
    M = sigma_cl.shape[0]
    blk = max(1, (1 << 22) // max(1, M))
    s = 0.0
    for r0 in range(0, M, blk):
        d = sigma_cl[r0 : r0 + blk].to(torch.float64) - sigma_ns[r0 : r0 + blk].to(torch.float64)
        s += float((d * d).sum())
    return math.sqrt(s)

