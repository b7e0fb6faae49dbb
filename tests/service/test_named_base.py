"""Which base model an upload names: the model card's base_model, else config.json's _name_or_path."""

import json

import pytest

from guard.service.sandbox import named_base


def _upload(tmp_path, *, card=None, config=None, raw_config=None):
    root = tmp_path / "upload"
    root.mkdir()
    if card is not None:
        (root / "README.md").write_text(card)
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))
    if raw_config is not None:
        (root / "config.json").write_text(raw_config)
    return root


def test_the_model_cards_base_model_comes_first(tmp_path):
    root = _upload(tmp_path, card="---\nbase_model: acme/base\n---\n", config={"_name_or_path": "other/model"})
    assert named_base(root, repo="up/model") == ("acme/base", "named by the model card's base_model")


def test_config_name_or_path_when_the_card_names_none(tmp_path):
    root = _upload(tmp_path, card="---\nlicense: mit\n---\n", config={"_name_or_path": "meta/llama-base"})
    base, why = named_base(root, repo="up/model")
    assert base == "meta/llama-base" and "config.json's _name_or_path" in why


@pytest.mark.parametrize(("config", "reason"), [
    ({"_name_or_path": "/home/me/checkpoints/run-3"}, "not a Hub model id"),
    ({"_name_or_path": ""}, "not a Hub model id"),
    ({"model_type": "llama"}, "not a Hub model id"),
    ({"_name_or_path": "up/model"}, "the upload's own repo"),
    ({"_name_or_path": "a/../b"}, "not a Hub model id"),
])
def test_config_names_that_are_not_used(tmp_path, config, reason):
    root = _upload(tmp_path, config=config)
    base, why = named_base(root, repo="up/model")
    assert base is None and reason in why and why.startswith("no model card (README.md)")


def test_an_ambiguous_or_broken_config_names_nothing(tmp_path):
    dup = _upload(tmp_path, raw_config='{"_name_or_path": "a/b", "_name_or_path": "c/d"}')
    assert named_base(dup, repo="up/model") == (
        None, "no model card (README.md), so no base_model named, and config.json is ambiguous "
              "(duplicate keys or not an object)")
    (dup / "config.json").write_text("{not json")
    base, why = named_base(dup, repo="up/model")
    assert base is None and why.endswith("config.json is not JSON")


def test_no_card_and_no_config(tmp_path):
    root = _upload(tmp_path)
    assert named_base(root, repo="up/model") == (
        None, "no model card (README.md), so no base_model named, and there is no config.json")
