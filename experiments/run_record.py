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
from runio.checkpoint import config_diff, load_checkpoint, save_checkpoint

from .config import RunConfig

__all__ = [
    "RESUME_MUTABLE_KEYS",
    "check_resume",
    "checkpoint_payload",
    "restore_run",
    "wants_weights",
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


# ----------------------------------------------------------------------------------------------------------
# resuming a bound_vs_empirical run (``s``: its experiments.bound_vs_empirical._Setup)
#: RunConfig keys that may differ between a checkpoint and the run resuming it (they leave the numbers alone)
RESUME_MUTABLE_KEYS = ("out", "quiet", "threads", "checkpoint_every", "save_weights", "figures", "compile", "digest")
#: result rows and scalars of a run's state that a checkpoint stores as JSON text (records_to_text)
RECORD_KEYS = ("eta", "metric_rows", "model_rows", "theory_rows", "gap_rows", "surrogate_rows", "G_run",
                "beta_run", "xi", "notes", "eval_s", "hook_s", "row_mult", "row_mult_sq")
#: models up to this many parameters get weights_init.pt / weights_final.pt when save_weights is None (auto)
SAVE_WEIGHTS_MAX_PARAMS = 5_000_000


def check_resume(cfg: RunConfig) -> str:
    """What ``run_experiment(cfg, resume=True)`` will do: "done" (a finished run with this config is in
    ``cfg.out``: nothing to do), "resume" (continue from ``cfg.out/ckpt.pt``) or "fresh" (no checkpoint there:
    start from step 0). A checkpoint or finished run written with a different config raises a one-line
    ValueError naming the differing keys (and nothing in ``cfg.out`` is touched)."""
    out = Path(cfg.out)
    status = run_status(out)
    if status == "done":
        saved = read_json(out / "config.json").get("config", {})
        _check_same_config(cfg, saved, f"finished run in {str(out)!r}")
        return "done"
    ckpt = out / CKPT_NAME
    if status == "partial" and ckpt.is_file():
        _check_same_config(cfg, load_run_checkpoint(ckpt)["config"], f"checkpoint {str(ckpt)!r}")
        return "resume"
    return "fresh"


def _check_same_config(cfg: RunConfig, saved: dict, where: str) -> None:
    # a record written before a key existed compares as the default (old records stay resumable)
    saved = {**RunConfig().to_dict(), **saved}
    new = cfg.to_dict()
    diff = config_diff(new, saved, ignore=RESUME_MUTABLE_KEYS)
    if diff:
        parts = [f"{k}: saved {saved.get(k, '<missing>')!r}, given {new.get(k, '<missing>')!r}" for k in diff]
        raise ValueError(f"cannot resume: {where} was written with a different config ({'; '.join(parts)})")


def wants_weights(cfg: RunConfig, s: Any) -> bool:
    if cfg.save_weights is not None:
        return cfg.save_weights
    n = max(sum(p.numel() for p in m.parameters()) for m in s.trainer.models.values())
    return n <= SAVE_WEIGHTS_MAX_PARAMS


def checkpoint_payload(s: Any, state: dict, theory_gen: torch.Generator) -> dict[str, Any]:
    sur = s.surrogate
    sur_state = None
    if sur is not None:
        sur_state = {"sigma_cl": sur.sigma_cl, "sigma_ns": sur.sigma_ns, "orient_gen": sur.orient_gen.get_state(),
                     "records": records_to_text({"g_norms": sur.g_norms, "L_hat": sur.L_hat, "M_hat": sur.M_hat,
                                                 "remainders": sur.remainders})}
    lb = state.get("last_batch")
    return {"config": s.cfg.to_dict(), "step": s.trainer.step, "trainer": s.trainer.state_dict(),
            "theory_gen": theory_gen.get_state(), "records": records_to_text({k: state[k] for k in RECORD_KEYS}),
            "prev": state["prev"], "step_dir": state.get("step_dir"),
            "last_batch": None if lb is None else list(lb), "surrogate": sur_state}


def restore_run(s: Any, state: dict, theory_gen: torch.Generator, ck: dict, path: Path) -> None:
    tr = s.trainer
    tr.load_state_dict(ck["trainer"], strict_config=False)
    torch.set_rng_state(ck["trainer"]["cpu_rng"])
    if tr.on_cuda and ck["trainer"].get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ck["trainer"]["cuda_rng"], tr.device)
    prev = ck["trainer"].get("manifest", {}).get("resumed_from") or []
    tr.manifest["resumed_from"] = list(prev) + [{"path": str(path), "step": tr.step}]
    theory_gen.set_state(ck["theory_gen"])
    state.update(records_from_text(ck["records"]))
    state["prev"] = ck["prev"]
    state["step_dir"] = ck["step_dir"]
    state["last_batch"] = None if ck["last_batch"] is None else tuple(ck["last_batch"])
    sur = s.surrogate
    if sur is not None:
        ss = ck["surrogate"]
        sur.sigma_cl, sur.sigma_ns = ss["sigma_cl"], ss["sigma_ns"]
        sur.orient_gen.set_state(ss["orient_gen"])
        rec = records_from_text(ss["records"])
        sur.g_norms, sur.L_hat, sur.M_hat, sur.remainders = rec["g_norms"], rec["L_hat"], rec["M_hat"], rec["remainders"]
