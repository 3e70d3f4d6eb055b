"""Bounds of the paper, closed and unrolled forms, and provably sharper certificates (pure numpy, float64).

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning" (Thm. 1 / Eq. 2,
Cor. 1, Cor. 2, App. B Thm. 2 / Eq. 15, App. C Eqs. 7-9, App. D Lemmas 6-8) and the companion loss-gap
bound (Luthra et al. 2025; blog "CL is approximately supervised", Part I), generalised to temperature tau.

Every function takes an arbitrary step-size schedule ``eta`` = (eta_0, ..., eta_{T-1}); the horizon is
``T = len(eta)`` (it enters Delta_{C,delta} through eps_{B,delta} = sqrt(log(T B / delta) / (2B))).

Notation used in the docstrings:
    S            = sum_t eta_t
    alpha_t      = eta_t / (2 tau^2 B)                  (Lipschitz growth rate, Lem. 2 / Eq. 11)
    gamma_t      = eta_t Delta / (tau sqrt(B))          (reweighting injection, Lem. 8 term (A))
    Pi_{a..b}    = prod_{u=a}^{b} (1 + alpha_u)

Forms of the Thm. 1 bound, from loosest to tightest:
    thm1_bound           exp(S/(2 tau^2 B)) * S Delta / (tau sqrt B)               Eq. 2 (paper)
    thm1_bound_gronwall  2 tau sqrt(B) Delta (exp(S/(2 tau^2 B)) - 1)              proven below, <= Eq. 2
    thm1_unrolled        sum_s gamma_s prod_{u>s}(1+alpha_u)                        exact solution of the
                         = 2 tau sqrt(B) Delta (prod_u (1+alpha_u) - 1)             recurrence (Grönwall)
    thm1_bound_sharp     thm1_unrolled with Delta -> Delta / (sqrt(2) (1 + Delta/2)) Lem. 6 sharpened

PREMISE of all four (``THM1_PREMISE``): on the event of Cor. 3, with every anchor's CL-denominator logits in
[-1, 1], the Sigma coordinates ORDERED (Lem. 1), and at every step every anchor on its OWN Sigma row (realised
row multiplicity m_t = 1). The proof goes through Lem. 8, whose term (A) uses Lem. 1 (disjoint anchor blocks)
and whose term (B) uses the block-diagonal Hessian of Lem. 2; both fail when two anchors share a row, which
batches drawn WITH replacement produce (a duplicate draw with the same anchor view). This is the paper's own
premise too: Eq. 2 is proved through Lem. 8 and carries the same restriction.

Forms valid WITH duplicated rows (carry the realised multiplicities n_r = number of anchors on row r at step t,
m_t = max_r n_r, q_t = sum_r n_r^2; ``anchor_row_multiplicity``; the proof is in ``thm1_unrolled_multiplicity``):
    thm1_unrolled_multiplicity     alpha_t = kappa eta_t m_t / (2 tau^2 B),
                                   gamma_t = kappa eta_t sqrt(q_t) Delta_t / (tau B)
    thm1_bound_sharp_multiplicity  the same with Delta -> lem6_l2_sharp(Delta)
kappa = 1 for ordered Sigma, 2 for the symmetric parameterisation (G -> G + G^T - Diag G). With m_t = 1 and
q_t = B (no duplicates), kappa = 1 they equal thm1_unrolled / thm1_bound_sharp exactly.

Modules (one idea each; every public name is re-exported here, so ``theory.bounds.thm1_bound`` etc. work):
    gronwall      the discrete Grönwall recurrence and its product form (shared by every bound)
    thm1          Thm. 1 / Eq. 2 forms (closed, Grönwall, unrolled, sharp) and Lem. 6 sharpened
    multiplicity  Thm. 1 with anchor-row multiplicities (valid with duplicated rows), with its proof
    corollaries   Cors. 1-2 (CKA / RSA certificates, paper and tight cosine bounds, measured ratios)
    thm2_appc     Thm. 2 (App. B / D.3, Eq. 15) and App. C Eqs. 7-9
    loss_gap      companion-paper loss-gap bound, any tau
"""

from __future__ import annotations

from .corollaries import (
    Certificate,
    cos_lower_bound_paper,
    cos_lower_bound_sharp,
    cor1_cka_bound,
    cor2_rsa_bound,
    cka_certificate_sharp,
    rsa_certificate_sharp,
    cka_ratio_measured,
    rsa_ratio_measured,
)
from .gronwall import (
    drift_recurrence,
    unrolled_terminal,
)
from .loss_gap import (
    loss_gap_bound,
    loss_gap_bound_counts,
)
from .multiplicity import (
    RowMultiplicity,
    anchor_row_multiplicity,
    thm1_rates_multiplicity,
    thm1_unrolled_multiplicity,
    thm1_trajectory_multiplicity,
    thm1_bound_sharp_multiplicity,
)
from .thm1 import (
    THM1_PREMISE,
    thm1_rates,
    thm1_bound,
    thm1_bound_from_delta,
    thm1_bound_gronwall,
    thm1_bound_gronwall_from_delta,
    thm1_unrolled,
    thm1_unrolled_from_delta,
    thm1_trajectory,
    thm1_trajectory_from_delta,
    thm1_trajectory_from_gap,
    thm1_bound_sharp,
    lem6_l1_sharp,
    lem6_l2_sharp,
)
from .thm2_appc import (
    thm2_bound,
    thm2_bound_from_delta,
    thm2_unrolled,
    thm2_unrolled_exp,
    thm2_trajectory,
    appc_eq7_unrolled,
    appc_eq8_bound,
    appc_eq9_bound,
)

__all__ = [
    "THM1_PREMISE",
    "RowMultiplicity",
    "anchor_row_multiplicity",
    "thm1_rates_multiplicity",
    "thm1_unrolled_multiplicity",
    "thm1_trajectory_multiplicity",
    "thm1_bound_sharp_multiplicity",
    "Certificate",
    "drift_recurrence",
    "unrolled_terminal",
    "thm1_rates",
    "thm1_bound",
    "thm1_bound_from_delta",
    "thm1_bound_gronwall",
    "thm1_bound_gronwall_from_delta",
    "thm1_unrolled",
    "thm1_unrolled_from_delta",
    "thm1_trajectory",
    "thm1_trajectory_from_delta",
    "thm1_trajectory_from_gap",
    "thm1_bound_sharp",
    "lem6_l1_sharp",
    "lem6_l2_sharp",
    "cos_lower_bound_paper",
    "cos_lower_bound_sharp",
    "cor1_cka_bound",
    "cor2_rsa_bound",
    "cka_certificate_sharp",
    "rsa_certificate_sharp",
    "cka_ratio_measured",
    "rsa_ratio_measured",
    "thm2_bound",
    "thm2_bound_from_delta",
    "thm2_unrolled",
    "thm2_unrolled_exp",
    "thm2_trajectory",
    "appc_eq7_unrolled",
    "appc_eq8_bound",
    "appc_eq9_bound",
    "loss_gap_bound",
    "loss_gap_bound_counts",
]

