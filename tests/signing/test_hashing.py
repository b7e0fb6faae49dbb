from __future__ import annotations

import hashlib
import os

import blake3
import pytest

from guard.errors import InputError
from guard.signing.hashing import HashPlan, hash_model


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "m"
    (root / "d").mkdir(parents=True)
    data = {"a.bin": os.urandom(300_000), "d/b.bin": os.urandom(70_000), "empty": b""}
    for name, content in data.items():
        (root / name).write_bytes(content)
    return root, data


def test_files_sha256_equals_hashlib_per_file(files):
    root, data = files
    hashed = hash_model(root, sorted(data), plan=HashPlan())
    assert hashed.digests == {name: hashlib.sha256(content).hexdigest() for name, content in data.items()}
    assert hashed.sizes == {name: len(content) for name, content in data.items()}


def test_blake3_equals_reference(files):
    root, data = files
    hashed = hash_model(root, sorted(data), plan=HashPlan(hash_type="blake3"))
    assert hashed.digests == {name: blake3.blake3(content).hexdigest() for name, content in data.items()}


def test_shards_cover_every_range_with_oms_names(files):
    root, data = files
    size = 64 * 1024
    hashed = hash_model(root, sorted(data), plan=HashPlan(method="shards", shard_size=size), max_workers=3)
    content = data["a.bin"]
    expected = {f"a.bin:{s}:{min(s + size, len(content))}": hashlib.sha256(content[s:s + size]).hexdigest()
                for s in range(0, len(content), size)}
    assert {k: v for k, v in hashed.digests.items() if k.startswith("a.bin:")} == expected
    assert hashed.digests["empty:0:0"] == hashlib.sha256(b"").hexdigest()
    assert HashPlan(method="shards", shard_size=size).algorithm_name() == f"sha256-sharded-{size}"


def test_one_worker_and_many_workers_agree(files):
    root, data = files
    plan = HashPlan(method="shards", shard_size=64 * 1024)
    assert hash_model(root, sorted(data), plan=plan, max_workers=1) == hash_model(root, sorted(data), plan=plan,
                                                                                   max_workers=4)


def test_copy_holds_exactly_the_hashed_bytes(files, tmp_path):
    root, data = files
    dest = tmp_path / "copy"
    dest.mkdir()
    hashed = hash_model(root, sorted(data), plan=HashPlan(method="shards", shard_size=64 * 1024), copy_to=dest)
    for name, content in data.items():
        assert (dest / name).read_bytes() == content
        assert (dest / name).stat().st_mode & 0o777 == 0o400
    assert hashed.total_bytes == sum(map(len, data.values()))


def test_tiny_shards_from_a_signature_are_refused(files):
    root, data = files
    with pytest.raises(InputError, match="below the minimum"):
        hash_model(root, sorted(data), plan=HashPlan(method="shards", shard_size=16))


def test_a_symlink_is_never_followed(files):
    root, data = files
    (root / "link").symlink_to(root / "a.bin")
    with pytest.raises(InputError) as info:
        hash_model(root, ["link"], plan=HashPlan())
    assert info.value.rule in ("path-special-file", "path-unreadable")
