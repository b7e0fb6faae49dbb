"""A signed merge workspace: tiny llama base + two fine-tunes, each signed by the publisher key."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

import pytest
import yaml

PASSPHRASE = b"test-passphrase"


@dataclasses.dataclass
class Workspace:
    root: pathlib.Path
    base: pathlib.Path
    experts: list[pathlib.Path]
    private_key: pathlib.Path
    public_key: pathlib.Path
    other_private_key: pathlib.Path
    other_public_key: pathlib.Path

    def signer(self, *, other: bool = False):
        from guard.signing import load_signer

        return load_signer(key=self.other_private_key if other else self.private_key, key_passphrase=PASSPHRASE)

    def config(self, *, method: str = "ties", name: str = "merge.yml", experts=None, **top) -> pathlib.Path:
        experts = self.experts if experts is None else experts
        params = {"weight": 0.5, "density": 0.5} if method in ("ties", "dare_ties") else {"weight": 0.5}
        raw = {"merge_method": method, "base_model": str(self.base),
               "models": [{"model": str(e), "parameters": params} for e in experts], **top}
        path = self.root / name
        path.write_text(yaml.safe_dump(raw))
        return path


def write_key_pair(private: pathlib.Path, public: pathlib.Path) -> None:
    from guard.signing import keys
    from guard.artifacts.atomic import write_atomically

    key = keys.generate_private_key("p256")
    write_atomically(private, keys.private_key_pem(key, PASSPHRASE).decode("ascii"), mode=0o600)
    write_atomically(public, keys.public_key_pem(key.public_key()).decode("ascii"))


@pytest.fixture(scope="session")
def signed_models(tmp_path_factory):
    """Read-only originals: copy with `workspace` before changing anything."""
    from guard.signing import load_signer, sign_model
    from guard.testing.factory import make_fine_tune_dir

    root = tmp_path_factory.mktemp("signed-models")
    write_key_pair(root / "publisher.key", root / "publisher.pub")
    write_key_pair(root / "other.key", root / "other.pub")
    signer = load_signer(key=root / "publisher.key", key_passphrase=PASSPHRASE)
    dirs = [make_fine_tune_dir("llama", root / name, seed=seed, shards=2 if seed == 0 else 1)
            for name, seed in (("base", 0), ("expert-a", 1), ("expert-b", 2))]
    for d in dirs:
        sign_model(d, signer=signer)
    return root


@pytest.fixture
def workspace(signed_models, tmp_path) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(signed_models, root)
    return Workspace(root=root, base=root / "base", experts=[root / "expert-a", root / "expert-b"],
                     private_key=root / "publisher.key", public_key=root / "publisher.pub",
                     other_private_key=root / "other.key", other_public_key=root / "other.pub")
