import pytest
import torch

from guard.errors import InputError

from guard.lock.detect import detect_with_base, detect_without_base
from guard.lock.state import protect_state
from tests.lock.conftest import build, synthetic_fine_tune


def _fine_tune(state, scale=0.02, seed=1):
    return synthetic_fine_tune(state, scale=scale, seed=seed)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "bert", "t5", "vit"])
def test_with_base_flags_protected_not_fine_tuned(family, run_key):
    model = build(family)
    base = model.state_dict()
    tuned = _fine_tune(base)
    clean = detect_with_base(tuned, base, config=model.config)
    assert not clean.flagged, clean.message
    assert clean.measurements["attention_distance_median"] < 0.05 and clean.measurements["stream_distance"] < 0.05
    # The attention-only signature: attention far, MLP near.
    attention_only = protect_state(tuned, config=model.config, key=run_key, residual="none")
    locked = detect_with_base(attention_only, base, config=model.config)
    assert locked.flagged and "attention projections sit" in locked.message, locked.message
    assert locked.measurements["attention_distance_median"] > 1.0
    assert locked.measurements["mlp_distance_median"] < 0.05
    assert len(locked.measurements["per_layer"]) >= 2
    # With the residual transform (the default) every weight moves; the stream's Gram matrix does not.
    locked = detect_with_base(protect_state(tuned, config=model.config, key=run_key), base, config=model.config)
    assert locked.flagged and "Gram matrix" in locked.message, locked.message
    assert locked.measurements["stream_distance"] > 0.5 and locked.measurements["stream_gram_distance"] < 0.2


def test_unrelated_model_is_not_mergelock(run_key):
    """Far everywhere (a different model, not a lock): no MergeLock signature."""
    model = build("llama")
    other = build("llama", seed=5).state_dict()
    finding = detect_with_base(other, model.state_dict(), config=model.config)
    assert not finding.flagged and finding.measurements["mlp_distance_median"] > 0.5
    assert finding.measurements["stream_gram_distance"] > 0.5


@pytest.mark.parametrize("family", ["llama", "gpt2", "vit"])
def test_without_base_heuristic(family, run_key):
    model = build(family)
    state = model.state_dict()
    assert not detect_without_base(state, config=model.config).flagged
    assert detect_without_base(protect_state(state, config=model.config, key=run_key), config=model.config).flagged


def test_without_base_on_real_minilm(minilm_dir, run_key):
    import transformers

    model = transformers.BertModel.from_pretrained(minilm_dir)
    state = model.state_dict()
    clean = detect_without_base(state, config=model.config)
    locked = detect_without_base(protect_state(state, config=model.config, key=run_key), config=model.config)
    assert not clean.flagged and locked.flagged
    assert clean.measurements["ov_imbalance_max"] < locked.measurements["ov_imbalance_min"]


def test_detect_model_dir_reads_directories(protected_family):
    from guard.artifacts import open_model_dir
    from guard.lock.detect import detect_model_dir

    src, locked, _ = protected_family("gpt2")
    assert detect_model_dir(open_model_dir(locked), open_model_dir(src)).flagged
    assert not detect_model_dir(open_model_dir(src), open_model_dir(src)).flagged
    assert detect_model_dir(open_model_dir(locked)).flagged and not detect_model_dir(open_model_dir(src)).flagged


def test_detect_model_dir_not_applicable(tmp_path):
    import json

    from guard.artifacts import open_model_dir
    from guard.lock.detect import detect_model_dir
    from tests.lock.conftest import save_family

    src = save_family("gpt2", tmp_path / "m")
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "bloom"
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="not supported by MergeLock"):
        detect_model_dir(open_model_dir(src))


def test_real_fine_tunes_are_not_flagged_and_their_protected_copies_are(small_zoo, run_key):
    """The tests above stand Gaussian noise in for a fine-tune, which moves every weight alike and so cannot
    show a false positive on a real one (issue 10). The zoo's LM experts are real fine-tunes of its base."""
    from attacks.restoration.lm_experts import load_lm_zoo_setup

    setup = load_lm_zoo_setup("small")
    for task, expert in setup.experts.items():
        clean = detect_with_base(expert, setup.base, config=setup.config)
        assert not clean.flagged, (task, clean.message)
        locked = detect_with_base(protect_state(expert, config=setup.config, key=run_key), setup.base,
                                  config=setup.config)
        assert locked.flagged, (task, locked.message)
        assert locked.measurements["attention_distance_median"] > 3 * clean.measurements["attention_distance_median"]
