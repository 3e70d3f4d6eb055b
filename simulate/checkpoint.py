"""Run state of a coupled run and its checkpoint file (bit-exact resume; the file format is runio.checkpoint's)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from runio.checkpoint import load_checkpoint as _load
from runio.checkpoint import save_checkpoint

from .config import SigmaConfig


# fields that define the dynamics (a checkpoint can only be resumed with the same values)
_RUN_ONLY_FIELDS = ("checkpoint_every", "stop_after", "save_sigma", "plot")

@dataclass
class CoupledState:
    """Mutable state of a run; everything needed to resume bit-exactly."""

    step: int
    sigma_cl: Tensor
    sigma_ns: Tensor
    drift_sq: float
    batch_gen: torch.Generator
    aug_gen: torch.Generator
    gap_bound: float = 0.0  # Thm 1 recurrence driven by the measured Lem. 8 term (A)
    premise_all: bool = True  # Cor. 3 event and bounded logits at every step so far
    step_rows: list = field(default_factory=list)
    eval_rows: list = field(default_factory=list)

    @property
    def drift(self) -> float:
        # the incremental sum of squares can round to -1e-30 around an exact 0
        return math.sqrt(max(self.drift_sq, 0.0))

def _ckpt_path(out_dir: Path) -> Path:
    return out_dir / "checkpoint.pt"


def _save_checkpoint(out_dir: Path, cfg: SigmaConfig, state: CoupledState, suite) -> None:
    payload = {
        "version": 1,
        "config": cfg.to_dict(),
        "step": state.step,
        "sigma_cl": state.sigma_cl,
        "sigma_ns": state.sigma_ns,
        "drift_sq": state.drift_sq,
        "gap_bound": state.gap_bound,
        "premise_all": state.premise_all,
        "batch_gen": state.batch_gen.get_state(),
        "aug_gen": state.aug_gen.get_state(),
        "step_rows": state.step_rows,
        "eval_rows": state.eval_rows,
        "checks": suite.state_dict() if suite is not None else None,
    }
    save_checkpoint(_ckpt_path(out_dir), payload)


#: keys every Sigma-space checkpoint holds
_REQUIRED = ("version", "config", "step", "sigma_cl", "sigma_ns", "drift_sq", "batch_gen", "aug_gen", "step_rows",
             "eval_rows", "checks")


def load_checkpoint(out_dir: Path | str) -> dict:
    """Read ``out_dir/checkpoint.pt`` (runio.checkpoint format: atomic, SHA-256 trailer).

    One-line ValueError if it is missing, truncated, corrupt, or another program's file. The claim tracker's
    state holds numpy arrays, so the payload is unpickled with ``weights_only=False`` -- after its digest and
    trailer were verified; load only checkpoints of your own runs.
    """
    return _load(_ckpt_path(Path(out_dir)), required=_REQUIRED, weights_only=False)


def _dynamics(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _RUN_ONLY_FIELDS}

