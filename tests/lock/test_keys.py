import os
import stat

import pytest

from guard.errors import InputError
from guard.lock.keys import LockKey, generate_lock_key, read_lock_key, write_lock_key


def test_write_read_roundtrip_mode_and_no_overwrite(tmp_path):
    key = generate_lock_key()
    path = write_lock_key(key, tmp_path / "lock.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_lock_key(path).secret == key.secret
    with pytest.raises(InputError, match="overwrite"):
        write_lock_key(generate_lock_key(), path)
    assert read_lock_key(path).secret == key.secret


def test_fingerprint_identifies_without_revealing():
    key = LockKey(bytes(range(32)))
    assert key.fingerprint == LockKey(bytes(range(32))).fingerprint != LockKey(bytes(32)).fingerprint
    assert key.secret.hex() not in key.fingerprint and key.secret.hex() not in repr(key)
    run = key.fresh_run()
    assert key.secret.hex() not in repr(run) and run.key_id in repr(run)


def test_derived_seeds_differ_per_block_group_branch():
    key = LockKey(bytes(range(32))).for_run(bytes(32))
    seeds = {key.derive_seed(block=b, group=g, branch=br) for b in ("l.0", "l.1") for g in (0, 1) for br in ("qk", "vo")}
    assert len(seeds) == 8
    assert key.derive_seed(block="l.0", group=0, branch="qk") == key.derive_seed(block="l.0", group=0, branch="qk")


def test_runs_of_one_key_share_no_derived_value():
    """Per-run nonces: another run's key id, seeds and MAC key are unrelated (HKDF salt and HMAC input)."""
    key = LockKey(bytes(range(32)))
    first, second = key.fresh_run(), key.fresh_run()
    assert first.nonce != second.nonce and len(first.nonce) == 32
    assert first.key_id != second.key_id != key.fingerprint
    assert first.derive_seed(block="l.0", group=0, branch="qk") != second.derive_seed(block="l.0", group=0, branch="qk")
    assert first.mac(b"x") != second.mac(b"x")
    # The same nonce gives the same run (unlock regenerates protect's transforms); v1 keeps its old values.
    again = key.for_run(first.nonce)
    assert (again.key_id, again.mac(b"x")) == (first.key_id, first.mac(b"x"))
    assert key.legacy_v1().key_id == key.fingerprint and key.legacy_v1().version == 1


def test_v1_derivation_is_unchanged():
    """Format v1 seeds: HKDF-SHA256(key, salt "guard-mergelock-v1", info block|group|branch), pinned."""
    import hashlib
    import hmac

    key = LockKey(bytes(range(32)))
    prk = hmac.new(b"guard-mergelock-v1", key.secret, hashlib.sha256).digest()  # RFC 5869 extract
    okm = hmac.new(prk, b"l.0|1|vo" + b"\x01", hashlib.sha256).digest()  # expand, one block
    assert key.legacy_v1().derive_seed(block="l.0", group=1, branch="vo") == okm


@pytest.mark.parametrize("content", [b"", b"guard-lock-key v1 00\n", b"\xff" * 40, b"guard-lock-key v1 " + b"g" * 64])
def test_malformed_key_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_lock_key(path)
    assert info.value.exit_code == 2


def test_missing_key_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_lock_key(tmp_path / "absent.key")
