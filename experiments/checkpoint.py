"""Atomic, integrity-checked checkpoint files and JSON manifests for the lockstep trainer.

A checkpoint is an ordinary ``torch.save`` zip archive followed by a 48-byte trailer

    b"SDCKPT01" | payload length (uint64, little endian) | SHA-256 of the payload (32 bytes)

so that a truncated file (a crash mid-write on a file system without atomic rename, a partial copy) or a
corrupted one (a flipped bit inside a tensor, which ``torch.load`` itself does NOT detect: it skips the zip
CRCs) is refused with one line instead of silently loading wrong weights. ``torch.load`` ignores the trailer,
so the file also opens with plain ``torch.load(path, weights_only=True)``.

Writes are atomic: the bytes go to a temporary file in the destination directory, which is flushed,
``fsync``-ed and then ``os.replace``-d over the destination (and the directory is fsync-ed where the OS
allows). A reader therefore sees either the previous complete checkpoint or the new complete one.

Contents are restricted to what ``torch.load(weights_only=True)`` accepts (tensors, numbers, strings, None,
bools, lists, tuples, dicts), so loading never runs pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

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
]

CHECKPOINT_MAGIC = b"SDCKPT01"
_TRAILER = struct.Struct("<8sQ32s")
TRAILER_SIZE = _TRAILER.size  # 48
_CHUNK = 1 << 22


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename inside it is durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, then ``os.replace`` it onto ``path``.

    The temporary file is removed if ``write`` raises. Returns ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` by ``data``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON (plus a final newline)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


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
                    required: Iterable[str] = ()) -> dict:
    """Verify and load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    ``required``: keys the dict must contain (else the same one-line corrupt/truncated ValueError).
    """
    path = Path(path)
    length = verify_checkpoint(path)
    try:
        with open(path, "rb") as f:
            state = torch.load(io.BufferedReader(_Window(f, length)), map_location=map_location, weights_only=True)
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
