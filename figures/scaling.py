"""Learning-rate scaling families of a batch-size sweep (Fig. 5): which runs share one rule eta = c * B^k.

The paper's four rules are eta = 0.3 B/256 (k = 1), 0.3 sqrt(B)/256 (k = 1/2), 0.3 B^(1/4)/256 (k = 1/4) and
eta = 0.3 (k = 0). A run whose config.json records its rule (``lr_rule`` / ``lr_scaling`` in ``config`` or in
``sweep``) is placed by that name; otherwise the rule is inferred from (B, eta): runs with >= 2 distinct B and
the same eta / B^k (relative tolerance 1e-6) form the family of exponent k. A run may belong to several
families (at B = 256 the linear and the constant rule give the same eta); a run in none is reported in an
"other" family, never dropped."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

__all__ = ["EXPONENTS", "RULE_LABEL", "families"]

#: exponent k -> readable rule (paper order)
EXPONENTS = (1.0, 0.5, 0.25, 0.0)
RULE_LABEL = {1.0: "η ∝ B (0.3·B/256)", 0.5: "η ∝ √B (0.3·√B/256)", 0.25: "η ∝ B^¼ (0.3·B^¼/256)",
              0.0: "η constant (0.3)"}
#: families inferred from (B, eta) alone: the constant is whatever the runs used
INFERRED_LABEL = {1.0: "η ∝ B", 0.5: "η ∝ √B", 0.25: "η ∝ B^¼", 0.0: "η constant"}
_PAPER = "η = 0.3·⌊B/256⌋ (paper Methods)"
_NAMED = {"linear": 1.0, "sqrt": 0.5, "fourth_root": 0.25, "quarter": 0.25, "fourth-root": 0.25,
          "root4": 0.25, "constant": 0.0, "const": 0.0, "none": 0.0}


def _rule_of(run) -> Any:
    for src in (run.config, getattr(run, "sweep", {}) or {}):
        for k in ("lr_rule", "lr_scaling", "eta_rule", "eta_scaling"):
            if src.get(k) not in (None, ""):
                return src[k]
    return None


def families(runs: Sequence, batch: Callable[[Any], int], lr: Callable[[Any], float]) -> list[tuple[str, list]]:
    """[(rule label, runs)] in paper order (explicit rules first by name), then "other" for the rest."""
    named: dict[str, list] = {}
    unnamed = []
    for r in runs:
        rule = _rule_of(r)
        if rule is None or str(rule).lower() == "none":
            unnamed.append(r)
        else:
            k = _NAMED.get(str(rule).lower())
            label = RULE_LABEL[k] if k is not None else (_PAPER if str(rule) == "paper" else f"η rule {rule}")
            named.setdefault(label, []).append(r)
    out: list[tuple[str, list]] = []
    placed: set[int] = set()
    order = {v: i for i, v in enumerate(RULE_LABEL.values())}
    for label in sorted(named, key=lambda s: order.get(s, 99)):
        out.append((label, named[label]))
        placed.update(id(r) for r in named[label])
    cands = []  # (k, runs) with >= 2 distinct B sharing eta / B^k
    for ki, k in enumerate(EXPONENTS):
        buckets: dict[float, list] = {}
        for r in unnamed:
            c = lr(r) / batch(r) ** k
            key = next((b for b in buckets if math.isclose(b, c, rel_tol=1e-6)), c)
            buckets.setdefault(key, []).append(r)
        cands += [(ki, k, rs) for rs in buckets.values() if len({batch(r) for r in rs}) >= 2]
    # largest families first; a family is kept only if it explains a run no kept family explains (this drops
    # coincidences such as 0.2/64 = 0.1/32 between two other families)
    cands.sort(key=lambda c: (-len({batch(r) for r in c[2]}), c[0]))
    kept = []
    for ki, k, rs in cands:
        if any(id(r) not in placed for r in rs):
            kept.append((ki, k, rs))
            placed.update(id(r) for r in rs)
    kept.sort(key=lambda c: c[0])
    for ki, k, rs in kept:
        same = [c for c in kept if c[1] == k]
        label = INFERRED_LABEL[k] + (f" #{same.index((ki, k, rs)) + 1}" if len(same) > 1 else "")
        out.append((label, rs))
    rest = [r for r in unnamed if id(r) not in placed]
    if rest:
        out.append(("other η (no common rule)", rest))
    return out
