"""guard_lock.json: per-run key ids that do not link two models of one key, a MAC under the lock key
that `unlock` checks before writing anything, and the v1 format (written before both) still unlocking."""

import json
import pathlib
import shutil

import pytest
import torch

from guard.errors import GuardError
from guard.lock.protect import LOCK_FILE, protect_model, unlock_model
from tests.helpers import assert_one_line_error, run_guard
from tests.lock.conftest import not_restored, save_family

GOLDEN = pathlib.Path(__file__).parent / "golden"


def _tensors(path):
    from safetensors.torch import load_file

    out = {}
    for shard in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(shard)))
    return out


def _shard_metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as handle:
        return handle.metadata()


@pytest.fixture(scope="module")
def siblings(tmp_path_factory):
    """One model protected twice with one key (two runs), plus its original."""
    from guard.lock.keys import LockKey

    root = tmp_path_factory.mktemp("siblings")
    key = LockKey(bytes(range(32)))
    src = save_family("llama", root / "src")
    first = protect_model(src, root / "first", key=key).out_dir
    second = protect_model(src, root / "second", key=key).out_dir
    return key, src, first, second


def test_two_models_protected_with_one_key_have_unrelated_key_ids(siblings):
    key, _, first, second = siblings
    meta = [json.loads((d / LOCK_FILE).read_text()) for d in (first, second)]
    assert meta[0]["key_id"] != meta[1]["key_id"]
    assert meta[0]["nonce"] != meta[1]["nonce"] and len(bytes.fromhex(meta[0]["nonce"])) == 32
    # The shards' metadata carries the run's id, not a key-wide one.
    assert [_shard_metadata(d)["guard.lock_key_id"] for d in (first, second)] == [m["key_id"] for m in meta]
    # No key-derived value is shared between the two outputs' metadata (a shared fingerprint would link them).
    shared = {k for k in meta[0] if meta[0][k] == meta[1][k] and k not in ("selfcheck",)}
    assert not shared & {"key_id", "nonce", "mac"}


def test_sibling_transforms_are_unrelated_and_both_unlock(siblings, tmp_path):
    key, src, first, second = siblings
    original, a, b = _tensors(src), _tensors(first), _tensors(second)
    transformed = [k for k in original if not torch.equal(a[k], original[k])]
    assert len(transformed) >= 8
    # Every tensor the lock rewrote got a different transform in the other run: knowing one model's
    # transforms (e.g. from unlocking it) says nothing about its sibling's.
    assert all(not torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in transformed)
    for protected in (first, second):
        back = _tensors(unlock_model(protected, tmp_path / protected.name, key=key).out_dir)
        assert not_restored(back, original) == []


