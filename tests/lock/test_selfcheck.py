"""The streamed self-check: the real transformers forward, module by module, with bounded memory, and
still a check that fails on a broken transform."""

import pytest
import torch

from guard.artifacts import open_model_dir
from guard.lock.selfcheck import probe_output, self_check, streamed_probe_output
from guard.lock.streamed import StreamedModel, TensorLoader
from tests.lock.conftest import LOCK_FAMILIES, save_family


def _largest(model_dir) -> int:
    return max(t.nbytes for t in open_model_dir(model_dir).tensors.values())


@pytest.mark.parametrize("family", LOCK_FAMILIES)
def test_protect_self_check_is_streamed_with_bounded_memory(family, protected_family):
    src, locked, result = protected_family(family)
    check = result.selfcheck
    assert check.mode == "streamed" and check.passed
    # Never more than two of the largest tensors alive at once (one module's parameters, nested modules).
    assert 0 < check.peak_tensor_bytes <= 2 * _largest(src)
    assert result.metadata["selfcheck"]["mode"] == "streamed"


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5", "vit", "qwen3"])
def test_streamed_forward_equals_from_pretrained(family, tmp_path):
    """Same class, config, dtype, weights: the streamed forward gives from_pretrained's logits."""
    src = save_family(family, tmp_path / family)
    full, full_dtype = probe_output(src)
    streamed, dtype, _ = streamed_probe_output(src)
    assert dtype == full_dtype and streamed.shape == full.shape
    assert torch.allclose(streamed, full, rtol=0, atol=1e-6 * full.abs().max().item())


def test_loader_holds_few_tensors_and_reads_every_one(tmp_path):
    src = save_family("llama", tmp_path / "src")
    model_dir = open_model_dir(src)
    loader = TensorLoader(model_dir)
    output, _, peak = streamed_probe_output(model_dir, loader)
    assert output.device.type == "cpu" and peak == loader.peak_bytes
    assert loader.reads >= len(model_dir.tensors)  # every tensor was used (the tied embedding twice)
    assert loader.peak_tensors <= 2 and loader.peak_bytes <= 2 * _largest(src)
    assert loader.live_tensors == 0  # everything read was dropped after its module ran


def test_parameters_are_dropped_after_each_module(tmp_path):
    src = save_family("gpt2", tmp_path / "src")
    model_dir = open_model_dir(src)
    loader = TensorLoader(model_dir)
    with StreamedModel(model_dir, loader) as model:
        assert all(p.device.type == "meta" for p in model.parameters())
        ids = torch.arange(8).reshape(1, 8) + 3
        with torch.no_grad():
            model(input_ids=ids)
        assert all(p.device.type == "meta" for p in model.parameters())
    assert loader.live_tensors == 0


def test_streamed_check_catches_a_corrupted_tensor(tmp_path, lock_key):
    """Negative control on the streamed path: one attention weight of the protected model off by 1%
    fails the float32 bound."""
    from safetensors.torch import load_file, save_file

    from guard.lock.protect import protect_model

    src = save_family("llama", tmp_path / "src")
    locked = protect_model(src, tmp_path / "locked", key=lock_key).out_dir
    tensors = load_file(str(locked / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("layers.0.self_attn.o_proj.weight"))
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, str(locked / "model.safetensors"), metadata={"format": "pt"})
    check = self_check(src, locked)
    assert check.mode == "streamed" and not check.passed and check.max_relative_error > 1e-3


def test_falls_back_to_a_full_load_when_not_streamable(tmp_path, monkeypatch):
    from guard.lock import streamed

    src = save_family("gpt2", tmp_path / "src")
    expected = self_check(src, src)

    def refuse(self):
        raise streamed.NotStreamable("test")

    monkeypatch.setattr(streamed.StreamedModel, "_build", refuse)
    check = self_check(src, src)
    assert check.mode == "full" and check.max_relative_error == expected.max_relative_error == 0.0


# ---- the model class and config come from the validated copy (issue 10, item 6) -----------------------

def _edit_config(model_dir, **changes) -> None:
    import json

    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("architecture", ["GPT2LMHeadModel", "pipeline", "AutoTokenizer", "LlamaForCausalLMx"])
def test_architecture_must_be_a_model_class_of_the_configs_type(tmp_path, lock_key, architecture):
    """`architectures` is untrusted text: it may only pick a class that transformers' auto-model
    mappings list for the config's model_type, never an arbitrary attribute of the transformers module."""
    from guard.errors import InputError
    from guard.lock.protect import protect_model

    src = save_family("llama", tmp_path / "src")
    _edit_config(src, architectures=[architecture])
    with pytest.raises(InputError) as info:
        protect_model(src, tmp_path / "out", key=lock_key)
    assert info.value.rule == "lock-architecture" and architecture in info.value.one_line()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_model_class_resolution_follows_the_auto_mappings():
    import transformers

    from guard.lock.modeling import model_class

    config = transformers.LlamaConfig(architectures=["LlamaForSequenceClassification"])
    assert model_class(config) is transformers.LlamaForSequenceClassification
    assert model_class(transformers.LlamaConfig(architectures=None)) is transformers.LlamaModel
    assert model_class(transformers.BertConfig(architectures=["BertForMaskedLM"])) is transformers.BertForMaskedLM


@pytest.mark.parametrize("streamed", [True, False])
def test_self_check_uses_the_validated_config_not_the_file_on_disk(tmp_path, streamed):
    """config.json rewritten after validation (one layer fewer, another epsilon) must not change what
    the self-check runs: it builds from the validated copy."""
    from guard.lock.selfcheck import self_check

    src = save_family("llama", tmp_path / "src")
    validated = open_model_dir(src)
    if streamed:
        before, _, _ = streamed_probe_output(validated)
    else:
        before, _ = probe_output(validated)
    _edit_config(src, num_hidden_layers=1, rms_norm_eps=0.5)
    if streamed:
        after, _, _ = streamed_probe_output(validated)
    else:
        after, _ = probe_output(validated)
    assert torch.equal(before, after)
    check = self_check(validated, validated, streamed=streamed)
    assert check.max_relative_error == 0.0


def test_protect_falls_back_when_a_model_cannot_stream(tmp_path, lock_key, monkeypatch):
    """protect builds the two models of its self-check side by side (probe_pair); one that cannot stream
    sends both to the full from_pretrained check instead of hanging the other."""
    from guard.lock import streamed
    from guard.lock.protect import protect_model

    calls = []
    real = streamed.StreamedModel._build

    def second_refuses(self):
        calls.append(1)
        if len(calls) == 2:
            raise streamed.NotStreamable("test")
        return real(self)

    monkeypatch.setattr(streamed.StreamedModel, "_build", second_refuses)
    result = protect_model(save_family("llama", tmp_path / "src"), tmp_path / "out", key=lock_key)
    assert result.selfcheck.mode == "full" and result.selfcheck.max_relative_error <= 1e-4
