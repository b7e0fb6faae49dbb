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
    assert key.key_id == LockKey(bytes(range(32))).key_id != LockKey(bytes(32)).key_id
    assert key.secret.hex() not in key.key_id and key.secret.hex() not in repr(key)


def test_derived_seeds_differ_per_block_group_branch():
    key = LockKey(bytes(range(32)))
    seeds = {key.derive_seed(block=b, group=g, branch=br) for b in ("l.0", "l.1") for g in (0, 1) for br in ("qk", "vo")}
    assert len(seeds) == 8
    assert key.derive_seed(block="l.0", group=0, branch="qk") == key.derive_seed(block="l.0", group=0, branch="qk")


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
