"""Fixtures for the probe tests: tiny factory models with synthetic fine-tunes (fast, no training) and the
small zoo's trained families (seed 0, warmed once per session by the root conftest's `small_zoo`)."""

from __future__ import annotations

import pathlib

import pytest
import torch

from tests.lock.conftest import build, synthetic_fine_tune


def save_state(family: str, state: dict, out: pathlib.Path) -> pathlib.Path:
    from guard.testing import factory

    model = build(family)
    model.load_state_dict(state)
    return factory.save_model(model, out)


@pytest.fixture(scope="session")
def llama_set(tmp_path_factory):
    """A tiny llama base, three synthetic fine-tunes (peers) and a candidate fine-tune, saved."""
    root = tmp_path_factory.mktemp("probe-llama")
    base = build("llama").state_dict()
    out = {"base": save_state("llama", base, root / "base")}
    for i in range(4):
        out[f"ft{i}"] = save_state("llama", synthetic_fine_tune(base, scale=0.05, seed=10 + i), root / f"ft{i}")
    return out


@pytest.fixture(scope="session")
def lm_zoo(small_zoo):
    """The small LM family (seed 0) and its attacks."""
    from attacks.backdoor.lm import build_amplified_expert, build_badnets_expert
    from attacks.safety import build_harmful_copy
    from guard.testing.zoo.lm import build_family

    family = build_family("small", seed=0)
    badnets = build_badnets_expert(family, task="sort")
    return {"family": family, "badnets": badnets,
            "amplified": build_amplified_expert(family, backdoored=badnets, task="sort"),
            "harmful": build_harmful_copy(family)}


@pytest.fixture(scope="session")
def lm_calibration(lm_zoo, tmp_path_factory) -> pathlib.Path:
    """16 unlabeled `sort` prompts of the family's calibration split as a safetensors file."""
    from safetensors.torch import save_file

    from guard.testing.zoo.lm.vocab import PAD_ID, encode

    prompts = [encode(p) for p in lm_zoo["family"].calibration("sort")[:16]]
    width = max(map(len, prompts))
    path = tmp_path_factory.mktemp("probe-calib") / "sort.safetensors"
    save_file({"input_ids": torch.tensor([p + [PAD_ID] * (width - len(p)) for p in prompts]),
               "attention_mask": torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])}, path)
    return path


def lm_peers(family, task: str) -> list[pathlib.Path]:
    return [p for t, p in family.experts.items() if t != task]
