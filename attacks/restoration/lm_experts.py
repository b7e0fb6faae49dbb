"""The model zoo's LM family (guard.testing.zoo.lm: Llama-style, RoPE, GQA) as a MergeLock figure setup.

Unlike the ViT setups there is no per-task head: every tensor, embeddings and LM head included, is
merged, and the merged model is scored by exact match of its greedy completions on held-out prompts
of the protected task. Exact match of a 4-5 digit answer has essentially no chance level, so the floor
of "retained" is 0; the base's own accuracy (1-9% on the small profile) is shown next to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from attacks.restoration.experts import MergeSetup


def lm_merge_methods(profile) -> dict[str, dict]:
    """The profile's own clean-merge settings (docs/zoo-lm.md); DARE drops 90% and rescales, then adds
    at the profile's task arithmetic scale (the zoo defines no DARE setting of its own)."""
    params = profile.merge_params()
    return {"task_arithmetic": params["task_arithmetic"], "ties": params["ties"],
            "dare_linear": {"density": 0.1, "scale": params["task_arithmetic"]["scale"]}}


def load_lm_zoo_setup(profile: str = "small", *, seed: int = 0, root=None) -> MergeSetup:
    """Build (once, cached in $GUARD_ZOO_CACHE) and load the LM family in the MergeSetup shape."""
    from guard.testing.zoo.lm import build_family
    from guard.testing.zoo.lm import model as lm_model

    family = build_family(profile, seed=seed, root=root)
    base = lm_model.state_dict(family.base)
    experts = {task: lm_model.state_dict(path) for task, path in family.experts.items()}
    config = lm_model.load(family.base).config

    def evaluate(state: Mapping[str, torch.Tensor], task: str, head_source=None) -> float:  # no per-task heads
        return family.evaluate(lm_model.from_state_dict(family.base, dict(state)), task)

    def token_accuracy(state: Mapping[str, torch.Tensor], task: str) -> float:
        from guard.testing.zoo.lm import metrics

        return metrics.token_accuracy(lm_model.from_state_dict(family.base, dict(state)), family.held_out(task))

    prof = family.profile
    return MergeSetup(
        family.root, base, experts, config, evaluate, labels_fn=None,
        name=(f"zoo LM family, profile {profile}, seed {seed} (Llama-style: RoPE, GQA {config.num_attention_heads} "
              f"query / {config.num_key_value_heads} KV heads, {prof.layers} layers, hidden {prof.hidden}; exact match)"),
        methods=lm_merge_methods(prof), exclude=None, chance_fn=lambda task: 0.0, metric="exact match",
        secondary=("token accuracy", token_accuracy), test_size_fn=lambda task: len(family.held_out(task)),
        seed=seed)
