import json
import shutil

import pytest

from guard.artifacts import open_model_dir
from guard.artifacts.index import parse_index
from guard.errors import InputError


@pytest.mark.parametrize("prefix", ["index-", "duplicate-across-shards"])
def test_index_corpus_cases_fail_with_their_rule(malformed_corpus, prefix):
    root, cases = malformed_corpus
    selected = [c for c in cases if c.name.startswith(prefix)]
    assert selected
    for case in selected:
        with pytest.raises(InputError) as exc:
            open_model_dir(root / case.name)
        assert (exc.value.rule, exc.value.path) == (case.rule, str(root / case.name / case.blamed)), case.name


def test_sharded_factory_model_passes_and_lists_every_shard(tiny_model_dir):
    d = tiny_model_dir("gpt_neox", shards=3)
    md = open_model_dir(d)
    weight_map = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    assert md.shards == sorted(set(weight_map.values()))
    assert {n: t.shard for n, t in md.tensors.items()} == weight_map


def test_pickle_named_like_a_shard_is_a_refusal_not_a_crash(tmp_path, tiny_model_dir):
    from attacks.corpus.pickle_payloads import direct_global

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir("llama", shards=2), d)
    shard = sorted(d.glob("model-*.safetensors"))[0]
    shard.write_bytes(direct_global(str(tmp_path / "never")))
    md = open_model_dir(d)
    assert [(f.rule, f.path) for f in md.refused()] == [("pickle-unsafe-global", shard.name)]
    assert shard.name not in md.shards


@pytest.mark.parametrize("value", [[], {"weight_map": {}}, {"weight_map": {"a": 3}}, {"weight_map": {"a": "x"}, "metadata": 1}])
def test_parse_index_schema(value):
    with pytest.raises(InputError) as exc:
        parse_index(value, where="idx")
    assert exc.value.rule == "index-schema"
