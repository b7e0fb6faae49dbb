"""Trained tiny model families with attacked variants and metrics (see docs/zoo.md).

- `guard.testing.zoo.lm`: decoder LM family (Llama-style, RoPE, GQA) and its safety pair.
- `guard.testing.zoo.vision`: ViT classifier family on scikit-learn's digits.
Builds are cached by content hash (`cache.cached_build`).
"""
