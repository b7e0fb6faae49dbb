"""Process settings for the commands that stream a model's weights through memory (protect, unlock)."""

from __future__ import annotations

import os


def use_huge_pages() -> None:
    """Ask torch's CPU allocator for transparent huge pages (before torch is imported: it reads this once).
    Every weight passes through a fresh buffer; first-touch page faults made such copies 3-4x slower on
    the shared VM (torch clone of 256 MB: 0.8 GB/s without, 2.5 GB/s with)."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
