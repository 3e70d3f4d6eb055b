"""Multi-process (torchrun + DistributedDataParallel) support for the lockstep trainer.

Scheme (exactly one process on the global batch, up to float summation order):

* every rank generates the SAME global batch indices and the SAME augmented views from the shared seeds
  (order / augmentation generators are seeded identically on all ranks), then keeps its contiguous shard
  ``[r b, (r+1) b)`` of the B = W b samples (both views of each sample);
* the local projections are gathered across ranks WITH gradients (:func:`all_gather_with_grad`: all_gather,
  then the local tensor is put back in its own slot so that its gradient flows), so every rank evaluates the
  loss on the full global batch (the same number on every rank);
* rank r then back-propagates ``W * loss``: only its own slot carries a graph, so its gradient is
  ``W dL/dz_r dz_r/dtheta``; DDP averages over ranks, giving ``sum_r dL/dz_r dz_r/dtheta = dL/dtheta``, the
  one-process gradient of the global-batch loss (:func:`loss_scale`);
* BatchNorm: on CUDA the models are converted to ``SyncBatchNorm`` (statistics over the global 2B views, as one
  process computes them); ``SyncBatchNorm`` does not run on CPU, so CPU DDP requires a model without
  BatchNorm (``mlp`` or a BN-free ``small_cnn``) or ``sync_bn=False`` (per-rank statistics, documented as NOT
  equal to one process).

Launch: ``torchrun --nproc_per_node=G -m experiments.train ...`` (the CLI calls :func:`init_from_env`).
"""

from __future__ import annotations

import inspect
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistContext",
    "init_from_env",
    "init_process_group",
    "destroy",
    "all_gather_with_grad",
    "all_reduce_max",
    "all_reduce_mean",
    "broadcast_object",
    "shard_slice",
    "loss_scale",
    "has_batchnorm",
    "wrap_model",
    "find_free_port",
]


@dataclass(frozen=True)
class DistContext:
    """Rank / world of a process group; ``local_rank`` selects the CUDA device on a node."""

    rank: int
    world_size: int
    local_rank: int = 0
    backend: str = "gloo"

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got world_size={self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must lie in [0, {self.world_size}), got rank={self.rank}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_process_group(rank: int, world_size: int, backend: str = "gloo", master_addr: str = "127.0.0.1",
                       master_port: int | None = None, local_rank: int | None = None) -> DistContext:
    """Initialise the default process group explicitly (tests / ``torch.multiprocessing.spawn``)."""
    if master_port is not None:
        os.environ["MASTER_PORT"] = str(master_port)
    os.environ.setdefault("MASTER_ADDR", master_addr)
    if "MASTER_PORT" not in os.environ:
        raise ValueError("master_port must be given (or MASTER_PORT set) to initialise a process group")
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=rank if local_rank is None else local_rank,
                       backend=backend)


def init_from_env(backend: str | None = None) -> DistContext | None:
    """Initialise from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); None when not launched by torchrun.

    backend: default ``nccl`` when CUDA is available, else ``gloo``. Sets the CUDA device to LOCAL_RANK.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)


def destroy() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_with_grad(x: Tensor, ctx: DistContext) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0 in rank order; the local slot keeps ``x``'s autograd graph.

    Other ranks' slots are constants here (their gradients flow on their own ranks); combine with
    :func:`loss_scale` so that DDP's gradient average equals the one-process gradient.

    Shape: x (b, ...) on every rank (same b) -> (W b, ...).
    """
    if ctx.world_size == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(parts, x.detach())
    parts[ctx.rank] = x
    return torch.cat(parts, dim=0)


def all_reduce_max(value: int, ctx: DistContext | None, device: torch.device | str = "cpu") -> int:
    """Maximum of an integer over ranks (e.g. 'a rank received SIGTERM'); identity without a group."""
    if ctx is None or ctx.world_size == 1:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_reduce_mean(t: Tensor, ctx: DistContext | None) -> Tensor:
    """Mean of a tensor over ranks (a copy); identity without a group."""
    if ctx is None or ctx.world_size == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / ctx.world_size


def broadcast_object(obj: object, ctx: DistContext | None, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank; identity without a group."""
    if ctx is None or ctx.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_slice(global_batch: int, ctx: DistContext | None) -> slice:
    """This rank's contiguous shard of a global batch of ``global_batch`` samples (must divide evenly)."""
    if ctx is None or ctx.world_size == 1:
        return slice(0, global_batch)
    if global_batch % ctx.world_size:
        raise ValueError(
            f"batch_size must be divisible by the world size {ctx.world_size}, got batch_size={global_batch}"
        )
    b = global_batch // ctx.world_size
    return slice(ctx.rank * b, (ctx.rank + 1) * b)


def loss_scale(ctx: DistContext | None) -> float:
    """Factor on the global-batch loss before ``backward`` so that DDP's average equals the one-process gradient.

    With :func:`all_gather_with_grad` rank r's graph holds only its own slot, so its gradient of W L is
    W (dL/dz_r)(dz_r/dtheta); DDP divides the sum over ranks by W, leaving sum_r (dL/dz_r)(dz_r/dtheta) = dL/dtheta.
    """
    return 1.0 if ctx is None else float(ctx.world_size)


def has_batchnorm(model: nn.Module) -> bool:
    """True if ``model`` contains a BatchNorm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def wrap_model(model: nn.Module, ctx: DistContext | None, device: torch.device,
               sync_bn: bool | None = None) -> nn.Module:
    """DistributedDataParallel wrapper (identity without a group); BatchNorm -> SyncBatchNorm if ``sync_bn``.

    sync_bn None (auto): on exactly when ``device`` is CUDA (NCCL); on CPU (gloo) each rank keeps its own
    BatchNorm statistics. Raises ValueError for a BatchNorm model in CPU DDP with ``sync_bn=True``
    (SyncBatchNorm runs only on GPUs).
    """
    if ctx is None or ctx.world_size == 1:
        return model
    if sync_bn is None:
        sync_bn = device.type == "cuda"
    if has_batchnorm(model) and sync_bn:
        if device.type != "cuda":
            raise ValueError(
                "sync_bn=True needs CUDA (SyncBatchNorm does not run on CPU): use a model without BatchNorm "
                "for CPU DDP, or sync_bn=False (per-rank BatchNorm statistics, not equal to one process)"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # buffers (BN running statistics) are computed identically on every rank (SyncBatchNorm), so no per-forward
    # broadcast; newer torch spells this forward_sync_buffers (syncing at construction is harmless: equal init)
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    kw = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], output_device=device.index, **kw)
    return nn.parallel.DistributedDataParallel(model, **kw)


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for MASTER_PORT in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
