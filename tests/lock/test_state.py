"""Function preservation and round trips of the in-memory transform, for every layout."""

import dataclasses

import pytest
import torch

from guard.errors import InputError
from guard.lock import layouts
from guard.lock.plan import plan_lock
from guard.lock.state import protect_state
from tests.lock.conftest import LOCK_FAMILIES, build, model_output, not_restored, relative_error, reloaded


@pytest.mark.parametrize("family", LOCK_FAMILIES)
def test_protect_preserves_function_and_unlock_restores(family, run_key):
    from guard.testing import factory

    model = build(family)
    inputs = factory.sample_inputs(model, seq=16)
    ref = model_output(model, inputs)
    state = model.state_dict()
    locked = protect_state(state, config=model.config, key=run_key, residual="none")

    changed = [k for k in state if not torch.equal(state[k], locked[k])]
    # Without the residual transform (tests/lock/test_residual.py) only attention projections and MLP
    # projections change; embeddings, norms and heads are untouched.
    plan = plan_lock(state.keys(), model.config, mlp=True)
    assert set(changed) == set(plan.block_of()) | set(plan.mlp.block_of())
    # Every MLP tensor is a pure reordering of its hidden units: same multiset of values.
    for name in plan.mlp.block_of():
        assert torch.equal(locked[name].flatten().sort().values, state[name].flatten().sort().values), name
    # Every attention weight moved far from the original: the merge-breaking property.
    for name in changed:
        if state[name].ndim == 2:
            assert (locked[name] - state[name]).norm() / state[name].norm() > 0.2, name

    assert relative_error(model_output(reloaded(model, locked), inputs), ref) <= 1e-4

    restored = protect_state(locked, config=model.config, key=run_key, inverse=True, residual="none")
    assert not_restored(restored, state) == []


def test_minilm_real_weights(minilm_dir, run_key):
    import transformers

    model = transformers.BertModel.from_pretrained(minilm_dir).eval()
    ids = torch.randint(1000, 20000, (2, 24), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ref = model_output(model, inputs)
    # BertModel's output is its residual stream, so protect leaves the stream alone here (test_residual.py
    # covers MiniLM's weights under a task head, and that the residual output is the stream permuted).
    locked = protect_state(model.state_dict(), config=model.config, key=run_key, residual="none")
    assert relative_error(model_output(reloaded(model, locked), inputs), ref) <= 1e-4
    permuted = protect_state(model.state_dict(), config=model.config, key=run_key, residual="permutation")
    from guard.lock.plan import plan_lock
    from guard.lock.residual import derive_residual

    plan = plan_lock(model.state_dict().keys(), model.config, residual="permutation").residual
    stream = derive_residual(run_key, dim=plan.dim, form=plan.form, layer_norm=True)
    got = model_output(reloaded(model, permuted), inputs)
    assert relative_error(got, stream.apply(ref, -1)) <= 1e-4  # the same stream, in the secret basis


@pytest.mark.parametrize("family", ["llama", "phi3", "gpt2", "vit", "t5"])
def test_mlp_permutation_alone_is_exact_and_keyed(family, run_key, other_run_key):
    """Hidden-unit permutation without the attention transforms: bit-exact function (up to float
    summation order), the identity never drawn, different for another key, inverted exactly."""
    from guard.testing import factory

    model = build(family)
    inputs = factory.sample_inputs(model, seq=16)
    ref = model_output(model, inputs)
    state = model.state_dict()
    plan = plan_lock(state.keys(), model.config, mlp=True)
    names = set(plan.mlp.block_of())
    permuted = protect_state(state, config=model.config, key=run_key, mlp_permute=True, residual="none")
    assert all(not torch.equal(permuted[n], state[n]) for n in names)
    only_mlp = {k: (permuted[k] if k in names else v) for k, v in state.items()}
    assert relative_error(model_output(reloaded(model, only_mlp), inputs), ref) <= 1e-5
    other = protect_state(state, config=model.config, key=other_run_key, mlp_permute=True, residual="none")
    assert any(not torch.equal(other[n], permuted[n]) for n in names)
    back = protect_state(only_mlp, config=model.config, key=run_key, inverse=True, mlp_permute=True,
                         residual="none")
    assert all(torch.equal(back[n], state[n]) for n in names)  # an index copy: exact


def test_attention_only_leaves_mlps_untouched(run_key):
    model = build("llama")
    state = model.state_dict()
    locked = protect_state(state, config=model.config, key=run_key, mlp_permute=False, residual="none")
    assert all(torch.equal(locked[k], v) for k, v in state.items() if ".mlp." in k)


def test_wrong_key_does_not_restore(run_key, other_run_key):
    model = build("llama")
    state = model.state_dict()
    locked = protect_state(state, config=model.config, key=run_key)
    wrong = protect_state(locked, config=model.config, key=other_run_key, inverse=True)
    for name in ("model.layers.0.self_attn.v_proj.weight", "model.layers.0.mlp.down_proj.weight"):
        assert (wrong[name] - state[name]).norm() / state[name].norm() > 0.2, name


def test_wrong_rope_layout_breaks_function(run_key, monkeypatch):
    """Negative control: the commuting form matters. Declaring Llama's RoPE interleaved changes the output."""
    from guard.testing import factory

    model = build("llama")
    inputs = factory.sample_inputs(model, seq=16)
    ref = model_output(model, inputs)
    llama = layouts.LAYOUTS["llama"]
    wrong_geometry = lambda config: dataclasses.replace(llama.geometry(config), rotary_style="interleaved")  # noqa: E731
    monkeypatch.setitem(layouts.LAYOUTS, "llama", dataclasses.replace(llama, geometry=wrong_geometry))
    locked = protect_state(model.state_dict(), config=model.config, key=run_key)
    assert relative_error(model_output(reloaded(model, locked), inputs), ref) > 1e-2


def test_gqa_shares_one_transform_per_group(run_key):
    """Two query heads of one kv group get the same A: their (q-row) Gram ratios match."""
    model = build("llama")
    state = model.state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    locked = protect_state(state, config=model.config, key=run_key, residual="none")
    q, q2 = state[name].double().reshape(4, 16, 64), locked[name].double().reshape(4, 16, 64)
    maps = [torch.linalg.lstsq(q[h].T, q2[h].T).solution.T for h in range(4)]  # q2_h = A_h q_h
    assert torch.allclose(maps[0], maps[1], atol=1e-4) and torch.allclose(maps[2], maps[3], atol=1e-4)
    assert not torch.allclose(maps[0], maps[2], atol=1e-2)


def test_unsupported_architecture_is_refused(run_key):
    from guard.testing import factory

    config = factory.build_config("llama")
    config.model_type = "mamba"
    with pytest.raises(InputError, match="not supported by MergeLock"):
        protect_state({}, config=config, key=run_key)


def test_missing_tensor_is_refused(run_key):
    model = build("llama")
    state = dict(model.state_dict())
    del state["model.layers.1.self_attn.k_proj.weight"]
    with pytest.raises(InputError, match="lacks k.weight"):
        protect_state(state, config=model.config, key=run_key)


def test_shape_mismatch_is_refused(run_key):
    model = build("llama")
    state = dict(model.state_dict())
    state["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(48, 64)
    with pytest.raises(InputError, match="does not match"):
        protect_state(state, config=model.config, key=run_key)
