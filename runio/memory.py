"""Memory a run needs, checked before it allocates: a one-line ValueError instead of an allocation crash.

Example (Sigma-space run: three (M, M) float64 matrices Sigma_0, Sigma^CL, Sigma^NSCL plus temporaries)::

    check_memory(sigma_run_bytes(M), "Sigma-space run with M = N V = 200000 items")
    # ValueError: Sigma-space run with M = N V = 200000 items needs about 2.1 TiB of memory, 120 GiB available ...
"""

from __future__ import annotations

import os

__all__ = ["available_memory", "format_bytes", "check_memory", "sigma_run_bytes"]

#: (M, M) float64 matrices a Sigma-space run holds at its peak: Sigma_0, Sigma^CL, Sigma^NSCL and about three
#: (M, M) temporaries at an eval point (centred matrices of CKA / the drift)
SIGMA_RUN_MATRICES = 6


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo, else the physical
    memory from ``sysconf``); None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'`` (binary units up to PiB)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024.0:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} PiB"


def check_memory(need: float, what: str, available: int | None = None, fraction: float = 0.9) -> None:
    """One-line ValueError if ``need`` bytes exceed ``fraction`` of the available memory.

    ``available``: bytes (default :func:`available_memory`; if unknown, nothing is checked).
    """
    avail = available_memory() if available is None else int(available)
    if avail is None:
        return
    if need > fraction * avail:
        raise ValueError(f"{what} needs about {format_bytes(need)} of memory, only {format_bytes(avail)} is "
                         f"available; choose smaller sizes")


#: (B, 2B) float64 arrays a step holds at its peak with the per-step checks on (logits, softmax, gradients)
SIGMA_STEP_ARRAYS = 10


def sigma_run_bytes(items: int, batch_size: int = 0, itemsize: int = 8) -> int:
    """Peak bytes of a Sigma-space run over ``items`` = M = N V items with batch size B: :data:`SIGMA_RUN_MATRICES`
    (M, M) matrices plus :data:`SIGMA_STEP_ARRAYS` (B, 2B) step arrays, ``itemsize`` bytes per entry."""
    M, B = int(items), int(batch_size)
    return (SIGMA_RUN_MATRICES * M * M + SIGMA_STEP_ARRAYS * B * 2 * B) * int(itemsize)