def _tamper(locked: pathlib.Path, dest: pathlib.Path, change) -> pathlib.Path:
    copy = shutil.copytree(locked, dest)
    meta = json.loads((copy / LOCK_FILE).read_text())
    change(meta)
    (copy / LOCK_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return copy


TAMPERING = {
    "bound": lambda m: m.update(bound=4.0),
    "mlp_permute": lambda m: m.update(mlp_permute=False),
    "residual": lambda m: m.update(residual="none"),
    "added-field": lambda m: m.update(note="harmless?"),
    "mac-removed": lambda m: m.pop("mac"),
    "mac-flipped": lambda m: m.update(mac=("0" if m["mac"][0] != "0" else "1") + m["mac"][1:]),
}


@pytest.mark.parametrize("change", sorted(TAMPERING))
def test_tampered_lock_file_is_refused_before_writing(siblings, tmp_path, change):
    key, _, first, _ = siblings
    tampered = _tamper(first, tmp_path / "tampered", TAMPERING[change])
    with pytest.raises(GuardError) as info:
        unlock_model(tampered, tmp_path / "out", key=key)
    assert info.value.exit_code == 1 and info.value.rule == "lock-metadata-mac", info.value.one_line()
    assert LOCK_FILE in info.value.one_line()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tampered"]  # nothing written, no staging left


def test_unlock_of_a_validated_model_dir_reads_the_lock_file_it_validated(siblings, tmp_path):
    """unlock_model(ModelDir) (what safe-merge passes for a verified input) reads guard_lock.json through the
    ModelDir: a lock file swapped after validation, even for one with the same MAC-valid content of another
    run, is refused as changed instead of being read again by path."""
    from guard.artifacts import open_model_dir

    key, _, first, second = siblings
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    validated = open_model_dir(copy)
    assert unlock_model(validated, tmp_path / "ok", key=key).out_dir.is_dir()  # unchanged: unlocks
    (copy / LOCK_FILE).unlink()
    shutil.copyfile(second / LOCK_FILE, copy / LOCK_FILE)  # a valid lock file, but not the one validated
    with pytest.raises(GuardError) as info:
        unlock_model(validated, tmp_path / "out", key=key)
    assert info.value.exit_code == 2 and info.value.rule == "file-changed", info.value.one_line()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field", ["nonce", "key_id"])
def test_changed_nonce_or_key_id_reads_as_a_wrong_key(siblings, tmp_path, field):
    key, _, first, second = siblings
    other = json.loads((second / LOCK_FILE).read_text())[field]
    tampered = _tamper(first, tmp_path / "tampered", lambda m: m.update({field: other}))
    with pytest.raises(GuardError) as info:
        unlock_model(tampered, tmp_path / "out", key=key)
    assert info.value.exit_code == 1 and info.value.rule in ("lock-wrong-key", "lock-metadata-mac")
    assert not (tmp_path / "out").exists()


def test_cli_names_the_check_and_the_file(siblings, tmp_path):
    key, _, first, _ = siblings
    from guard.lock.keys import write_lock_key

    key_file = write_lock_key(key, tmp_path / "lock.key")
    tampered = _tamper(first, tmp_path / "tampered", TAMPERING["bound"])
    result = run_guard("unlock", tampered, "--out", tmp_path / "out", "--lock-key", key_file, "--unverified")
    line = assert_one_line_error(result, code=1, contains=("lock-metadata-mac", LOCK_FILE))
    assert "bound" not in line or "tampered" in line
    assert not (tmp_path / "out").exists()


# ---- format v1 (before per-run nonces and the MAC): tests/lock/golden, made by commit f85a014 ----------

def _golden_key():
    from guard.lock.keys import LockKey

    return LockKey(bytes(range(32)))


def test_v1_output_still_unlocks_with_allow_legacy(tmp_path):
    meta = json.loads((GOLDEN / "v1-protected" / LOCK_FILE).read_text())
    assert meta["version"] == 1 and "nonce" not in meta and "mac" not in meta
    result = unlock_model(GOLDEN / "v1-protected", tmp_path / "back", key=_golden_key(), allow_legacy=True)
    original, back = _tensors(GOLDEN / "v1-original"), _tensors(result.out_dir)
    assert original.keys() == back.keys()
    assert not_restored(back, original) == []
    locked = _tensors(GOLDEN / "v1-protected")
    assert any(not torch.equal(locked[k], v) for k, v in original.items())  # the golden really is locked


def test_v1_output_needs_the_explicit_opt_in(tmp_path):
    with pytest.raises(GuardError) as info:
        unlock_model(GOLDEN / "v1-protected", tmp_path / "back", key=_golden_key())
    assert info.value.exit_code == 1 and info.value.rule == "lock-legacy-format"
    assert "--allow-legacy" in info.value.one_line()
    assert not (tmp_path / "back").exists()


def test_v1_output_with_a_wrong_key_is_refused(tmp_path):
    from guard.lock.keys import LockKey

    with pytest.raises(GuardError) as info:
        unlock_model(GOLDEN / "v1-protected", tmp_path / "back", key=LockKey(bytes(32)), allow_legacy=True)
    assert info.value.rule == "lock-wrong-key"
