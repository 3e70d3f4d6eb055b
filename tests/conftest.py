"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for the rest of the test module, the previous count restored after it.

    Tiny models: one thread is several times faster on a busy 2-core machine and avoids OpenMP spin-waiting.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")`` or by requesting it in a fixture
    (library code never changes the thread count; a CLI's ``--threads`` is undone here too).
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
