"""Sparsification of task vectors, shared by the task-arithmetic family of methods.

Magnitude masks come in two tie rules (`TensorGroup.magnitude_mask`):

- "threshold" (the default): find the k-th largest magnitude by a radix select over the float's bit
  pattern (one histogram pass for 16-bit floats, two for float32), keep everything above it, and among
  the entries equal to it keep those with the lowest flat index until k are kept. O(n), the same on
  every device, exactly k entries kept.
- "argsort": keep the first k of `torch.argsort(|x|, descending=True)` (float32 on CPU), which is what
  mergekit does. torch's argsort is not stable, so which of several equal magnitudes survive is
  whatever the sort kernel does; on CPU that makes the result bit-identical to mergekit's, at O(n log n).

Both keep the same entries except among equal magnitudes at the cut.
"""

from __future__ import annotations

import abc

import torch

MAGNITUDE_MASKS = ("threshold", "argsort")
_HI_BUCKETS = 1 << 15  # non-negative 16-bit keys, and the high half of non-negative 32-bit keys
_LO_BUCKETS = 1 << 16


def _order_key(values: torch.Tensor) -> torch.Tensor:
    """Integers ordered like the non-negative floats `values` (their bit patterns)."""
    if values.element_size() == 2:
        return values.view(torch.int16)
    if values.element_size() == 4:
        return values.view(torch.int32)
    return values.view(torch.int64)


def _cut(hist: torch.Tensor, k: int) -> tuple[int, int, int]:
    """The bucket holding the k-th largest entry, how many entries lie in higher buckets, and in it."""
    from_top = hist.flip(0).cumsum(0)
    j = int(torch.searchsorted(from_top, torch.tensor([k], device=hist.device, dtype=from_top.dtype)))
    bucket = hist.numel() - 1 - j
    inside = int(hist[bucket])
    return bucket, int(from_top[j]) - inside, inside


def _kth_largest_key(key: torch.Tensor, k: int) -> tuple[int, int, int]:
    """(key value of the k-th largest entry, entries strictly larger, entries equal to it)."""
    if key.dtype == torch.int16:
        return _cut(torch.bincount(key, minlength=_HI_BUCKETS), k)
    if key.dtype == torch.int32:
        high = key >> 16
        hi_bucket, above, _ = _cut(torch.bincount(high, minlength=_HI_BUCKETS), k)
        low = key[high == hi_bucket] & 0xFFFF
        del high
        lo_bucket, above_low, ties = _cut(torch.bincount(low, minlength=_LO_BUCKETS), k - above)
        return (hi_bucket << 16) | lo_bucket, above + above_low, ties
    value = int(torch.kthvalue(key.cpu(), key.numel() - k + 1).values)
    return value, int((key > value).sum()), int((key == value).sum())


def top_k_mask(magnitudes: torch.Tensor, k: int, *, rule: str = "threshold") -> torch.Tensor:
    """Boolean mask (flat) of the k largest entries of the non-negative `magnitudes`."""
    flat = magnitudes.reshape(-1)
    n = flat.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=flat.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=flat.device)
    if rule == "argsort":
        mask = torch.zeros(n, dtype=torch.bool, device=flat.device)
        w = flat.float() if flat.device.type == "cpu" else flat
        mask[torch.argsort(w, descending=True)[:k]] = True
        return mask
    if rule != "threshold":
        raise ValueError(f"unknown magnitude mask rule {rule!r}; known: {', '.join(MAGNITUDE_MASKS)}")
    key = _order_key(flat)
    threshold, above, ties = _kth_largest_key(key, k)
    if above + ties == k:
        return key >= threshold
    mask = key > threshold
    mask[(key == threshold).nonzero().squeeze(1)[:k - above]] = True
    return mask


def bottom_excluded_mask(magnitudes: torch.Tensor, keep: int, drop_top: int, *, rule: str) -> torch.Tensor:
    """Entries ranked (descending) in [drop_top, drop_top + keep): the largest `drop_top` and everything
    below the kept band are dropped (breadcrumbs)."""
    if rule == "argsort":
        flat = magnitudes.reshape(-1)
        w = flat.float() if flat.device.type == "cpu" else flat
        n = flat.numel()
        bottom = n - keep - drop_top
        mask = torch.zeros(n, dtype=torch.bool, device=flat.device)
        mask[torch.sort(w, descending=False).indices[bottom:bottom + keep]] = True
        return mask
    return top_k_mask(magnitudes, drop_top + keep, rule=rule) & ~top_k_mask(magnitudes, drop_top, rule=rule)


class ChunkedMask(abc.ABC):
    """A sparsified task vector handed out chunk by chunk, each chunk once, in increasing order."""

    @abc.abstractmethod
    def chunk(self, start: int, stop: int) -> torch.Tensor:
        """The sparsified entries [start, stop) of the flattened task vector."""


