"""guard inspect with MergeLock detection (the lock stage's detector wired into the inspect job)."""

import json
import shutil

import pytest

from tests.helpers import assert_one_line_error, run_guard


@pytest.fixture(scope="module")
def protected(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("inspect-lock") / "protected"
    key = out.parent / "lock.key"
    result = run_guard("protect", tiny_model_dir("llama"), "--out", out, "--new-lock-key", key, "--unsigned")
    assert result.returncode == 0, result.stderr
    return out


def _inspect(*args):
    result = run_guard("inspect", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_protected_model_is_flagged_against_its_base_with_numbers(protected, tiny_model_dir):
    report = _inspect(protected, "--base", tiny_model_dir("llama"))
    lock = report["mergelock"]
    assert lock["checked"] and lock["flagged"] and lock["with_base"]
    assert lock["measurements"]["attention_distance_median"] > 0.3
    assert any(f["rule"] == lock["rule"] and f["severity"] == "warn" for f in report["findings"])


def test_stripped_lock_declaration_is_still_detected_with_the_base(protected, tiny_model_dir, tmp_path):
    stripped = tmp_path / "stripped"
    shutil.copytree(protected, stripped)
    (stripped / "guard_lock.json").unlink()
    lock = _inspect(stripped, "--base", tiny_model_dir("llama"))["mergelock"]
    assert lock["flagged"] and not lock["measurements"]["declared_by_guard_lock_json"]


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_clean_models_are_not_flagged(family, tiny_model_dir):
    other_seed = tiny_model_dir(family, seed=1)
    report = _inspect(other_seed)
    assert report["mergelock"]["checked"] and not report["mergelock"]["flagged"]
    assert report["verdict"] == "clean"


def test_base_of_another_architecture_is_a_one_line_error(protected, tiny_model_dir):
    result = run_guard("inspect", protected, "--base", tiny_model_dir("gpt2"))
    assert_one_line_error(result, code=2)
