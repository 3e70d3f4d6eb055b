"""Lockstep SimCLR training of K encoders, one per loss, under shared randomness (paper Sec. 5, App. B).

App. B couples the CL and NSCL trajectories: same initialisation w_0, and at every step t the SAME batch B_t and
the SAME augmentations, the runs differing only in the loss. :class:`LockstepTrainer` realises that coupling by
construction for K models (one per entry of ``cfg.losses``; CL, DCL, NSCL, SCL from :mod:`theory.losses` and CE):

* one model is built from ``init_seed`` and deep-copied K times (identical initial weights);
* per step the batch indices (``order_seed``: one permutation per epoch, drop_last) and the two augmented views
  (``aug_seed``, :class:`experiments.augment.SimCLRAugment`) are produced ONCE and fed to every model (the very
  same tensor, already in the training memory format); labels and loss masks are also built once per step;
* a per-model SHA-256 hash chain over the inputs each model's forward received (batch indices and view
  tensor) goes into the manifest, so equal digests prove bit-identical inputs.

Producing data and augmentations once is also the efficiency gain over K separate runs
(``benchmarks/bench_lockstep.py``). On CUDA the uint8 dataset is uploaded once and augmentation runs on the GPU.

Per-step loss (``anchors="both"``: each of the 2B views is an anchor; ``"first"``: the paper's one anchor per
sample), with projections z = g(f(x)) and cosine similarities (``theory.losses.simclr_sim``):
    CL / DCL / NSCL / SCL: the loss of ``theory.losses.contrastive_loss`` (mean over valid anchors; anchors without
    a positive or without a denominator key are excluded and counted in ``history[t]["invalid"]``), computed as
    ``masked_contrastive_loss`` with the step's shared masks (bit-identical, without a host sync per model),
    CE: ``F.cross_entropy`` of the classifier head on the projections of both views.

Optimisation per model: SGD or LARS (momentum, weight decay), learning rate linear warm-up then cosine per step
(``experiments.optim.warmup_cosine``), optional gradient-norm clipping, bf16 autocast (forward only: similarities
and losses in float32) and channels_last on CUDA (``AMP_DEVICE_TYPES``), optional ``torch.compile``.

Files in ``cfg.out_dir`` (if set): ``manifest.json`` (seeds, config, versions, device, git revision, dataset
fingerprint, input digests), ``history.json`` (per-step losses), ``ckpt.pt`` (latest checkpoint, atomic, every
``ckpt_every`` epochs, at the end, on SIGINT/SIGTERM and before stopping on a non-finite loss).
"""


from __future__ import annotations

import copy
import math
import os
import platform
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from runio import git_state, package_versions
from theory.constants import check_positive_int
from theory.losses import contrastive_loss, contrastive_masks, masked_contrastive_loss

from . import distributed as ddp
from runio.checkpoint import atomic_write_json, config_diff, load_checkpoint, save_checkpoint
from .data import ImageDataset, noisy_labels
from .input_digest import InputDigest, dataset_fingerprint
from .models import SimCLRModel, build_simclr_model
from .optim import build_optimizer, warmup_cosine
from .train_config import RESUME_MUTABLE_KEYS, TrainConfig, resolve_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "CKPT_NAME",
    "AMP_DEVICE_TYPES",
    "LockstepTrainer",
    "TrainingInterrupted",
    "TrainingDiverged",
]

CHECKPOINT_FORMAT = "simdescent-lockstep-v1"
CKPT_NAME = "ckpt.pt"
#: Device types on which ``cfg.bf16`` (bf16 autocast of the forward) and ``cfg.channels_last`` take effect. Tests add
#: "cpu" to run exactly the CUDA code path (autocast, channels_last models and views) on the CPU.
AMP_DEVICE_TYPES: tuple[str, ...] = ("cuda",)


class TrainingInterrupted(SystemExit):
    """Raised by :meth:`LockstepTrainer.fit` after SIGINT/SIGTERM once the step finished and the checkpoint is saved.

    A ``SystemExit`` (exit status 128 + signal number, no traceback) so an uncaught one ends the process cleanly.
    """


