import pytest

from guard.errors import InputError
from guard.merge.config import FilterValue, load_merge_config, parse_merge_config, resolve

GOOD = {"merge_method": "ties", "base_model": "b", "models": [{"model": "a", "parameters": {"weight": 1, "density": 0.5}}]}


def test_a_mergekit_config_parses_and_the_base_in_models_is_the_base(tmp_path):
    path = tmp_path / "m.yml"
    path.write_text("merge_method: ties\nbase_model: b\nmodels:\n  - model: b\n  - model: a\n"
                    "    parameters: {weight: 0.5, density: 0.5}\nparameters: {normalize: true, lambda: 1.5}\n"
                    "dtype: bf16\nguard: {device: auto, seed: 3}\n")
    config = load_merge_config(path)
    assert [m.model for m in config.experts()] == ["a"] and config.input_refs() == ["b", "a"]
    assert config.dtype == "bfloat16" and config.guard.device == "auto" and config.guard.seed == 3


@pytest.mark.parametrize("change, field", [
    ({"merge_method": "frankenmerge"}, "merge_method"),
    ({"parameters": {"bogus": 1}}, "parameters.bogus"),
    ({"models": [{"model": "a", "parameters": {"weight": 1, "density": 2}}]}, "models.0.parameters.density"),
    ({"models": [{"model": "a", "parameters": {"density": 0.5}}]}, "weight"),
    ({"models": [{"model": "a", "parameters": {"weight": [0.1, 0.5]}}]}, "models.0.parameters.weight"),
    ({"models": []}, "models"),
    ({"dtype": "int8"}, "dtype"),
    ({"base_model": None}, "base_model"),
    ({"slices": []}, "slices"),
    ({"guard": {"device": "tpu"}}, "guard.device"),
    ({"guard": {"signatures": {"zzz": "s.sig"}}}, "guard.signatures"),
    ({"tokenizer_source": "union"}, "tokenizer_source"),
])
def test_every_error_names_the_file_and_the_field(change, field):
    with pytest.raises(InputError) as info:
        parse_merge_config({**GOOD, **change}, where="/cfg/merge.yml")
    assert info.value.path == "/cfg/merge.yml" and field in info.value.message, info.value.message


def test_unreadable_configs(tmp_path):
    with pytest.raises(InputError) as info:
        load_merge_config(tmp_path / "missing.yml")
    assert info.value.rule == "path-not-found"
    (tmp_path / "bad.yml").write_text("merge_method: [unclosed\n")
    with pytest.raises(InputError) as info:
        load_merge_config(tmp_path / "bad.yml")
    assert info.value.rule == "merge-config"


def test_filters_first_match_wins_and_no_match_is_none():
    setting = [FilterValue(filter="mlp", value=0.1), FilterValue(filter="attn", value=0.2)]
    assert resolve(setting, "layers.0.mlp.up") == 0.1 and resolve(setting, "self_attn.q") == 0.2
    assert resolve(setting, "norm") is None
    assert resolve(setting + [FilterValue(value=0.9)], "norm") == 0.9 and resolve(0.3, "x") == 0.3