class Precomputed(ChunkedMask):
    def __init__(self, flat: torch.Tensor):
        self.flat = flat

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        return self.flat[start:stop]


class ThresholdChunks(ChunkedMask):
    """The threshold rule applied chunk by chunk: entries above the k-th largest magnitude, and the first
    `need` entries equal to it in index order (which is why chunks must come in order)."""

    def __init__(self, flat: torch.Tensor, threshold: int, need: int):
        self.flat, self.threshold, self.need = flat, threshold, need

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        # int16 arithmetic on the bit patterns (-1 = keep): much cheaper in torch than boolean masks.
        values = self.flat[start:stop]
        bits = values.view(torch.int16)
        key = bits & 0x7FFF  # the magnitude's bit pattern, ordered like |x|
        keep = (self.threshold - key) >> 15  # -1 where key > threshold
        if self.need > 0:
            ties = ~(((key - self.threshold) | (self.threshold - key)) >> 15)  # -1 where key == threshold
            count = -int(ties.sum())
            if count <= self.need:
                keep |= ties
            else:
                keep[ties.nonzero().squeeze(1)[:self.need]] = -1
            self.need -= min(count, self.need)
        return (bits & keep).view(values.dtype)


def magnitude_chunks(flat: torch.Tensor, density: float, *, rule: str = "threshold", rescale: bool = False,
                     chunk: int = 1 << 18):
    """`magnitude` of a flat task vector, as chunks where that is cheaper: 16-bit floats with the threshold
    rule and no rescale get one histogram pass now and their mask chunk by chunk later (in cache);
    anything else is sparsified whole, here."""
    if rule != "threshold" or rescale or flat.element_size() != 2 or density >= 1 or density <= 0 or not flat.numel():
        return magnitude(flat, density, rule=rule, rescale=rescale)
    k = max(1, int(density * flat.numel()))
    hist = torch.zeros(_HI_BUCKETS, dtype=torch.int64, device=flat.device)
    for start in range(0, flat.numel(), chunk):
        hist += torch.bincount(_order_key(flat[start:start + chunk].abs()), minlength=_HI_BUCKETS)
    threshold, above, _ = _cut(hist, k)
    return ThresholdChunks(flat, threshold, k - above)


def rescale_l1(tensor: torch.Tensor, masked: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """`masked` scaled so that its L1 norm matches `tensor`'s (mergekit's "rescale"); unchanged when
    either norm is below eps."""
    before = tensor.abs().sum()
    after = masked.abs().sum()
    if before < eps or after < eps:
        return masked
    return masked * (before / after)


def magnitude(tensor: torch.Tensor, density: float, *, rule: str = "threshold", rescale: bool = False) -> torch.Tensor:
    """Keep the top `density` fraction of entries by magnitude (at least one), zero the rest (TIES' trim)."""
    if density >= 1:
        return tensor
    if density <= 0 or tensor.numel() == 0:
        return torch.zeros_like(tensor)
    k = max(1, int(density * tensor.numel()))
    masked = torch.where(top_k_mask(tensor.abs(), k, rule=rule).reshape(tensor.shape), tensor, 0)
    return rescale_l1(tensor, masked) if rescale else masked


def magnitude_outliers(tensor: torch.Tensor, density: float, gamma: float, *, rule: str = "threshold",
                       rescale: bool = False) -> torch.Tensor:
    """Drop the largest `gamma` fraction, then the smallest, keeping `density` (model breadcrumbs)."""
    if density >= 1:
        return tensor
    n = tensor.numel()
    keep = int(density * n)
    drop_top = int(gamma * n)
    drop_top = min(drop_top, n - keep)  # the outlier cut shrinks when the density needs it
    masked = torch.where(bottom_excluded_mask(tensor.abs(), keep, drop_top, rule=rule).reshape(tensor.shape), tensor, 0)
    return rescale_l1(tensor, masked) if rescale else masked


def bernoulli(tensor: torch.Tensor, density: float, *, generator: torch.Generator | None,
              rescale: bool = True) -> torch.Tensor:
    """Keep each entry with probability `density` (DARE's drop), optionally matching the L1 norm.

    Drawn in the tensor's dtype on accelerators and for bfloat16 (float32 for other CPU dtypes, where
    torch has no half-precision bernoulli), one draw per entry from `generator`."""
    if density >= 1:
        return tensor
    work = tensor.dtype if (tensor.device.type != "cpu" or tensor.dtype == torch.bfloat16) else torch.float32
    mask = torch.bernoulli(torch.full_like(tensor, density, dtype=work), generator=generator)
    values = tensor.to(work)
    masked = values * mask
    return (rescale_l1(values, masked) if rescale else masked).to(tensor.dtype)
