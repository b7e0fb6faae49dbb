"""The streaming driver on saved model directories: function preservation through transformers'
own loader, greedy generation, unlock round trip, metadata, refusals, atomicity."""

import json
import shutil

import pytest
import torch

from guard.errors import InputError, PolicyRefusal, VerificationError
from guard.lock.protect import LOCK_FILE, protect_model, unlock_model
from tests.lock.conftest import LOCK_FAMILIES, model_output, not_restored, save_family

DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi3", "gemma", "gptj")


def _load(path):
    from guard.testing import factory

    return factory.load_model(path)


def _tensors(path):
    from safetensors.torch import load_file

    out = {}
    for shard in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(shard)))
    return out


@pytest.mark.parametrize("family", LOCK_FAMILIES)
def test_protected_dir_loads_and_computes_the_same(family, protected_family):
    from guard.testing import factory

    src, locked, result = protected_family(family)
    original, protected = _load(src), _load(locked)
    inputs = factory.sample_inputs(original, seq=12, seed=3)
    ref, got = model_output(original, inputs), model_output(protected, inputs)
    error = ((got - ref).abs().max() / ref.abs().max()).item()
    assert error <= 1e-4
    assert result.selfcheck.passed and result.selfcheck.max_relative_error <= 1e-4
    if family in DECODERS:
        prompt = inputs["input_ids"][:, :6]
        kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
        assert torch.equal(original.generate(prompt, **kwargs), protected.generate(prompt, **kwargs))
    # The weights really changed.
    locked_tensors = _tensors(locked)
    changed = [k for k, v in _tensors(src).items() if not torch.equal(v, locked_tensors[k])]
    assert len(changed) >= 4


def test_metadata_records_the_check_and_no_secret(protected_family, lock_key):
    _, locked, result = protected_family("qwen3")
    meta = json.loads((locked / LOCK_FILE).read_text())
    run = lock_key.for_run(bytes.fromhex(meta["nonce"]))
    assert meta["key_id"] == run.key_id != lock_key.fingerprint and meta["format"] == "guard-mergelock"
    assert meta["selfcheck"]["max_relative_logit_error"] == result.selfcheck.max_relative_error <= 1e-4
    assert meta["bound"] == 8.0 and meta["residual_form"] == "signed_permutation"  # the float32 defaults
    assert "sign flips" in meta["qk"] and "qk-norm" in meta["qk"]  # qk-norm model: stated in the output
    assert meta["mlp_permute"] is True and "permutation of the 128 hidden units of each of the 2 MLP" in meta["mlp"]
    from safetensors import safe_open

    with safe_open(str(locked / "model.safetensors"), "pt") as f:
        assert f.metadata()["guard.lock_key_id"] == run.key_id
    secret = lock_key.secret.hex()
    for path in locked.rglob("*"):
        assert secret.encode() not in path.read_bytes() and lock_key.secret not in path.read_bytes()


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5", "phi3"])
def test_unlock_restores_original_weights(family, protected_family, lock_key, tmp_path):
    src, locked, _ = protected_family(family)
    result = unlock_model(locked, tmp_path / "restored", key=lock_key)
    original, restored = _tensors(src), _tensors(result.out_dir)
    assert original.keys() == restored.keys()
    assert not_restored(restored, original) == []
    assert not (result.out_dir / LOCK_FILE).exists()


def test_attention_only_round_trip(tmp_path, lock_key):
    src = save_family("gpt_neox", tmp_path / "src")
    result = protect_model(src, tmp_path / "locked", key=lock_key, mlp_permute=False, residual="none")
    meta = json.loads((result.out_dir / LOCK_FILE).read_text())
    assert meta["mlp_permute"] is False and meta["mlp"].startswith("unchanged")
    assert meta["residual_form"] == "none" and meta["residual"].startswith("unchanged")
    original, locked = _tensors(src), _tensors(result.out_dir)
    assert all(torch.equal(locked[k], v) for k, v in original.items() if ".mlp." in k)
    restored = _tensors(unlock_model(result.out_dir, tmp_path / "back", key=lock_key).out_dir)
    assert not_restored(restored, original) == []


