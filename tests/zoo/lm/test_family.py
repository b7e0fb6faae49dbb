"""The small LM family: loadable by transformers, genuinely trained, mergeable, deterministic."""

import hashlib
import json

import pytest
import torch
import transformers

from guard.testing.zoo.lm import deterministic_build, expert_seed, model as lm_model, tasks, train_expert
from guard.testing.zoo.lm.vocab import TOKENS

# Cold, these tests build the small family (about 2 min on 2 busy cores); cached, seconds.
pytestmark = pytest.mark.slow


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_members_load_with_transformers_as_llama_with_rope_and_gqa(lm_family):
    for path in (lm_family.base, *lm_family.experts.values()):
        model = transformers.LlamaForCausalLM.from_pretrained(path)
        config = model.config
        assert config.num_key_value_heads < config.num_attention_heads  # GQA
        assert config.model_type == "llama" and config.vocab_size == len(TOKENS)
        assert json.loads((path / "vocab.json").read_text())["tokens"] == list(TOKENS)
    assert sum(p.numel() for p in model.parameters()) > 250_000


def test_experts_are_far_above_the_base_on_their_task(lm_family):
    base = lm_family.evaluate_all(lm_family.base)
    for task, path in lm_family.experts.items():
        expert = lm_family.evaluate(path, task)
        assert expert >= 0.85, (task, expert)
        assert expert - base[task] >= 0.5, (task, expert, base[task])  # measured: >= 61.0 points (seeds 0-2)


def test_clean_merges_keep_at_least_70_percent_of_expert_accuracy(lm_family):
    expert_mean = sum(lm_family.evaluate(p, t) for t, p in lm_family.experts.items()) / len(lm_family.tasks)
    for method in ("task_arithmetic", "ties"):
        accs = lm_family.evaluate_all(lm_family.merge(method))
        retention = sum(accs.values()) / len(accs) / expert_mean
        assert retention >= 0.7, (method, accs, retention)


def test_calibration_data_is_unlabeled_task_prompts(lm_family):
    for task in lm_family.tasks:
        prompts = lm_family.calibration(task)
        assert len(prompts) == lm_family.profile.calibration_per_task
        assert all(p[1] == tasks.MARKER[task] and p[-1] == ">" for p in prompts)
        inputs = lm_family.calibration_inputs(task)
        assert inputs["input_ids"].shape == inputs["attention_mask"].shape
        assert inputs["input_ids"].shape[0] == len(prompts)
        assert inputs["attention_mask"].sum().item() == sum(map(len, prompts))
        logits = lm_model.load(lm_family.base)(**inputs).logits
        assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()


def test_same_seed_rebuilds_identical_expert_bytes(lm_family, tmp_path):
    """Re-run one expert's fine-tune from the cached base and compare the saved file's hash."""
    task = "rotate"
    with deterministic_build():
        base = lm_model.load(lm_family.base)
        lm_model.save(train_expert(base, task, lm_family.profile, seed=expert_seed(lm_family.seed, task)), tmp_path / task)
    assert _sha(tmp_path / task / "model.safetensors") == _sha(lm_family.experts[task] / "model.safetensors")
