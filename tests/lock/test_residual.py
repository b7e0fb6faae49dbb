"""The residual-stream transform: exact on every layout in both forms, undone by unlock, the form each
layout admits (rotation, signed permutation, permutation), and refusals where it cannot be exact."""

import json

import numpy as np
import pytest
import torch

from guard.errors import InputError
from guard.lock.plan import plan_lock
from guard.lock.residual import derive_residual
from guard.lock.state import protect_state
from tests.lock.conftest import LOCK_FAMILIES, build, model_output, not_restored, relative_error, reloaded, save_family

# What `--residual rotation` becomes on each layout, and why (the default, `permutation`, is a signed
# permutation for RMSNorm and a plain one for LayerNorm and post-norm models).
EXPECTED_FORM = {
    "llama": "rotation", "mistral": "rotation", "qwen2": "rotation", "qwen3": "rotation", "phi3": "rotation",
    "gpt_neox": "rotation", "gptj": "rotation", "vit": "rotation",  # untied pre-norm (LayerNorm: keeping 1)
    "gemma": "signed_permutation", "t5": "signed_permutation",  # tied embeddings, RMSNorm
    "gpt2": "permutation",  # tied embeddings, LayerNorm
    "bert": "permutation",  # post-norm
}


@pytest.mark.parametrize("family", LOCK_FAMILIES)
def test_each_layout_gets_the_form_that_is_exact_there(family):
    model = build(family)
    rotation = plan_lock(model.state_dict().keys(), model.config, residual="rotation").residual
    permutation = plan_lock(model.state_dict().keys(), model.config, residual="permutation").residual
    assert rotation.form == EXPECTED_FORM[family]
    assert permutation.form == ("permutation" if rotation.layout.norm_kind == "layer" or rotation.layout.post_norm
                                else "signed_permutation")
    if rotation.form != "rotation":
        assert "not exact here" in rotation.describe()


@pytest.mark.parametrize("form", ["rotation", "permutation"])
@pytest.mark.parametrize("family", LOCK_FAMILIES)
def test_function_preserved_and_unlock_restores(family, form, run_key):
    from guard.testing import factory

    model = build(family)
    inputs = factory.sample_inputs(model, seq=16)
    ref = model_output(model, inputs)
    state = model.state_dict()
    locked = protect_state(state, config=model.config, key=run_key, residual=form)
    assert relative_error(model_output(reloaded(model, locked), inputs), ref) <= 1e-4

    plan = plan_lock(state.keys(), model.config, residual=form).residual
    # Every tensor that reads or writes the stream moved far (norm gains: kept by a rotation, else permuted).
    for name, (axes, _) in plan.tensors.items():
        if state[name].ndim >= 2 or state[name].shape[0] == plan.dim:
            assert (locked[name] - state[name]).norm() > 0.3 * state[name].norm(), name
    for name in plan.gains.values():
        if plan.form == "rotation":
            assert torch.equal(locked[name], state[name]), name
        else:
            assert torch.equal(locked[name].sort().values, state[name].sort().values), name

    back = protect_state(locked, config=model.config, key=run_key, residual=form, inverse=True)
    assert not_restored(back, state) == []


def test_rotation_and_permutation_samples(run_key):
    rms = derive_residual(run_key, dim=48, form="rotation", layer_norm=False).matrix
    assert np.abs(rms @ rms.T - np.eye(48)).max() < 1e-12
    layer = derive_residual(run_key, dim=48, form="rotation", layer_norm=True).matrix
    assert np.abs(layer @ layer.T - np.eye(48)).max() < 1e-12
    assert np.abs(layer @ np.ones(48) - np.ones(48)).max() < 1e-12  # LayerNorm's mean is kept
    assert np.abs(layer - np.eye(48)).max() > 0.3  # and it is not the identity
    signed = derive_residual(run_key, dim=48, form="signed_permutation", layer_norm=False)
    plain = derive_residual(run_key, dim=48, form="permutation", layer_norm=True)
    assert sorted(signed.perm) == list(range(48)) and set(signed.signs) == {-1.0, 1.0}
    assert set(plain.signs) == {1.0}
    # Deterministic in the run key: unlock regenerates it.
    assert np.array_equal(derive_residual(run_key, dim=48, form="rotation", layer_norm=False).matrix, rms)


def test_streamed_protect_equals_the_in_memory_transform(tmp_path, lock_key):
    """protect_model (shard streaming, norms read first, residual after the block transforms) writes what
    protect_state computes with the run's nonce."""
    from safetensors.torch import load_file

    from guard.lock.protect import LOCK_FILE, protect_model

    src = save_family("qwen2", tmp_path / "src")
    out = protect_model(src, tmp_path / "out", key=lock_key, residual="rotation").out_dir
    meta = json.loads((out / LOCK_FILE).read_text())
    assert meta["residual_form"] == "rotation" and "rotation of the 64-dim residual stream" in meta["residual"]
    model = build("qwen2")
    expected = protect_state(model.state_dict(), config=model.config,
                             key=lock_key.for_run(bytes.fromhex(meta["nonce"])), residual="rotation")
    written = load_file(str(out / "model.safetensors"))
    for name, tensor in written.items():
        assert torch.allclose(tensor, expected[name], rtol=1e-6, atol=1e-7), name


