"""SHA-256 input digests: proof that coupled models were fed bit-identical inputs, and dataset fingerprints."""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import torch
from torch import Tensor

from theory.constants import check_positive_int

from .data import ImageDataset

__all__ = ["tensor_sha256", "InputDigest", "dataset_fingerprint"]


def tensor_sha256(t: Tensor) -> bytes:
    """SHA-256 of dtype, shape and the raw bytes of ``t`` in C order (t must be on the CPU)."""
    t = t.detach().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.digest()


class InputDigest:
    """Per-model hash chain over consumed inputs: ``d <- sha256(d || sha256(indices) || sha256(x))``.

    Content hashes are computed once per distinct tensor per step (memoised by storage, version, geometry and
    dtype: a hit is the very same bytes, unmodified), so K models fed the same view tensor cost one hash and each
    model's chain still records exactly the tensor it was given. ``background=True`` (the trainer's choice on
    CUDA): a tensor is snapshotted (CUDA: asynchronous copy to pinned memory, then a CUDA event; CPU: a clone) and
    hashed on a background thread, a single worker, so chains advance in submission order and the training loop
    never waits for the device; at most ``max_pending`` snapshots are in flight (back-pressure: the loop waits for
    the oldest hash rather than piling up host copies when hashing is slower than training). The chain state is
    32 bytes per model and is saved in checkpoints, so a resumed run continues the same chain.
    """

    _SEED = hashlib.sha256(b"simdescent input digest v1").digest()

    def __init__(self, names: Sequence[str], background: bool = False, max_pending: int = 4) -> None:
        self.chains: dict[str, bytes] = {n: self._SEED for n in names}
        self.counts: dict[str, int] = {n: 0 for n in names}
        self._memo: dict[tuple, tuple[Tensor, Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest") if background else None
        self._last: Future | None = None
        self.max_pending = check_positive_int("max_pending", max_pending)
        self._pending: deque[Future] = deque()
        self.hashed = 0  #: number of content hashes computed (memo misses)

    def new_step(self) -> None:
        self._memo.clear()

    def _content(self, t: Tensor) -> Any:
        key = (t.data_ptr(), t._version, tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device))
        hit = self._memo.get(key)
        if hit is not None:
            return hit[1]
        self.hashed += 1
        if self._pool is None:
            h: Any = tensor_sha256(t.detach().cpu())
        else:
            if t.device.type == "cuda":
                buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                buf.copy_(t.detach().contiguous(), non_blocking=True)
                ev: Any = torch.cuda.Event()
                ev.record()
            else:  # a private copy: a later in-place change of t cannot reach the hash
                buf, ev = t.detach().clone(), None

            def job(buf: Tensor = buf, ev: Any = ev) -> bytes:
                if ev is not None:
                    ev.synchronize()
                return tensor_sha256(buf)

            self._throttle()
            h = self._pool.submit(job)
            self._pending.append(h)
        self._memo[key] = (t, h)  # keep t alive so its storage is not reused within the step
        return h

    def _throttle(self) -> None:
        """Wait until fewer than ``max_pending`` snapshots are in flight (each holds a host copy of its tensor)."""
        while self._pending and self._pending[0].done():
            self._pending.popleft()
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()

    def consume(self, name: str, indices: Tensor, x: Tensor) -> None:
        """Record that model ``name`` consumed batch ``indices`` and input tensor ``x``."""
        hi, hx = self._content(indices), self._content(x)

        def update() -> None:
            a = hi.result() if isinstance(hi, Future) else hi
            b = hx.result() if isinstance(hx, Future) else hx
            self.chains[name] = hashlib.sha256(self.chains[name] + a + b).digest()
            self.counts[name] += 1

        if self._pool is not None:
            self._last = self._pool.submit(update)
        else:
            update()

    def flush(self) -> None:
        if self._last is not None:
            self._last.result()
        self._pending.clear()

    def hexdigests(self) -> dict[str, str]:
        self.flush()
        return {n: c.hex() for n, c in self.chains.items()}

    def state_dict(self) -> dict:
        self.flush()
        return {"chains": {n: c.hex() for n, c in self.chains.items()}, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.flush()
        self.chains = {n: bytes.fromhex(h) for n, h in state["chains"].items()}
        self.counts = {n: int(c) for n, c in state["counts"].items()}

    def close(self) -> None:
        if self._pool is not None:
            self.flush()
            self._pool.shutdown(wait=True)
            self._pool = None


def dataset_fingerprint(ds: ImageDataset) -> dict:
    """Name, size, shape and SHA-256 of images + labels (resume refuses a different training set)."""
    h = hashlib.sha256()
    h.update(tensor_sha256(ds.images.cpu()))
    h.update(tensor_sha256(ds.labels.cpu()))
    return {"name": ds.name, "n": len(ds), "shape": list(ds.images.shape[1:]), "num_classes": ds.num_classes,
            "sha256": h.hexdigest()}
