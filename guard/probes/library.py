"""Every built-in probe, imported once so that each registers itself. Registry order is run order:
weight-only probes first (one shared streaming pass, cheap), then the data-driven ones."""

from guard.probes import reparam, geometry, embedding, alignment  # noqa: F401  (weight-only)
from guard.probes import insertion, target_inversion  # noqa: F401  (causal LMs, data-driven)
from guard.probes import max_margin, patch_inversion  # noqa: F401  (image classifiers, data-driven)
