"""Closed forms of the CL/NSCL alignment theory (Luthra, Mishra, Galanti): pure functions, no I/O.

Public names are loaded lazily so that importing one submodule never pulls in the others::

    from theory import eps_b_delta, delta_c_delta, cka, rsa
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "eps_b_delta": "theory.constants",
    "delta_c_delta": "theory.constants",
    "cka": "theory.alignment_features",
    "rsa": "theory.alignment_features",
    "cka_gram": "theory.alignment_gram",
    "rsa_gram": "theory.alignment_gram",
    "linear_cka": "theory.alignment_features",
    "cka_rsa": "theory.alignment_features",
    "nccc_accuracy": "theory.probes",
    "relative_weight_gap": "theory.probes",
    "contrastive_loss": "theory.losses",
    "LOSS_KINDS": "theory.losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'theory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
