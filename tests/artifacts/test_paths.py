import os
import pathlib

import pytest

from guard.artifacts.paths import check_relname, is_ignored, list_model_files
from guard.errors import InputError


def _tree(root: pathlib.Path) -> pathlib.Path:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "b.bin").write_bytes(b"x")
    (root / "sub" / "a.txt").write_text("a")
    (root / "sub" / "deep" / "z.json").write_text("{}")
    return root


def test_lists_sorted_posix_relpaths(tmp_path):
    root = _tree(tmp_path / "m")
    assert list_model_files(root) == ["b.bin", "config.json", "sub/a.txt", "sub/deep/z.json"]


def test_ignore_patterns_skip_files_and_directories(tmp_path):
    root = _tree(tmp_path / "m")
    assert list_model_files(root, ignore=("sub", "*.bin")) == ["config.json"]
    assert is_ignored("sub/deep/z.json", ("sub/deep",))
    assert not is_ignored("subx/a", ("sub",))


def test_missing_and_non_directory(tmp_path):
    with pytest.raises(InputError) as exc:
        list_model_files(tmp_path / "nope")
    assert exc.value.rule == "path-not-found"
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as exc:
        list_model_files(tmp_path / "f")
    assert exc.value.rule == "path-not-directory"


def test_symlink_refused_by_default(tmp_path):
    root = _tree(tmp_path / "m")
    os.symlink(root / "config.json", root / "alias.json")
    with pytest.raises(InputError) as exc:
        list_model_files(root)
    assert exc.value.rule == "path-symlink"
    assert exc.value.path.endswith("alias.json")


def test_allowed_symlink_inside_is_listed_but_escape_is_refused(tmp_path):
    root = _tree(tmp_path / "m")
    os.symlink("config.json", root / "alias.json")
    assert "alias.json" in list_model_files(root, allow_symlinks=True)
    outside = tmp_path / "secret"
    outside.write_text("s")
    os.symlink(outside, root / "leak.json")
    with pytest.raises(InputError) as exc:
        list_model_files(root, allow_symlinks=True)
    assert exc.value.rule == "path-symlink-escape"


def test_symlinked_directory_refused_even_when_symlinks_allowed(tmp_path):
    root = _tree(tmp_path / "m")
    os.symlink(root / "sub", root / "loop")
    with pytest.raises(InputError) as exc:
        list_model_files(root, allow_symlinks=True)
    assert exc.value.rule == "path-symlink"


def test_fifo_refused(tmp_path):
    root = _tree(tmp_path / "m")
    os.mkfifo(root / "pipe")
    with pytest.raises(InputError) as exc:
        list_model_files(root)
    assert exc.value.rule == "path-special-file"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b", "C:x", "a\nb", ""])
def test_check_relname_refuses_unsafe(name):
    with pytest.raises(InputError) as exc:
        check_relname(name)
    assert exc.value.rule == "path-unsafe-name"


@pytest.mark.parametrize("name", ["model.safetensors", "1_Pooling/config.json", "a..b", ".gitattributes"])
def test_check_relname_accepts_safe(name):
    assert check_relname(name) == name