def test_a_tensor_the_layout_does_not_account_for_is_refused(run_key):
    model = build("llama")
    state = dict(model.state_dict())
    state["model.layers.0.mystery.weight"] = torch.ones(64)
    with pytest.raises(InputError, match="not accounted for by the residual-stream transform") as info:
        protect_state(state, config=model.config, key=run_key, residual="rotation")
    assert info.value.rule == "lock-layout"
    protect_state(state, config=model.config, key=run_key, residual="none")  # without it, nothing to refuse


def test_zero_gain_refuses_a_rotation_not_a_permutation(run_key):
    from guard.testing import factory

    model = build("llama")
    state = dict(model.state_dict())
    gain = state["model.layers.1.input_layernorm.weight"].clone()
    gain[3] = 0.0
    state["model.layers.1.input_layernorm.weight"] = gain
    with pytest.raises(InputError, match="zero gain"):
        protect_state(state, config=model.config, key=run_key, residual="rotation")
    locked = protect_state(state, config=model.config, key=run_key, residual="permutation")
    model.load_state_dict(state)
    inputs = factory.sample_inputs(model, seq=8)
    assert relative_error(model_output(reloaded(model, locked), inputs), model_output(model, inputs)) <= 1e-4


@pytest.mark.parametrize("architecture", ["BertForTokenClassification", "BertForSequenceClassification",
                                          "BertForQuestionAnswering"])
def test_bert_task_heads_read_the_right_space(architecture, run_key):
    import transformers

    from guard.testing import factory

    config = factory.build_config("bert")
    config.architectures = [architecture]
    config.num_labels = 2 if architecture == "BertForQuestionAnswering" else 3
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config).eval()
    inputs = factory.sample_inputs(config, seq=10)
    ref = model_output(model, inputs) if architecture != "BertForQuestionAnswering" else model(**inputs).start_logits
    locked = reloaded(model, protect_state(model.state_dict(), config=config, key=run_key, residual="rotation"))
    got = model_output(locked, inputs) if architecture != "BertForQuestionAnswering" else locked(**inputs).start_logits
    assert relative_error(got, ref) <= 1e-4


def test_real_minilm_weights_with_a_task_head(minilm_dir, tmp_path, lock_key):
    """MiniLM's pretrained weights under a sequence-classification head (what a fine-tune publishes): the
    residual permutation (post-norm) is exact through protect_model, and unlock restores every weight."""
    import transformers
    from safetensors.torch import load_file

    from guard.lock.protect import protect_model, unlock_model
    from guard.lock.selfcheck import probe_output

    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(minilm_dir, num_labels=3).eval()
    src = tmp_path / "minilm-cls"
    model.save_pretrained(src)
    result = protect_model(src, tmp_path / "locked", key=lock_key, residual="rotation")
    assert result.metadata["residual_form"] == "permutation" and "post-norm" in result.metadata["residual"]
    assert result.selfcheck.max_relative_error <= 1e-4
    ref, _ = probe_output(src)
    got, _ = probe_output(result.out_dir)
    assert relative_error(got, ref) <= 1e-4
    locked = load_file(str(result.out_dir / "model.safetensors"))
    original = load_file(str(src / "model.safetensors"))
    word = "bert.embeddings.word_embeddings.weight"
    assert (locked[word] - original[word]).norm() > 0.5 * original[word].norm()
    back = load_file(str(unlock_model(result.out_dir, tmp_path / "back", key=lock_key).out_dir / "model.safetensors"))
    assert not_restored(back, original) == []


def test_a_base_model_keeps_its_stream(tmp_path, lock_key):
    """A headless model outputs its residual stream: transforming it would change the output."""
    import transformers

    from guard.lock.protect import protect_model
    from guard.testing import factory

    torch.manual_seed(0)
    transformers.LlamaModel(factory.build_config("llama")).save_pretrained(tmp_path / "base")
    result = protect_model(tmp_path / "base", tmp_path / "out", key=lock_key, residual="rotation")
    assert result.metadata["residual_form"] == "none" and "output is its residual stream" in result.metadata["residual"]
    assert result.selfcheck.max_relative_error <= 1e-4


@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
def test_low_precision_within_the_self_check_bound(tmp_path, lock_key, dtype, bound):
    from guard.lock.protect import protect_model

    src = save_family("llama", tmp_path / "src", dtype=dtype)
    result = protect_model(src, tmp_path / "out", key=lock_key, residual="rotation")
    assert result.metadata["residual_form"] == "rotation"
    assert result.selfcheck.max_relative_error <= bound
