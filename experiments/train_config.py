"""Training options of the lockstep trainer: :class:`TrainConfig`, the one owner of every training setting.

``experiments.train`` (the trainer CLI) and ``experiments.bound_vs_empirical`` (whose ``RunConfig`` embeds a
``TrainConfig``) share these fields and defaults. Defaults are the small CPU regime the experiments are measured
in (small CNN at width 0.5, B = 64, plain SGD lr 0.1 without momentum or weight decay: what Thm. 2 assumes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from runio import dataclass_from_dict
from theory.constants import check_nonneg_float, check_positive_float, check_positive_int, check_tau
from theory.losses import LOSS_KINDS

from .augment import SimCLRAugment
from .models import ARCHS

__all__ = ["TRAIN_LOSSES", "OPTIMIZERS", "ANCHORS", "RESUME_MUTABLE_KEYS", "TrainConfig", "resolve_device"]

TRAIN_LOSSES = LOSS_KINDS + ("CE",)
OPTIMIZERS = ("sgd", "lars")
ANCHORS = ("both", "first")
#: Config keys that may differ between a checkpoint and the run resuming it (they do not change the trajectory).
RESUME_MUTABLE_KEYS = ("out_dir", "ckpt_every", "compile", "digest")



@dataclass
class TrainConfig:
    """Everything that determines a lockstep run (saved in checkpoints and manifests).

    losses: tuple of "CL", "DCL", "NSCL", "SCL", "CE" (one model each, no repeats).
    lr: base learning rate (the paper uses 0.3 * floor(B / 256) with LARS). warmup_epochs may be fractional.
    grad_clip: max global gradient norm per model (0 = off). device: "auto" (CUDA if available), "cpu",
    "cuda", "cuda:N". bf16 / channels_last apply on CUDA only; compile wraps each model in torch.compile.
    sync_bn: convert BatchNorm to SyncBatchNorm under DDP; None (default) = on exactly when training on CUDA
    under DDP (SyncBatchNorm does not run on CPU: CPU DDP keeps per-rank statistics). digest: keep the SHA-256
    input digests.
    label_noise / label_noise_seed: random-label control, the labels the supervised losses (NSCL, SCL, CE) see
    are :func:`experiments.data.noisy_labels` of the true ones (p = 1: uniform random labels).
    anchors: "both" (SimCLR, 2B anchors) or "first" (the paper's B anchors, Sec. 3).
    proj_hidden: None = the backbone's feature_dim (2048 -> 2048 -> 128 for ResNet-50, Sec. 5).
    aug_preset: a SimCLRAugment.for_dataset name (App. A settings, e.g. "cifar10"), or None for
    SimCLRAugment(size, aug_strength, aug_blur); aug_blur None = the augmentation's default (blur for size > 32).
    """

    losses: tuple[str, ...] = ("CL", "NSCL")
    arch: str = "small_cnn"
    width: float = 0.5
    proj_hidden: int | None = 128
    proj_dim: int = 64
    batch_size: int = 64
    tau: float = 0.5
    anchors: str = "both"
    epochs: int = 20
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    grad_clip: float = 0.0
    aug_preset: str | None = None
    aug_strength: float = 0.5
    aug_blur: bool | None = None
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool | None = None
    init_seed: int = 0
    order_seed: int = 1
    aug_seed: int = 2
    label_noise: float = 0.0
    label_noise_seed: int = 0
    ckpt_every: int = 0
    out_dir: str | None = None
    digest: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first bad field; normalises ``losses`` to a tuple."""
        if isinstance(self.losses, str):
            self.losses = (self.losses,)
        try:
            self.losses = tuple(self.losses)
        except TypeError:
            raise ValueError(f"losses must be a sequence of {TRAIN_LOSSES}, got losses={self.losses!r}") from None
        if not self.losses:
            raise ValueError(f"losses must name at least one of {TRAIN_LOSSES}, got losses=()")
        for name in self.losses:
            if name not in TRAIN_LOSSES:
                raise ValueError(f"losses must be drawn from {TRAIN_LOSSES}, got unknown loss {name!r}")
        if len(set(self.losses)) != len(self.losses):
            raise ValueError(f"losses must not repeat a loss, got losses={self.losses!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got arch={self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got optimizer={self.optimizer!r}")
        if self.anchors not in ANCHORS:
            raise ValueError(f"anchors must be one of {ANCHORS}, got anchors={self.anchors!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2, got batch_size={self.batch_size!r}")
        self.tau = check_tau(self.tau)
        check_positive_int("epochs", self.epochs)
        if self.proj_hidden is not None:
            check_positive_int("proj_hidden", self.proj_hidden)
        check_positive_int("proj_dim", self.proj_dim)
        self.width = check_positive_float("width", self.width)
        self.lr = check_positive_float("lr", self.lr)
        self.momentum = check_nonneg_float("momentum", self.momentum)
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be in [0, 1), got momentum={self.momentum!r}")
        self.weight_decay = check_nonneg_float("weight_decay", self.weight_decay)
        self.warmup_epochs = check_nonneg_float("warmup_epochs", self.warmup_epochs)
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be <= epochs={self.epochs}, got warmup_epochs={self.warmup_epochs!r}")
        self.grad_clip = check_nonneg_float("grad_clip", self.grad_clip)
        self.aug_strength = check_nonneg_float("aug_strength", self.aug_strength)
        for name in ("init_seed", "order_seed", "aug_seed", "ckpt_every", "label_noise_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {name}={v!r}")
        for name in ("bf16", "channels_last", "compile", "digest"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {name}={getattr(self, name)!r}")
        if self.sync_bn is not None and not isinstance(self.sync_bn, bool):
            raise ValueError(f"sync_bn must be None (auto), True or False, got sync_bn={self.sync_bn!r}")
        if (isinstance(self.label_noise, bool) or not isinstance(self.label_noise, (int, float))
                or not 0.0 <= self.label_noise <= 1.0):
            raise ValueError(f"label_noise must be a number in [0, 1], got label_noise={self.label_noise!r}")
        self.label_noise = float(self.label_noise)
        if self.aug_blur is not None and not isinstance(self.aug_blur, bool):
            raise ValueError(f"aug_blur must be None, True or False, got aug_blur={self.aug_blur!r}")
        self.make_augment(32)  # validates aug_preset / aug_strength
        if self.out_dir is not None:
            self.out_dir = str(self.out_dir)
        resolve_device(self.device, check_available=False)  # availability: when the trainer is built

    def make_augment(self, size: int) -> SimCLRAugment:
        """The SimCLRAugment of this config for images of side ``size``."""
        extra = {} if self.aug_blur is None else {"blur": self.aug_blur}
        if self.aug_preset is not None:
            return SimCLRAugment.for_dataset(self.aug_preset, size=size, **extra)
        return SimCLRAugment(size=size, strength=self.aug_strength, **extra)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["losses"] = list(self.losses)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return dataclass_from_dict(cls, d)


def resolve_device(device: str, check_available: bool = True) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without CUDA -> one-line ValueError.

    check_available=False: the spelling alone is checked (a config for a GPU machine validates anywhere).
    """
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got device={device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got device={device!r}") from None
    if dev.type == "cuda":
        if not check_available:
            return dev
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but CUDA is not available (use device='cpu' or 'auto')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got device={device!r}")
    return dev
