"""State of a ``bound_vs_empirical`` run directory: status marker, resumable checkpoint, saved weights.

A run directory ``out`` holds, besides the result files:

* ``status.json``: ``{"state": "running"}`` from the start, ``{"state": "done"}`` written LAST, after every
  result file (so ``done`` means complete, whatever killed a process before);
* ``ckpt.pt``: the latest checkpoint (atomic, integrity-checked, :mod:`runio.checkpoint`) holding
  everything a resumed run needs to write the same bytes as an uninterrupted one: the lockstep trainer's state
  (weights, optimisers, order / augmentation generators, process RNG, digests, history), the measurement
  generator, the result rows so far (as JSON text: floats round-trip exactly, NaN / inf included), the previous
  weights and last batch the theory hooks keep, and the Σ-space surrogate's state. Removed once the run is done.
* ``weights_init.pt`` / ``weights_final.pt``: ``{model name: state_dict}`` of every model before the first step
  and after the last (``torch.load(path, weights_only=True)`` opens them).

:func:`run_status` is what a sweep runner asks before (re)starting a run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from runio import read_json, write_json

from runio.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "CKPT_NAME",
    "STATUS_NAME",
    "WEIGHTS_INIT",
    "WEIGHTS_FINAL",
    "RUN_CHECKPOINT_FORMAT",
    "RUN_STATES",
    "run_status",
    "write_status",
    "records_to_text",
    "records_from_text",
    "save_run_checkpoint",
    "load_run_checkpoint",
    "save_weights",
]

CKPT_NAME = "ckpt.pt"
STATUS_NAME = "status.json"
WEIGHTS_INIT = "weights_init.pt"
WEIGHTS_FINAL = "weights_final.pt"
RUN_CHECKPOINT_FORMAT = "simdescent-bound-vs-empirical-v1"
#: what :func:`run_status` answers
RUN_STATES = ("done", "partial", "absent")
_REQUIRED = ("format", "config", "step", "trainer", "theory_gen", "records", "prev", "step_dir", "last_batch",
             "surrogate")


def run_status(out_dir: str | os.PathLike) -> str:
    """"done" (``status.json`` says done and ``metrics.json`` exists), "partial" (the directory exists and is not
    empty: a run started there and did not finish, resumable if ``ckpt.pt`` is present) or "absent" (no
    directory, or an empty one). A regular file at ``out_dir`` raises a one-line ValueError."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir must be a directory, got a file at {str(out)!r}")
    if not out.is_dir():
        return "absent"
    try:
        doc = read_json(out / STATUS_NAME)
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("state") == "done" and (out / "metrics.json").is_file():
        return "done"
    return "partial" if any(out.iterdir()) else "absent"


def write_status(out_dir: str | os.PathLike, state: str, **extra: Any) -> Path:
    """Atomically write ``out_dir/status.json`` = ``{"state": state, **extra}`` (state "running" or "done")."""
    if state not in ("running", "done"):
        raise ValueError(f"state must be 'running' or 'done', got state={state!r}")
    return write_json(Path(out_dir) / STATUS_NAME, {"state": state, **extra}, sort_keys=True)


def _plain(x: Any) -> Any:
    """json.dumps fallback: numpy scalars -> Python numbers (np.float64 is already a float)."""
    if isinstance(x, (np.generic,)):
        return x.item()
    raise TypeError(f"cannot store {type(x).__name__} in a run checkpoint")


def records_to_text(records: Mapping[str, Any]) -> str:
    """JSON text of result rows; non-finite floats kept as NaN / Infinity tokens (exact round trip)."""
    return json.dumps(records, allow_nan=True, default=_plain)


def records_from_text(text: str) -> dict[str, Any]:
    """Inverse of :func:`records_to_text`."""
    return json.loads(text)


def save_run_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Atomically write a run checkpoint (``payload`` must hold the keys of ``_REQUIRED`` except "format")."""
    missing = [k for k in _REQUIRED if k != "format" and k not in payload]
    if missing:
        raise ValueError(f"run checkpoint payload is missing keys {missing}")
    return save_checkpoint(path, {"format": RUN_CHECKPOINT_FORMAT, **payload})


def load_run_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Verify and load a run checkpoint; one-line ValueError for a corrupt file or a foreign format."""
    state = load_checkpoint(path, required=_REQUIRED)
    if state["format"] != RUN_CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {state['format']!r}, expected {RUN_CHECKPOINT_FORMAT!r}")
    return state


def save_weights(path: str | os.PathLike, models: Mapping[str, torch.nn.Module]) -> Path:
    """Atomically write ``{name: state_dict (CPU tensors)}`` of ``models`` to ``path``."""
    sd = {n: {k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for n, m in models.items()}
    return save_checkpoint(path, sd)
