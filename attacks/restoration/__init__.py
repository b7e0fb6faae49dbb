"""Restoration attacks against MergeLock: least-squares realignment against the base (AGA, with
Hungarian head matching) and merging in the invariant circuit space."""
