"""Where and how the zoo's builds run: the device, the thread count, deterministic kernels.

Both families build on CUDA when it is present (the `full` profiles are meant for a GPU) and on one CPU
thread otherwise. A build is deterministic for a given seed on one machine and numeric path (the
cache key holds the path, guard.testing.zoo.cache.numeric_path): deterministic kernels, and one
intra-op thread so that the caller's thread count cannot change the bytes (for models this small one
thread is also the fastest on a shared CPU: measured, two threads made forward passes ~20x slower on a
busy machine).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def threads(count: int = 1) -> Iterator[None]:
    """A fixed intra-op thread count for the duration."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def deterministic(count: int = 1) -> Iterator[None]:
    """Deterministic kernels and a fixed CPU thread count for a build. On CUDA, cuBLAS needs a fixed
    workspace configuration before deterministic algorithms may run (else torch raises)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with threads(count):
            yield
    finally:
        torch.use_deterministic_algorithms(previous)
