"""Optimisers and learning-rate schedules of the paper's Sec. 5 (SimCLR recipe).

* :class:`LARS` (You et al., 2017) exactly as SimCLR's ``lars_optimizer.py`` (Chen et al., 2020), per
  parameter w with gradient g, learning rate lr, momentum m, weight decay wd, trust coefficient eta:

      g  <- g + wd * w                                   (skipped for excluded parameters)
      r  =  eta * ||w|| / ||g||  if ||w|| > 0 and ||g|| > 0, else 1   (r = 1 for excluded parameters)
      v  <- m * v + lr * r * g                           (lr inside the momentum buffer, as SimCLR)
      w  <- w - v                                        (nesterov: w <- w - (m * v + lr * r * g))

  "Excluded" = biases and BatchNorm parameters, recognised as parameters with ``ndim <= 1``
  (``exclude_bias_and_bn=True``, the SimCLR default): no weight decay, no layer adaptation.
* :func:`sgd`, :func:`build_optimizer` factories; :func:`warmup_cosine` linear warm-up then cosine decay
  without restarts (Goyal et al., 2017; Loshchilov & Hutter, 2016); :func:`simclr_lr` the paper's
  0.3 * floor(B / 256); :func:`batch_scaled_lr` the four batch-size rules of Fig. 5.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

__all__ = [
    "LARS",
    "sgd",
    "build_optimizer",
    "param_groups",
    "warmup_cosine",
    "warmup_cosine_schedule",
    "set_lr",
    "simclr_lr",
    "batch_scaled_lr",
    "LR_RULES",
]

LR_RULES = ("paper", "linear", "sqrt", "fourth_root", "constant")


def _nonneg(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={v!r}")
    return float(v)


def _params_of(params_or_model: nn.Module | Iterable[Any]) -> list[Any]:
    if isinstance(params_or_model, nn.Module):
        return [p for p in params_or_model.parameters() if p.requires_grad]
    return list(params_or_model)


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling, SimCLR's variant (see module docstring for the update).

    Param-group keys: lr, momentum, weight_decay, trust_coef, nesterov, exclude_bias_and_bn.
    State per parameter: ``momentum_buffer`` v (starts at 0).
    """

    def __init__(self, params: nn.Module | Iterable[Any], lr: float, momentum: float = 0.9,
                 weight_decay: float = 1e-6, trust_coef: float = 1e-3, nesterov: bool = False,
                 exclude_bias_and_bn: bool = True) -> None:
        _nonneg("lr", lr)
        if not (0.0 <= _nonneg("momentum", momentum) < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got momentum={momentum!r}")
        _nonneg("weight_decay", weight_decay)
        _nonneg("trust_coef", trust_coef)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coef=trust_coef,
                        nesterov=bool(nesterov), exclude_bias_and_bn=bool(exclude_bias_and_bn))
        super().__init__(_params_of(params) if isinstance(params, nn.Module) else params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["trust_coef"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise ValueError("LARS does not support sparse gradients")
                excluded = group["exclude_bias_and_bn"] and p.ndim <= 1
                if not excluded:
                    if wd != 0:
                        g = g.add(p, alpha=wd)
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    one = torch.ones_like(w_norm)
                    ratio = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, one)
                    scaled = g * (ratio * lr)
                else:
                    scaled = g * lr
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = torch.zeros_like(p)
                    state["momentum_buffer"] = buf
                buf.mul_(m).add_(scaled)
                if group["nesterov"]:
                    p.sub_(buf * m + scaled)
                else:
                    p.sub_(buf)
        return loss


def param_groups(params_or_model: nn.Module | Iterable[Any], weight_decay: float,
                 exclude_bias_and_bn: bool = True) -> list[dict[str, Any]]:
    """Two groups: weights (``ndim > 1``) with ``weight_decay``, biases / BN parameters (``ndim <= 1``)
    with 0 when ``exclude_bias_and_bn``; else one group."""
    params = _params_of(params_or_model)
    if not exclude_bias_and_bn:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def sgd(params: nn.Module | Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
        nesterov: bool = False, exclude_bias_and_bn: bool = True) -> torch.optim.SGD:
    """``torch.optim.SGD`` (buf <- m buf + g + wd w; w <- w - lr buf); biases / BN without weight decay."""
    _nonneg("lr", lr)
    _nonneg("momentum", momentum)
    _nonneg("weight_decay", weight_decay)
    return torch.optim.SGD(param_groups(params, weight_decay, exclude_bias_and_bn), lr=lr, momentum=momentum,
                           nesterov=nesterov)


def build_optimizer(name: str, params: nn.Module | Iterable[Any], lr: float, momentum: float = 0.9,
                    weight_decay: float = 1e-6, trust_coef: float = 1e-3,
                    exclude_bias_and_bn: bool = True) -> torch.optim.Optimizer:
    """``name`` in ("sgd", "lars"); paper defaults: LARS, momentum 0.9, weight decay 1e-6."""
    if name == "lars":
        return LARS(params, lr, momentum, weight_decay, trust_coef, exclude_bias_and_bn=exclude_bias_and_bn)
    if name == "sgd":
        return sgd(params, lr, momentum, weight_decay, exclude_bias_and_bn=exclude_bias_and_bn)
    raise ValueError(f"optimizer must be 'sgd' or 'lars', got optimizer={name!r}")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float, final_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine decay without restarts.

        step <  warmup:          base_lr * step / warmup_steps            (SimCLR: 0 at step 0)
        warmup <= step < total:  final + (base - final) * (1 + cos(pi (step - warmup) / (total - warmup))) / 2
        step >= total:           final_lr
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got step={step!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got total_steps={total_steps!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or not (0 <= warmup_steps <= total_steps):
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}], got warmup_steps={warmup_steps!r}")
    base_lr = _nonneg("base_lr", base_lr)
    final_lr = _nonneg("final_lr", final_lr)
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return final_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(total_steps: int, warmup_steps: int, base_lr: float, final_lr: float = 0.0) -> list[float]:
    """[warmup_cosine(t, ...) for t in range(total_steps)] — the step sizes eta_0..eta_{T-1}."""
    return [warmup_cosine(t, total_steps, warmup_steps, base_lr, final_lr) for t in range(total_steps)]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` in every param group."""
    _nonneg("lr", lr)
    for g in optimizer.param_groups:
        g["lr"] = lr


def simclr_lr(batch_size: int, base: float = 0.3) -> float:
    """The paper's Sec. 5 rule: base * floor(B / 256). ValueError for B < 256 (the rule gives lr = 0)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size!r}")
    if batch_size < 256:
        raise ValueError(f"batch_size must be >= 256 for 0.3*floor(B/256) (it gives lr=0), got batch_size={batch_size}; "
                         "use batch_scaled_lr(B, 'linear')")
    return _nonneg("base", base) * (batch_size // 256)


def batch_scaled_lr(batch_size: int, rule: str = "linear", base: float = 0.3) -> float:
    """Learning rate as a function of B, the rules of Sec. 5 / Fig. 5, transcribed literally:

    ``paper``: base floor(B/256); ``linear``: base B / 256; ``sqrt``: base sqrt(B) / 256;
    ``fourth_root``: base B^(1/4) / 256; ``constant``: base.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size!r}")
    base = _nonneg("base", base)
    if rule == "paper":
        return simclr_lr(batch_size, base)
    if rule == "linear":
        return base * batch_size / 256.0
    if rule == "sqrt":
        return base * math.sqrt(batch_size) / 256.0
    if rule == "fourth_root":
        return base * batch_size ** 0.25 / 256.0
    if rule == "constant":
        return base
    raise ValueError(f"rule must be one of {LR_RULES}, got rule={rule!r}")
