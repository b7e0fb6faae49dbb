import json

import pytest
import torch

from guard.testing import factory


@pytest.mark.parametrize("family", factory.ALL_FAMILIES)
def test_saved_model_reloads_with_transformers_and_same_logits(family, tiny_model_dir):
    model_dir = tiny_model_dir(family)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == family
    original = factory.build_model(family)
    reloaded = factory.load_model(model_dir)
    inputs = factory.sample_inputs(original)
    with torch.no_grad():
        assert torch.equal(original(**inputs).logits, reloaded(**inputs).logits)


def test_same_seed_same_weights_other_seed_differs():
    a, b, c = (factory.build_model("llama", seed=s) for s in (0, 0, 1))
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_sharded_directory_has_index_listing_every_shard(tiny_model_dir):
    model_dir = tiny_model_dir("llama", shards=3)
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) >= 3
    assert shards == {p.name for p in model_dir.glob("model-*.safetensors")}


def test_layout_features_are_present():
    # The families exist to exercise these layouts; make sure the configs really have them.
    assert factory.build_config("llama").num_key_value_heads < factory.build_config("llama").num_attention_heads
    gemma = factory.build_config("gemma")
    assert gemma.head_dim != gemma.hidden_size // gemma.num_attention_heads
    assert factory.build_config("gpt_neox").rope_parameters["partial_rotary_factor"] < 1
    assert hasattr(factory.build_model("qwen3").model.layers[0].self_attn, "q_norm")
    assert factory.build_model("qwen2").model.layers[0].self_attn.q_proj.bias is not None


def test_minilm_is_the_real_pretrained_bert(minilm_dir):
    config = json.loads((minilm_dir / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert (minilm_dir / "model.safetensors").stat().st_size > 80_000_000


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family"):
        factory.build_config("mamba")
