import pytest

from guard.artifacts.config import parse_config
from guard.errors import InputError


def test_architecture_prefers_architectures_then_model_type():
    assert parse_config({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, where="c").architecture == "LlamaForCausalLM"
    assert parse_config({"model_type": "bert"}, where="c").architecture == "bert"
    assert parse_config({}, where="c").architecture is None


@pytest.mark.parametrize("value,rule", [
    ([1], "config-not-object"),
    ({"model_type": 3}, "config-model-type"),
    ({"architectures": "LlamaForCausalLM"}, "config-architectures"),
    ({"architectures": [1]}, "config-architectures"),
])
def test_bad_configs(value, rule):
    with pytest.raises(InputError) as exc:
        parse_config(value, where="config.json")
    assert exc.value.rule == rule and exc.value.path == "config.json"
