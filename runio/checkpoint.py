"""Checkpoints: ONE format for every long run (Sigma-space descent and encoder training), atomic and checked.

A checkpoint is an ordinary ``torch.save`` zip archive followed by a 48-byte trailer

    b"SDCKPT01" | payload length (uint64, little endian) | SHA-256 of the payload (32 bytes)

so that a truncated file (a crash mid-write on a file system without atomic rename, a partial copy) or a
corrupted one (a flipped bit inside a tensor, which ``torch.load`` itself does NOT detect: it skips the zip
CRCs) is refused with one line instead of silently loading wrong weights. ``torch.load`` ignores the trailer,
so the file also opens with plain ``torch.load(path, weights_only=True)``.

Writes are atomic (``runio.atomic_write``: temporary file in the destination directory, flushed, ``fsync``-ed,
then ``os.replace``-d over the destination). A reader therefore sees either the previous complete checkpoint
or the new complete one. A killed writer leaves only its ``.<name>.<random>.tmp`` file, which
:class:`runio.outdir.OutDirLock` removes when the next run takes the directory.

Contents are restricted to what ``torch.load(weights_only=True)`` accepts (tensors, numbers, strings, None,
bools, lists, tuples, dicts), so loading never runs pickled code; ``load_checkpoint(..., weights_only=False)``
is there for states that hold other objects (numpy arrays), from a file whose digest was verified first.

A file without the trailer (another program's checkpoint, a ``torch.save`` of something else) is refused as
"corrupt or truncated" with one line, never half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .files import atomic_write, atomic_write_bytes
from .records import write_json

__all__ = [
    "CHECKPOINT_MAGIC",
    "TRAILER_SIZE",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "save_checkpoint",
    "load_checkpoint",
    "verify_checkpoint",
    "config_diff",
    "CheckpointMissing",
]

CHECKPOINT_MAGIC = b"SDCKPT01"
_TRAILER = struct.Struct("<8sQ32s")
TRAILER_SIZE = _TRAILER.size  # 48
_CHUNK = 1 << 22


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted, strict JSON (plus a final newline); ValueError on NaN."""
    return write_json(path, obj, nonfinite="error", sort_keys=True)


class _HashingWriter:
    """File-like object for ``torch.save``: forwards writes to ``f`` and hashes them on the way."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, b: Any) -> int:
        mv = memoryview(b)
        self.sha.update(mv)
        self.n += mv.nbytes
        self._f.write(mv)
        return mv.nbytes

    def flush(self) -> None:
        self._f.flush()


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically write ``state`` (a dict accepted by ``torch.load(weights_only=True)``) plus its SHA-256 trailer.

    Returns ``Path(path)``.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")

    def write(f: io.BufferedWriter) -> None:
        hw = _HashingWriter(f)
        torch.save(dict(state), hw)
        f.write(_TRAILER.pack(CHECKPOINT_MAGIC, hw.n, hw.sha.digest()))

    return atomic_write(path, write)


class _Window(io.RawIOBase):
    """Read-only view of the first ``length`` bytes of a binary file (hides the trailer from ``torch.load``)."""

    def __init__(self, f: io.BufferedReader, length: int) -> None:
        super().__init__()
        self._f = f
        self._len = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        n = max(0, min(mv.nbytes, self._len - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._pos)
        got = self._f.readinto(mv[:n])
        self._pos += got
        return got


class CheckpointMissing(FileNotFoundError, ValueError):
    """No checkpoint file at the path: a FileNotFoundError that CLIs also catch as a one-line ValueError."""


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(f"checkpoint {path} is corrupt or truncated: {why}")


def verify_checkpoint(path: str | os.PathLike) -> int:
    """Check the trailer and the SHA-256 of ``path``; return the payload length.

    Raises FileNotFoundError if ``path`` does not exist and a one-line ValueError
    ("checkpoint X is corrupt or truncated: ...") if the trailer or the digest do not match.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < TRAILER_SIZE:
        raise _corrupt(path, f"{size} bytes, shorter than the {TRAILER_SIZE}-byte trailer")
    with open(path, "rb") as f:
        f.seek(size - TRAILER_SIZE)
        magic, length, digest = _TRAILER.unpack(f.read(TRAILER_SIZE))
        if magic != CHECKPOINT_MAGIC:
            raise _corrupt(path, f"no {CHECKPOINT_MAGIC.decode()} trailer (file cut short, or not written by save_checkpoint)")
        if length != size - TRAILER_SIZE:
            raise _corrupt(path, f"trailer says {length} payload bytes, file holds {size - TRAILER_SIZE}")
        f.seek(0)
        sha = hashlib.sha256()
        left = length
        while left:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise _corrupt(path, "unexpected end of file")
            sha.update(chunk)
            left -= len(chunk)
    if sha.digest() != digest:
        raise _corrupt(path, f"SHA-256 mismatch (stored {digest.hex()[:16]}..., computed {sha.hexdigest()[:16]}...)")
    return length


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    required: Iterable[str] = (), weights_only: bool = True) -> dict:
    """Verify and load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    ``required``: keys the dict must contain (else the same one-line corrupt/truncated ValueError). A missing
    file is a one-line ValueError too ("no checkpoint ...").
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"no checkpoint to resume from: {path} does not exist")
    length = verify_checkpoint(path)
    try:
        with open(path, "rb") as f:
            state = torch.load(io.BufferedReader(_Window(f, length)), map_location=map_location,
                               weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - any failure to decode is reported as one line
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = [ln for ln in lines if "Unpickler error" in ln]
        msg = (detail or lines or [type(e).__name__])[0]
        raise _corrupt(path, f"torch.load failed: {msg}") from None
    if not isinstance(state, dict):
        raise _corrupt(path, f"expected a dict, got {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise _corrupt(path, f"missing keys {missing}")
    return state


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Sorted keys whose values differ between two config dicts (a key missing on one side differs).

    Lists and tuples compare equal element-wise (a JSON round trip turns tuples into lists).
    """
    skip = set(ignore)

    def norm(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, Mapping):
            return {k: norm(x) for k, x in v.items()}
        return v

    keys = (set(a) | set(b)) - skip
    return sorted(k for k in keys if k not in a or k not in b or norm(a[k]) != norm(b[k]))