class TrainingDiverged(RuntimeError):
    """A model's loss became NaN/inf; the message names the model, the step and the loss value."""


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()} " \
               f"({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"




OnStep = Callable[["LockstepTrainer", int, Tensor, Tensor], None]
OnEval = Callable[["LockstepTrainer", int, int], None]


class LockstepTrainer:
    """K SimCLR models (one per loss) trained in lockstep on shared batches and augmentations.

    Attributes: ``models`` (name -> SimCLRModel, the raw modules), ``optimizers``, ``step`` (completed steps),
    ``steps_per_epoch`` (N // B), ``total_steps``, ``history`` (one dict per completed step: step, epoch, lr,
    loss {name: float}, invalid {name: int}), ``digest`` (:class:`InputDigest`), ``manifest`` (dict).

    ``dist``: a :class:`experiments.distributed.DistContext` for DDP (None: one process). ``quiet``: no tqdm bar.
    """

    def __init__(self, cfg: TrainConfig, train_set: ImageDataset, dist: ddp.DistContext | None = None,
                 quiet: bool = False) -> None:
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        if not isinstance(train_set, ImageDataset):
            raise ValueError(f"train_set must be an ImageDataset, got {type(train_set).__name__}")
        cfg.validate()
        self.cfg = cfg
        self.quiet = quiet
        self.dist = dist if (dist is not None and dist.world_size > 1) else None
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank if self.dist else torch.cuda.current_device())
        self.is_main = self.dist is None or self.dist.is_main
        self.on_cuda = self.device.type == "cuda"
        amp = self.device.type in AMP_DEVICE_TYPES
        self.autocast_dtype = torch.bfloat16 if (amp and cfg.bf16) else None
        self.memory_format = torch.channels_last if (amp and cfg.channels_last) else torch.contiguous_format

        n = self._n = len(train_set)
        self.batch_size = cfg.batch_size
        self.steps_per_epoch = n // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size must be <= the training set size {n}, got batch_size={cfg.batch_size}")
        self.local_slice = ddp.shard_slice(cfg.batch_size, self.dist)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        if "NSCL" in cfg.losses and train_set.num_classes < 2:
            raise ValueError(f"NSCL needs >= 2 classes, got num_classes={train_set.num_classes} ({train_set.name})")

        self.train_set = train_set
        self.dataset_info = dataset_fingerprint(train_set)
        # the whole uint8 dataset lives on the device (uploaded once)
        self.images = train_set.images.to(self.device)
        #: labels the supervised losses see (``cfg.label_noise``: randomised); ``true_labels``: the dataset's
        self.true_labels = train_set.labels.to(self.device)
        self.labels = noisy_labels(train_set.labels, train_set.num_classes, cfg.label_noise,
                                   cfg.label_noise_seed).to(self.device)
        _, c, h, w = train_set.images.shape
        self.augment = cfg.make_augment(h)

        # separate generators: batch order (CPU), augmentation (on the device)
        self.order_gen = torch.Generator().manual_seed(cfg.order_seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(cfg.aug_seed)
        self._perm: Tensor | None = None
        self._perm_epoch = -1
        self._perm_dev: tuple[Tensor, Tensor] | None = None  # (CPU permutation, its copy on the device)
        self._upload_perm = self.device.type != "cpu"
        self._static_targets: dict | None = None  # batch-independent loss inputs (ids, self mask, CL / DCL masks)

        # identical initial weights: one model from init_seed, deep-copied per loss
        base = self._build_model(c, h, train_set.num_classes)
        self.models: dict[str, SimCLRModel] = {}
        for name in cfg.losses:
            m = copy.deepcopy(base)
            if name != "CE":
                _drop_head(m)
            self.models[name] = m.to(self.device, memory_format=self.memory_format).train()
        # what DDP / torch.compile wrap: model -> (z, CE logits or None); logits are computed per rank BEFORE the
        # all_gather so that the CE head's gradient is scaled like the backbone's (see experiments.distributed)
        self._train_modules: dict[str, nn.Module] = {}
        for name in cfg.losses:
            fwd = ddp.wrap_model(_TrainForward(self.models[name], name == "CE"), self.dist, self.device, cfg.sync_bn)
            self._train_modules[name] = torch.compile(fwd) if cfg.compile else fwd
        self.optimizers = {name: self._make_optimizer(self.models[name]) for name in cfg.losses}

        self.step = 0
        self.history: list[dict] = []
        self.invalid_total = {name: 0 for name in cfg.losses}
        self.digest = InputDigest(cfg.losses, background=self.on_cuda) if cfg.digest else None
        self.profile = False  # if True, train_step accumulates synchronised timings in self.timings
        self.timings: dict = {}
        self.reset_timings()
        self._stop_signal: int | None = None
        self.interrupted: str | None = None
        self.manifest = self._base_manifest()

    # -- construction helpers ------------------------------------------------------------------------------
    def _build_model(self, channels: int, size: int, num_classes: int) -> SimCLRModel:
        cfg = self.cfg
        return build_simclr_model(cfg.arch, in_channels=channels, width=cfg.width, image_size=size,
                                  proj_hidden=cfg.proj_hidden, proj_dim=cfg.proj_dim,
                                  num_classes=num_classes if "CE" in cfg.losses else None, seed=cfg.init_seed)

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """SGD or LARS (experiments.optim.build_optimizer: biases / BN parameters without weight decay)."""
        cfg = self.cfg
        return build_optimizer(cfg.optimizer, model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def _base_manifest(self) -> dict:
        cfg = self.cfg
        return {
            "format": CHECKPOINT_FORMAT,
            "seeds": {"init_seed": cfg.init_seed, "order_seed": cfg.order_seed, "aug_seed": cfg.aug_seed},
            "config": cfg.to_dict(),
            "versions": {**package_versions("torch", "numpy"), "cuda": torch.version.cuda},
            "device": _device_name(self.device),
            "distributed": None if self.dist is None else {"world_size": self.dist.world_size,
                                                           "rank": self.dist.rank, "backend": self.dist.backend},
            "git": git_state(),
            "dataset": self.dataset_info,
            "label_noise": {"p": cfg.label_noise, "seed": cfg.label_noise_seed,
                            "changed": int((self.labels != self.true_labels).sum()),
                            "note": "applied to the training labels of NSCL, SCL and CE; evaluation uses true labels"},
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
        }

    # -- schedule / batches -----------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warm-up then cosine (experiments.optim.warmup_cosine)."""
        return float(warmup_cosine(step, self.total_steps, self.warmup_steps, self.cfg.lr))

    def batch_indices(self, step: int) -> Tensor:
        """Global batch indices of step ``step`` (CPU long (B,)); draws the epoch permutation when a new epoch starts.

        Must be called with consecutive steps (the order generator advances once per epoch).
        """
        epoch, s = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self._n, generator=self.order_gen)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm[s * self.batch_size:(s + 1) * self.batch_size]

    def _device_indices(self, step: int, idx: Tensor) -> Tensor:
        """``idx`` (= batch_indices(step)) on the training device, sliced from a device copy of the epoch
        permutation uploaded once per epoch (no per-step host-to-device copy from pageable memory)."""
        if not self._upload_perm:
            return idx
        if self._perm_dev is None or self._perm_dev[0] is not self._perm:
            assert self._perm is not None
            self._perm_dev = (self._perm, self._perm.to(self.device))
        s = step % self.steps_per_epoch
        return self._perm_dev[1][s * self.batch_size:(s + 1) * self.batch_size]

    def make_views(self, indices: Tensor) -> Tensor:
        """Two augmented views of the images ``indices`` from the augmentation generator, stacked [view1; view2].

        Shape: indices (B,) (on the CPU or the device) -> (2B, C, H, W) float32 on the device, in the training memory
        format (channels_last on CUDA), converted once here: every model receives this very tensor.
        """
        x = self.images[indices.to(self.device, non_blocking=True)]  # uint8: the augmentation reads it as /255
        v1 = self.augment(x, self.aug_gen)
        v2 = self.augment(x, self.aug_gen)
        views = torch.cat([v1, v2], dim=0)
        return views.contiguous(memory_format=self.memory_format)

    def _local_views(self, views: Tensor) -> Tensor:
        if self.dist is None:
            return views
        B = self.batch_size
        sl = self.local_slice
        return torch.cat([views[:B][sl], views[B:][sl]], dim=0).contiguous(memory_format=self.memory_format)

    # -- one shared step ------------------------------------------------------------------------------------------
    def _targets(self, labels: Tensor) -> "_Targets":
        """Loss inputs that depend only on the batch, built ONCE per step and shared by the K models.

        Ids, self mask and the CL / DCL masks depend only on B and ``anchors`` (built once per trainer); the label
        masks (NSCL, SCL) once per step. Masks come from ``theory.losses.contrastive_masks`` with the inputs
        ``theory.losses.simclr_sim`` builds, and the per-kind valid-anchor counts are precomputed (device tensors,
        no synchronisation). Shape: labels (B,) global batch labels on the device.
        """
        st = self._static_targets
        if st is None:
            B, dev = self.batch_size, self.device
            ids = torch.arange(B, device=dev)
            key_ids = torch.cat([ids, ids])
            anchor_ids = key_ids if self.cfg.anchors == "both" else ids
            self_mask = torch.eye(anchor_ids.shape[0], 2 * B, dtype=torch.bool, device=dev)
            st = self._static_targets = {"anchor_ids": anchor_ids, "key_ids": key_ids, "self_mask": self_mask,
                                         "masks": {}}
        key_labels = torch.cat([labels, labels])
        anchor_labels = key_labels if self.cfg.anchors == "both" else labels
        masks = {}
        for kind in self.cfg.losses:
            if kind == "CE":
                continue
            m = st["masks"].get(kind)
            if m is None:
                pos, den = contrastive_masks(kind, st["anchor_ids"], st["key_ids"], anchor_labels, key_labels,
                                             st["self_mask"])
                n_valid = (pos.any(dim=1) & den.any(dim=1)).sum()
                m = (pos, den, n_valid.to(torch.float32), pos.shape[0] - n_valid)
                if kind in ("CL", "DCL"):  # label-free: the same for every batch
                    st["masks"][kind] = m
            masks[kind] = m
        return _Targets(key_labels, anchor_labels, st["anchor_ids"], st["key_ids"], st["self_mask"], masks)

    def _similarities(self, o1: Tensor, o2: Tensor) -> Tensor:
        """Cosine similarity logits of the two-view batch, exactly as ``theory.losses.simclr_sim`` (normalize=True):
        rows [z1; z2] ("both") or z1 ("first"), keys [z1; z2]. Shape: o1, o2 (B, p) -> (A, 2B)."""
        z1 = F.normalize(o1, dim=1)
        z2 = F.normalize(o2, dim=1)
        keys = torch.cat([z1, z2], dim=0)
        rows = keys if self.cfg.anchors == "both" else z1
        return rows @ keys.T

    def _loss(self, name: str, x: Tensor, targets: "_Targets") -> tuple[Tensor, Tensor]:
        """Global-batch loss of model ``name`` on its (local) views ``x`` and the number of invalid anchors.

        The forward runs under bf16 autocast when enabled; the projections / logits are cast to float32 before the
        similarities and the loss (so the loss is float32 whatever the forward precision). Contrastive kinds:
        ``theory.losses.masked_contrastive_loss`` with the step's shared masks, mean over valid anchors (the
        reduction of ``theory.losses.contrastive_loss``, without its per-call host synchronisation; a batch with
        no valid anchor is reported after the step's one synchronisation).
        Shape: x (2b, C, H, W) = [view1 shard; view2 shard]. Under DDP the projections (or CE logits) are gathered
        with gradients, so the loss is the one-process loss of the global batch.
        """
        ac = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        with ac:
            z, logits = self._train_modules[name](x)
        out = (logits if name == "CE" else z).float()
        b = out.shape[0] // 2
        o1, o2 = out[:b], out[b:]
        if self.dist is not None:
            o1 = ddp.all_gather_with_grad(o1, self.dist)
            o2 = ddp.all_gather_with_grad(o2, self.dist)
        if name == "CE":
            loss = F.cross_entropy(torch.cat([o1, o2], dim=0), targets.key_labels)
            return loss, torch.zeros((), dtype=torch.long, device=loss.device)
        pos, den, n_valid, n_invalid = targets.masks[name]
        res = masked_contrastive_loss(self._similarities(o1, o2), pos, den, self.cfg.tau)
        return res.loss.sum(dim=0) / n_valid, n_invalid

    def _no_valid_anchor(self, name: str, targets: "_Targets") -> ValueError:
        """The one-line error ``theory.losses.contrastive_loss`` raises for a batch without a valid anchor."""
        sim = torch.zeros(targets.self_mask.shape, device=targets.self_mask.device)
        try:
            contrastive_loss(sim, name, self.cfg.tau, targets.anchor_ids, targets.key_ids, targets.anchor_labels,
                             targets.key_labels, targets.self_mask)
        except ValueError as e:
            return e
        return ValueError(f"{name}: no valid anchor in the batch")  # pragma: no cover (masks say otherwise)

    def _snapshot_generators(self) -> dict:
        return {"order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state(),
                "perm": None if self._perm is None else self._perm.clone(), "perm_epoch": self._perm_epoch}

    def train_step(self) -> tuple[Tensor, Tensor]:
        """One shared step for all K models; returns (global batch indices (B,), views (2B, C, H, W)).

        Produced ONCE per step and shared: batch indices, the image gather and both augmented views (one tensor,
        already in the training memory format, passed as is to every model), labels and loss masks
        (:meth:`_targets`), the content hash of the inputs (memoised in :class:`InputDigest`). Per model: forward
        + loss, backward, optimiser step. One host synchronisation per step (losses and invalid-anchor counts).
        With ``profile`` True, synchronised wall times accumulate in ``timings`` (seconds; see
        :meth:`reset_timings`).
        """
        t = self.step
        snap = self._snapshot_generators()
        prof = self.profile
        tick = t_start = self._lap(None, 0.0) if prof else 0.0
        idx = self.batch_indices(t)
        dev_idx = self._device_indices(t, idx)
        if prof:
            tick = self._lap("indices", tick)
        views = self.make_views(dev_idx)
        x = self._local_views(views)
        local_idx = idx[self.local_slice]
        if prof:
            tick = self._lap("views", tick)
        targets = self._targets(self.labels[dev_idx])
        if prof:
            tick = self._lap("targets", tick)
            t_data = tick
        if self.digest is not None:
            self.digest.new_step()
        lr = self.lr_at(t)
        losses, invalid = [], []
        for name in self.cfg.losses:
            if self.digest is not None:
                self.digest.consume(name, local_idx, x)  # hashed once per step: later models hit the memo
                if prof:
                    tick = self._lap("digest", tick)
            opt = self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            loss, n_bad = self._loss(name, x, targets)
            if prof:
                tick = self._lap("forward", tick)
            (loss * ddp.loss_scale(self.dist)).backward()
            if prof:
                tick = self._lap("backward", tick)
            losses.append(loss.detach())
            invalid.append(n_bad)
        K = len(losses)
        # the one synchronisation per step (float32 losses and integer counts are exact in float64)
        stats = torch.cat([torch.stack(losses).double(), torch.stack(invalid).double()]).cpu().tolist()
        vals, n_invalid = stats[:K], [int(v) for v in stats[K:]]
        if prof:
            tick = self._lap("sync", tick)
        n_anchors = targets.self_mask.shape[0]
        for name, k in zip(self.cfg.losses, n_invalid):
            if name != "CE" and k == n_anchors:
                raise self._no_valid_anchor(name, targets)
        bad = [(n, v) for n, v in zip(self.cfg.losses, vals) if not math.isfinite(v)]
        if bad:
            self._diverged(t, bad, snap)
        for name in self.cfg.losses:
            model, opt = self.models[name], self.optimizers[name]
            if self.cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        if prof:
            tick = self._lap("optimizer", tick)
            self.timings["data"] += t_data - t_start
            self.timings["models"] += tick - t_data
            self.timings["steps"] += 1
        rec = {"step": t, "epoch": t // self.steps_per_epoch, "lr": lr,
               "loss": dict(zip(self.cfg.losses, vals)), "invalid": dict(zip(self.cfg.losses, n_invalid))}
        for name, k in zip(self.cfg.losses, n_invalid):
            self.invalid_total[name] += int(k)
        self.history.append(rec)
        self.step = t + 1
        return idx, views

    def _sync(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize(self.device)

    #: phases timed by train_step when ``profile`` is True ("data" = indices + views + targets, "models" = the rest)
    TIMED_PHASES = ("indices", "views", "targets", "digest", "forward", "backward", "sync", "optimizer")

    def reset_timings(self) -> None:
        """Zero ``timings``: seconds per phase of :data:`TIMED_PHASES` summed over steps (forward / backward /
        digest over all K models), plus "data", "models" and "steps" (number of profiled steps)."""
        self.timings = {k: 0.0 for k in (*self.TIMED_PHASES, "data", "models")}
        self.timings["steps"] = 0

    def _lap(self, key: str | None, t0: float) -> float:
        """Synchronise the device, add the time since ``t0`` to ``timings[key]`` and return the current time."""
        self._sync()
        now = time.perf_counter()
        if key is not None:
            self.timings[key] += now - t0
        return now

    def _diverged(self, t: int, bad: list, snap: dict) -> None:
        """Save the last good state (models before step t, generators before drawing batch t) and raise."""
        name, val = bad[0]
        where = "no out_dir: no checkpoint written"
        if self.cfg.out_dir is not None:
            cur = self._snapshot_generators()
            self._restore_generators(snap)
            try:
                path = self.save_checkpoint(Path(self.cfg.out_dir) / "last_good.pt")
                where = f"last good state saved to {path}"
            finally:
                self._restore_generators(cur)
        others = "" if len(bad) == 1 else f" (also {', '.join(f'{n}={v}' for n, v in bad[1:])})"
        raise TrainingDiverged(f"loss of model {name!r} is {val} at step {t} (epoch {t // self.steps_per_epoch})"
                               f"{others}; {where}")

    def _restore_generators(self, snap: dict) -> None:
        self._perm_dev = None
        self.order_gen.set_state(snap["order_gen"])
        self.aug_gen.set_state(snap["aug_gen"])
        self._perm = None if snap["perm"] is None else snap["perm"].clone()
        self._perm_epoch = int(snap["perm_epoch"])

    # -- the loop -----------------------------------------------------------------------------------------------
    def fit(self, on_step: OnStep | None = None, on_eval: OnEval | None = None, eval_every: int = 0,
            max_steps: int | None = None, on_interrupt: Callable[[], Path] | None = None) -> None:
        """Train until ``total_steps`` (or until ``max_steps`` completed steps, a global count).

        on_step(trainer, t, batch_indices (B,) long CPU, views (2B, C, H, W)) after each shared step t (0-based;
        the models have already been updated with batch t).
        on_eval(trainer, epoch, step) with ``step`` = completed steps and ``epoch`` = step // steps_per_epoch:
        before the first step of a fresh run and every ``eval_every`` steps (if eval_every > 0), and at the end.
        A checkpoint goes to ``out_dir/ckpt.pt`` every ``ckpt_every`` epochs and at the end (if out_dir is set).
        SIGINT / SIGTERM: the current step finishes, the checkpoint is saved, :class:`TrainingInterrupted` is
        raised (a second signal interrupts at once); ``on_interrupt()`` (if given) saves the caller's own
        checkpoint instead and returns its path. A NaN/inf loss raises :class:`TrainingDiverged`.
        """
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
            raise ValueError(f"eval_every must be an integer >= 0, got eval_every={eval_every!r}")
        end = self.total_steps if max_steps is None else min(self.total_steps, check_positive_int("max_steps", max_steps))
        out = Path(self.cfg.out_dir) if self.cfg.out_dir is not None else None
        if out is not None and self.is_main:
            out.mkdir(parents=True, exist_ok=True)
            self.write_manifest()
        old_handlers = self._install_signal_handlers()
        show = not self.quiet and self.is_main
        lines = show and not _stderr_is_terminal()  # redirected log: one line per evaluation, no bars
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not show or lines,
                   desc="lockstep", unit="step", dynamic_ncols=True)
        t_fit = time.perf_counter()
        last_eval = -1
        try:
            if on_eval is not None and eval_every > 0 and self.step == 0:
                on_eval(self, 0, 0)
                last_eval = 0
            while self.step < end:
                idx, views = self.train_step()
                t = self.step - 1
                rec = self.history[-1]
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in rec["loss"].items()}, refresh=False)
                if on_step is not None:
                    on_step(self, t, idx, views)
                if on_eval is not None and eval_every > 0 and self.step % eval_every == 0:
                    on_eval(self, self.step // self.steps_per_epoch, self.step)
                    last_eval = self.step
                epoch_done = self.step % self.steps_per_epoch == 0
                if lines and (self.step == end or (last_eval == self.step if on_eval is not None and eval_every > 0
                                                   else epoch_done)):
                    self._progress_line(rec, t_fit)
                if (out is not None and epoch_done and self.cfg.ckpt_every > 0
                        and (self.step // self.steps_per_epoch) % self.cfg.ckpt_every == 0
                        and self.step < self.total_steps):
                    self.save_checkpoint(out / CKPT_NAME)
                if self._stop_requested():
                    self._interrupt(out, on_interrupt)
            if on_eval is not None and last_eval != self.step:
                on_eval(self, self.step // self.steps_per_epoch, self.step)
            if out is not None and self.step == self.total_steps:
                self.save_checkpoint(out / CKPT_NAME)
        finally:
            bar.close()
            self._restore_signal_handlers(old_handlers)
            self._stop_signal = None

    def _progress_line(self, rec: dict, t0: float) -> None:
        """One line on stderr (the log form of the progress bar): step, epoch, lr, losses, elapsed seconds."""
        losses = " ".join(f"{k}={v:.4f}" for k, v in rec["loss"].items())
        print(f"lockstep: step {self.step}/{self.total_steps} epoch {self.step // self.steps_per_epoch} "
              f"lr {rec['lr']:.4g} {losses} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    def _stop_requested(self) -> bool:
        flag = 0 if self._stop_signal is None else int(self._stop_signal)
        if self.dist is not None:  # every rank must stop after the same step
            flag = ddp.all_reduce_max(flag, self.dist, self.device if self.dist.backend == "nccl" else "cpu")
            if flag and self._stop_signal is None:
                self._stop_signal = flag
        return flag != 0

    def _interrupt(self, out: Path | None, on_interrupt: Callable[[], Path] | None = None) -> None:
        signum = int(self._stop_signal or signal.SIGINT)
        name = _signal_name(signum)
        self.interrupted = name
        if on_interrupt is not None:
            path = on_interrupt()
            msg = f"{name} received: stopped after step {self.step} (epoch {self.step // self.steps_per_epoch}); " \
                  f"checkpoint saved to {path}"
        elif out is not None:
            path = self.save_checkpoint(out / CKPT_NAME)
            msg = f"{name} received: stopped after step {self.step} (epoch {self.step // self.steps_per_epoch}); " \
                  f"checkpoint saved to {path}; resume with LockstepTrainer.resume({str(path)!r}, train_set)"
        else:
            msg = f"{name} received: stopped after step {self.step}; no out_dir set, so no checkpoint was written"
        if self.is_main:
            print(msg, file=sys.stderr, flush=True)
        raise TrainingInterrupted(128 + signum)

    def _install_signal_handlers(self) -> dict:
        """SIGINT / SIGTERM -> :meth:`_on_signal` (a signal forwarded before :meth:`fit` is kept)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return old

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # second signal: stop now
            raise KeyboardInterrupt(f"second {_signal_name(signum)}: stopping without a checkpoint")
        self._stop_signal = signum
        if self.is_main:
            print(f"{_signal_name(signum)} received: finishing step {self.step} and saving a checkpoint "
                  f"(send it again to stop at once)", file=sys.stderr, flush=True)

    @staticmethod
    def _restore_signal_handlers(old: dict) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    # -- evaluation ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, name: str, images: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
        """(backbone features (N, f), projections (N, p)) of model ``name`` in eval mode, float32 on the CPU.

        images: (N, C, H, W) uint8 (divided by 255) or floating in [0, 1]; processed in chunks of ``batch_size``
        on the training device, in float32 (no autocast). The model returns to train mode afterwards.
        """
        if name not in self.models:
            raise ValueError(f"name must be one of {tuple(self.models)}, got name={name!r}")
        batch_size = check_positive_int("batch_size", batch_size)
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {type(images).__name__} "
                             f"{tuple(getattr(images, 'shape', ()))}")
        model = self.models[name]
        was_training = model.training
        model.eval()
        feats, projs = [], []
        try:
            for i in range(0, images.shape[0], batch_size):
                x = images[i:i + batch_size].to(self.device, non_blocking=True)
                x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
                f, z = model(x.contiguous(memory_format=self.memory_format))
                feats.append(f.float().cpu())
                projs.append(z.float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(feats), torch.cat(projs)

    # -- manifest / checkpoints ------------------------------------------------------------------------------
    def manifest_dict(self) -> dict:
        """Manifest with the current step, input digests (hex, per model) and invalid-anchor totals."""
        m = dict(self.manifest)
        m["step"] = self.step
        m["epoch"] = self.step // self.steps_per_epoch
        m["input_digests"] = None if self.digest is None else self.digest.hexdigests()
        m["input_digest_steps"] = None if self.digest is None else dict(self.digest.counts)
        m["invalid_anchors_total"] = dict(self.invalid_total)
        m["interrupted"] = self.interrupted
        return m

    def write_manifest(self) -> Path | None:
        """Write ``out_dir/manifest.json`` and ``out_dir/history.json`` (main rank only)."""
        if self.cfg.out_dir is None or not self.is_main:
            return None
        out = Path(self.cfg.out_dir)
        atomic_write_json(out / "history.json", self.history)
        return atomic_write_json(out / "manifest.json", self.manifest_dict())

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (see :meth:`resume`)."""
        cfg = self.cfg
        return {
            "format": CHECKPOINT_FORMAT,
            "config": cfg.to_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "models": {n: m.state_dict() for n, m in self.models.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "order_gen": self.order_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.on_cuda else None,
            "perm": None if self._perm is None else self._perm.clone(),
            "perm_epoch": self._perm_epoch,
            "digest": None if self.digest is None else self.digest.state_dict(),
            "invalid_total": dict(self.invalid_total),
            "history": list(self.history),
            "manifest": self.manifest_dict(),
            "dataset": self.dataset_info,
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Atomically write :meth:`state_dict` to ``path`` (main rank only; other ranks just return the path).

        Also refreshes manifest.json / history.json in out_dir.
        """
        path = Path(path)
        if self.is_main:
            save_checkpoint(path, self.state_dict())
            self.write_manifest()
        return path

    def load_state_dict(self, state: dict, strict_config: bool = True) -> None:
        """Load models, optimisers, generators, step, digests and history from a :meth:`state_dict`."""
        if strict_config:
            diff = config_diff(self.cfg.to_dict(), state["config"], ignore=RESUME_MUTABLE_KEYS)
            if diff:
                raise ValueError(_config_mismatch("state", self.cfg.to_dict(), state["config"], diff))
        for n in self.cfg.losses:
            self.models[n].load_state_dict(state["models"][n])
            self.optimizers[n].load_state_dict(state["optimizers"][n])
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        self._perm_dev = None
        self._perm = None if state["perm"] is None else state["perm"].clone()
        self._perm_epoch = int(state["perm_epoch"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.invalid_total = {n: int(state["invalid_total"][n]) for n in self.cfg.losses}
        if self.digest is not None and state.get("digest") is not None:
            self.digest.load_state_dict(state["digest"])

    @classmethod
    def resume(cls, path: str | os.PathLike, train_set: ImageDataset, cfg: TrainConfig | None = None,
               dist: ddp.DistContext | None = None, quiet: bool = False, restore_rng: bool = True) -> "LockstepTrainer":
        """Rebuild a trainer from checkpoint ``path`` and continue where it stopped (bit-identical on CPU).

        cfg: the config the caller expects; a difference in any key outside ``RESUME_MUTABLE_KEYS`` raises a
        one-line ValueError naming the keys (None: use the checkpoint's config). ``train_set`` must be the same
        data (fingerprint check). A corrupt or truncated file raises "checkpoint X is corrupt or truncated: ...".
        restore_rng: also restore the process-wide CPU (and CUDA) RNG state saved in the checkpoint.
        """
        state = load_checkpoint(path, required=("format", "config", "step", "models", "optimizers", "order_gen",
                                                "aug_gen", "perm", "perm_epoch", "history", "dataset"))
        if state["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {path} has format {state['format']!r}, expected {CHECKPOINT_FORMAT!r}")
        saved = state["config"]
        if cfg is None:
            cfg = TrainConfig.from_dict(saved)
        else:
            diff = config_diff(cfg.to_dict(), saved, ignore=RESUME_MUTABLE_KEYS)
            if diff:
                raise ValueError(_config_mismatch(f"checkpoint {path}", cfg.to_dict(), saved, diff))
        fp = dataset_fingerprint(train_set)
        if fp["sha256"] != state["dataset"]["sha256"]:
            raise ValueError(f"checkpoint {path} was trained on {state['dataset']['name']!r} "
                             f"(N={state['dataset']['n']}, sha256 {state['dataset']['sha256'][:12]}...), got "
                             f"{fp['name']!r} (N={fp['n']}, sha256 {fp['sha256'][:12]}...)")
        trainer = cls(cfg, train_set, dist=dist, quiet=quiet)
        trainer.load_state_dict(state, strict_config=False)
        prev = state.get("manifest", {}).get("resumed_from") or []
        trainer.manifest["resumed_from"] = list(prev) + [{"path": str(path), "step": trainer.step}]
        if restore_rng:
            torch.set_rng_state(state["cpu_rng"])
            if trainer.on_cuda and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], trainer.device)
        return trainer

    def close(self) -> None:
        """Finish background digest work (call when done with the trainer)."""
        if self.digest is not None:
            self.digest.close()


def _config_mismatch(where: str, new: dict, saved: dict, diff: list[str]) -> str:
    parts = [f"{k}: saved {saved.get(k, '<missing>')!r}, given {new.get(k, '<missing>')!r}" for k in diff]
    return f"{where} was written with a different config ({'; '.join(parts)})"


def _drop_head(model: nn.Module) -> None:
    """Remove the CE classifier head from a contrastive model (so that it holds no unused parameters)."""
    if getattr(model, "head", None) is not None:
        model.head = None
        model.num_classes = None


class _Targets(NamedTuple):
    """Per-step loss inputs shared by the K models (see :meth:`LockstepTrainer._targets`).

    Shape: key_labels (2B,) labels of [view1; view2] (also the CE targets); anchor_labels (A,); anchor_ids (A,);
    key_ids (2B,); self_mask (A, 2B) bool; masks: kind -> (pos (A, 2B) bool, den (A, 2B) bool, number of valid
    anchors () float32, number of invalid anchors () long). A = 2B ("both") or B ("first").
    """

    key_labels: Tensor
    anchor_labels: Tensor
    anchor_ids: Tensor
    key_ids: Tensor
    self_mask: Tensor
    masks: dict


class _TrainForward(nn.Module):
    """Training forward of one model: x -> (projections z, CE logits head(z) or None).

    Holds exactly the model's parameters (so DDP / torch.compile see all of them used in forward).
    """

    def __init__(self, model: SimCLRModel, ce: bool) -> None:
        super().__init__()
        self.model = model
        self.ce = ce

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        _, z = self.model(x)
        return z, (self.model.head(z) if self.ce else None)
