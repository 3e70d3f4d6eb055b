"""Adversarial search for counterexamples to the per-step lemmas (Lemmas 2, 3, 6, 8) in Sigma-space.

Paper: "On the Alignment Between Supervised and Self-Supervised Contrastive Learning", App. D.1-D.4.

For a small batch (B, C, tau, a batch composition) the touched similarity entries x in [-1, 1]^d are the
variables. Every claim is written as LHS / RHS and maximised over x (and x') with L-BFGS-B (box bounds,
analytic gradients by torch autograd through ``theory.losses``) from several random restarts:

  L2  ||G(x) - G(x')||_F / ||x - x'||_F  vs  1/(2 tau^2 B)   (pair form, and the local form ||Hessian||_2)
  L3  anchor: ||d loss_a / d s_a||_2 vs sqrt(2)/tau;   batch: ||G(x)||_F vs (1/tau) sqrt(2/B)
  L6  ||p_a - q_a||_1 (and ||.||_2) vs Delta;  mass: 2 alpha_a vs 2 Z_pos/Z_neg
  L8  ||G^CL(x) - G^NSCL(x')||_F vs Delta/(tau sqrt B) + ||x - x'||_F/(2 tau^2 B);  A: the x = x' term alone

Sharper forms (theory.bounds; issue 6):
  L2.hessian_mult   ||step operator||_2 vs kappa m/(2 tau^2 B)   (m = max anchors on one Sigma row)
  L6.l1_sharp / l2_sharp   ||p - q||_1 vs Delta/(1 + Delta/2), ||p - q||_2 (merged coordinates) vs
                    Delta/(sqrt2 (1 + Delta/2))
  L8.A_sharp / full_sharp   L8 with Delta' = lem6_l2_sharp(Delta) and the paper's constants: proved only when
                    every anchor has its own row and kappa = 1 (``paper_premise``); on other batches the
                    record has in_premise = False and the summary reports it as max_ratio_outside_premise
  L8.A_mult / full_mult     kappa (sqrt(q) Delta'/(tau B) + m ||x - x'||_F/(2 tau^2 B)), q = sum_r n_r^2: the
                    form behind theory.bounds.thm1_unrolled_multiplicity, valid for every batch in the event
kappa = 2 for sigma=symmetric with sym_grad=sum, else 1.

G is the Sigma-space step direction of the batch loss (1/B) sum_a loss_a (Eq. 1), Frobenius norms are those
of the similarity MATRIX. A ratio > 1 is a counterexample and is reported as found (never clipped).

Modules (one idea each; the public names are re-exported here):
    problem     the batch model (``BatchSpec``, ``make_batch``), the touched-entry parameterisation
                (``SigmaProblem``, ``build_problem``), Delta and the Cor. 3 event
    objectives  the ratio objectives of each claim and variant (``claim_objectives``)
    search      the optimiser (``maximize_box``, ``search_claim``)
    runner      the run over a grid of problems and its records (``run_adversarial``, ``summarize``,
                adversarial.json / .npz, ``reproduce``)
    cli         ``python -m simulate.adversarial`` (``main``)
"""

from __future__ import annotations

from .cli import (
    main,
)
from .objectives import (
    CLAIMS,
    PAPER_PREMISE_VARIANTS,
    Objective,
    paper_premise,
    claim_objectives,
    evaluate_objective,
)
from .problem import (
    COMPOSITIONS,
    SIGMAS,
    SYM_GRADS,
    IDS,
    DTYPE,
    torch_threads,
    BatchSpec,
    make_batch,
    SigmaProblem,
    build_problem,
    delta_from_eps,
    event_eps,
)
from .runner import (
    HOLDS_TOL,
    ClaimResult,
    run_adversarial,
    summarize,
    save_results,
    reproduce,
)
from .search import (
    maximize_box,
    search_claim,
    hessian_pair_start,
)

__all__ = [
    "CLAIMS",
    "COMPOSITIONS",
    "SIGMAS",
    "SYM_GRADS",
    "HOLDS_TOL",
    "BatchSpec",
    "SigmaProblem",
    "ClaimResult",
    "make_batch",
    "build_problem",
    "delta_from_eps",
    "event_eps",
    "claim_objectives",
    "evaluate_objective",
    "maximize_box",
    "search_claim",
    "run_adversarial",
    "reproduce",
    "main",
    "IDS",
    "DTYPE",
    "PAPER_PREMISE_VARIANTS",
    "Objective",
    "paper_premise",
    "torch_threads",
    "summarize",
    "save_results",
    "hessian_pair_start",
]
