"""Who else could change a model (guard.artifacts.ownership): the condition for reading verified bytes in place."""

from __future__ import annotations

import os
import pathlib

import pytest

import guard.artifacts.ownership as ownership
from guard.artifacts.ownership import changeable_by_others, filesystem_type


@pytest.fixture
def model(tmp_path) -> pathlib.Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "sub" / "weights.bin").write_bytes(b"\0" * 8)
    os.chmod(root / "config.json", 0o644)
    os.chmod(root / "sub" / "weights.bin", 0o600)
    return root.resolve()


FILES = ["config.json", "sub/weights.bin"]


def test_only_this_user_can_change_a_private_tree(model):
    assert changeable_by_others(model, FILES) is None


@pytest.mark.parametrize("target, mode", [("config.json", 0o664), ("sub/weights.bin", 0o606), ("sub", 0o777),
                                          (".", 0o775)])
def test_a_file_or_directory_others_may_write_is_named(model, target, mode):
    path = model / target if target != "." else model
    path.chmod(mode)
    reason = changeable_by_others(model, FILES)
    assert reason == f"{path} is writable by group or others (mode {mode:o})"


def test_an_ancestor_others_may_write_counts_unless_it_is_sticky(model):
    parent = model.parent
    parent.chmod(0o777)
    assert changeable_by_others(model, FILES) == f"{parent} is writable by group or others (mode 777)"
    parent.chmod(0o1777)  # as /tmp: others cannot rename or remove what they do not own
    assert changeable_by_others(model, FILES) is None
    model.chmod(0o1777)  # inside the model, sticky is not enough: others could add files
    assert "writable by group or others" in changeable_by_others(model, FILES)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_another_user_is_named(model):
    os.chown(model / "config.json", 4242, -1)
    assert changeable_by_others(model, FILES) == f"{model / 'config.json'} is owned by uid 4242"


def test_a_network_or_unknown_filesystem_is_never_trusted(model, monkeypatch):
    monkeypatch.setattr(ownership, "filesystem_type", lambda path: "nfs4")
    assert changeable_by_others(model, FILES) == f"{model} is on a nfs4 filesystem, not a local one"
    monkeypatch.setattr(ownership, "filesystem_type", lambda path: None)
    assert "unknown filesystem" in changeable_by_others(model, FILES)


def test_a_symlink_where_a_file_should_be_is_named(model):
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(model / "sub" / "weights.bin")
    assert changeable_by_others(model, FILES) == f"{model / 'config.json'} is not a regular file"


def test_filesystem_type_reads_the_longest_mount_point(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 253:1 / / rw - ext4 /dev/vda rw\n"
                         "30 22 0:40 / /srv/my\\040models rw shared:1 - nfs4 host:/export rw\n"
                         "31 22 0:41 / /srv/my rw - tmpfs tmpfs rw\n")
    for path, fstype in (("/srv/my models/llama", "nfs4"), ("/srv/my/llama", "tmpfs"), ("/srv/mymodels", "ext4"),
                         ("/", "ext4")):
        assert filesystem_type(pathlib.Path(path), mountinfo=mountinfo) == fstype
    assert filesystem_type(pathlib.Path("/"), mountinfo=tmp_path / "missing") is None