def test_self_check_catches_a_broken_mlp_permutation(tmp_path, lock_key, monkeypatch):
    """Negative control: permuting up/down but not gate changes the function; the self-check refuses."""
    import dataclasses

    from guard.lock import layouts

    src = save_family("llama", tmp_path / "src")
    llama = layouts.LAYOUTS["llama"]
    roles = {"up_proj": "in", "down_proj": "out"}
    mlp = dataclasses.replace(llama.mlp, roles=roles, pattern=layouts.base.block_regex(r"layers\.\d+\.mlp", roles))
    monkeypatch.setitem(layouts.LAYOUTS, "llama", dataclasses.replace(llama, mlp=mlp))
    with pytest.raises(PolicyRefusal, match="self-check failed"):
        protect_model(src, tmp_path / "out", key=lock_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_wrong_key_is_refused_before_writing(protected_family, other_key, tmp_path):
    _, locked, _ = protected_family("llama")
    with pytest.raises(VerificationError, match="wrong lock key"):
        unlock_model(locked, tmp_path / "out", key=other_key)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_sharded_input_streams_and_keeps_sharding(tmp_path, lock_key):
    src = save_family("llama", tmp_path / "src", shards=3)
    result = protect_model(src, tmp_path / "out", key=lock_key)
    assert len(list(result.out_dir.glob("*.safetensors"))) == len(list(src.glob("*.safetensors"))) >= 3
    assert (result.out_dir / "model.safetensors.index.json").is_file()
    assert _tensors(src).keys() == _tensors(result.out_dir).keys()
    assert result.selfcheck.max_relative_error <= 1e-4


def test_bf16_within_documented_bound(tmp_path, lock_key):
    src = save_family("llama", tmp_path / "src", dtype=torch.bfloat16)
    result = protect_model(src, tmp_path / "out", key=lock_key)
    assert result.selfcheck.dtype == "bfloat16" and result.selfcheck.max_relative_error <= 5e-2
    assert result.metadata["bound"] == 4.0  # the 16-bit default (float32: 8, test_metadata_records_...)
    assert all(t.dtype == torch.bfloat16 for t in _tensors(result.out_dir).values())
    back = _tensors(unlock_model(result.out_dir, tmp_path / "back", key=lock_key).out_dir)
    original = _tensors(src)
    worst = max(((back[k].float() - v.float()).norm() / v.float().norm()).item() for k, v in original.items())
    assert worst < 5e-2  # bf16 storage of A W rounds to 8 bits: the round trip is close, not exact


def test_minilm_real_model(minilm_dir, tmp_path, lock_key):
    result = protect_model(minilm_dir, tmp_path / "minilm", key=lock_key)
    assert result.selfcheck.max_relative_error <= 1e-4
    # A base model's output is its residual stream: the residual transform would change it, so it is skipped.
    assert result.metadata["residual_form"] == "none" and "output is its residual stream" in result.metadata["residual"]
    assert (result.out_dir / "1_Pooling" / "config.json").is_file() and (result.out_dir / "vocab.txt").is_file()
    assert result.metadata["blocks"] == 6 and result.metadata["layout"] == "bert"


def test_self_check_failure_writes_nothing(tmp_path, lock_key, monkeypatch):
    import dataclasses

    from guard.lock import layouts

    src = save_family("llama", tmp_path / "src")
    llama = layouts.LAYOUTS["llama"]
    broken = lambda config: dataclasses.replace(llama.geometry(config), rotary_style="interleaved")  # noqa: E731
    monkeypatch.setitem(layouts.LAYOUTS, "llama", dataclasses.replace(llama, geometry=broken))
    with pytest.raises(PolicyRefusal, match="self-check failed"):
        protect_model(src, tmp_path / "out", key=lock_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no staging left behind


def test_extra_weight_files_are_refused(tmp_path, lock_key):
    src = save_family("gpt2", tmp_path / "src")
    (src / "extra").mkdir()
    shutil.copy(src / "model.safetensors", src / "extra" / "backup.safetensors")
    with pytest.raises(PolicyRefusal, match="unprotected"):
        protect_model(src, tmp_path / "out", key=lock_key)
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_dir(tmp_path, lock_key):
    src = save_family("gpt2", tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "bloom"
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="'bloom' is not supported by MergeLock"):
        protect_model(src, tmp_path / "out", key=lock_key)


def test_refuses_existing_output_and_double_protection(protected_family, lock_key, tmp_path):
    src, locked, _ = protected_family("gpt2")
    with pytest.raises(InputError, match="already exists"):
        protect_model(src, locked, key=lock_key)
    with pytest.raises(InputError, match="already MergeLock-protected"):
        protect_model(locked, tmp_path / "twice", key=lock_key)
    with pytest.raises(InputError, match="not a MergeLock-protected model"):
        unlock_model(src, tmp_path / "x", key=lock_key)


def test_output_mirrors_input_layout_and_copies_untouched_bytes(tmp_path, lock_key):
    """Every output shard has the input shard's tensors at the same places; tensors the lock does not
    touch are byte-identical (copied file to file, never decoded)."""
    from guard.artifacts import open_model_dir

    src = save_family("llama", tmp_path / "src", shards=2)
    out = protect_model(src, tmp_path / "out", key=lock_key, residual="none").out_dir
    before, after = open_model_dir(src), open_model_dir(out)
    assert before.shards == after.shards and list(before.tensors) == list(after.tensors)
    untouched = 0
    for name, info in before.tensors.items():
        got = after.tensors[name]
        assert (got.shard, got.dtype, got.shape, got.nbytes) == (info.shard, info.dtype, info.shape, info.nbytes)
        raw_in = (src / info.shard).read_bytes()[info.begin:info.end]
        raw_out = (out / got.shard).read_bytes()[got.begin:got.end]
        if not any(part in name for part in ("self_attn", "mlp")):
            assert raw_in == raw_out, name
            untouched += 1
    assert untouched >= 3  # embeddings, norms, lm_head


def test_config_without_geometry_is_input_error(tmp_path, lock_key):
    src = save_family("llama", tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    config["num_attention_heads"] = 5  # 64 hidden does not split into 5 heads of the stored shapes
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError) as info:
        protect_model(src, tmp_path / "out", key=lock_key)
    assert info.value.rule in ("lock-config", "lock-geometry", "lock-layout")
