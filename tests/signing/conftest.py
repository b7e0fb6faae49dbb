"""Fixtures for the signing tests: small models, keys and a throwaway X.509 hierarchy, all built locally."""

from __future__ import annotations

import datetime
import os
import pathlib
import shutil

import numpy as np
import pytest

from tests.helpers import REPO_ROOT

PASSPHRASE = "correct horse battery staple"


def oms_fixture_root() -> pathlib.Path:
    override = os.environ.get("GUARD_OMS_FIXTURES")
    return pathlib.Path(override) if override else REPO_ROOT.parent / "shared" / "fixtures" / "oms-v1.1.0"


@pytest.fixture(scope="session")
def oms_fixtures() -> pathlib.Path:
    root = oms_fixture_root()
    assert (root / "README.md").is_file(), f"OMS fixtures not found at {root} (set GUARD_OMS_FIXTURES)"
    return root


def write_small_model(root: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """A real (tiny) safetensors model plus config and a nested tokenizer file; no torch needed."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    save_file({"embed.weight": rng.standard_normal((64, 32), dtype=np.float32),
               "layer.0.weight": rng.standard_normal((32, 32), dtype=np.float32),
               "layer.0.bias": rng.standard_normal((32,), dtype=np.float32)},
              str(root / "model.safetensors"), metadata={"format": "pt"})
    (root / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32}')
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(100)))
    return root


@pytest.fixture(scope="session")
def pristine_model(tmp_path_factory) -> pathlib.Path:
    return write_small_model(tmp_path_factory.mktemp("pristine") / "small-model")


@pytest.fixture
def model_copy(pristine_model, tmp_path) -> pathlib.Path:
    target = tmp_path / "model"
    shutil.copytree(pristine_model, target)
    return target


@pytest.fixture(scope="session")
def keypair(tmp_path_factory):
    """(private key object, private PEM path (encrypted), public PEM path) for P-256."""
    from guard.signing import keys

    root = tmp_path_factory.mktemp("keys")
    key = keys.generate_private_key("p256")
    (root / "ec.key").write_bytes(keys.private_key_pem(key, PASSPHRASE.encode()))
    (root / "ec.pub").write_bytes(keys.public_key_pem(key.public_key()))
    return key, root / "ec.key", root / "ec.pub"


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory):
    from guard.signing import keys

    root = tmp_path_factory.mktemp("other-keys")
    key = keys.generate_private_key("p384")
    (root / "ec.key").write_bytes(keys.private_key_pem(key, PASSPHRASE.encode()))
    (root / "ec.pub").write_bytes(keys.public_key_pem(key.public_key()))
    return key, root / "ec.key", root / "ec.pub"


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(subject_key, subject_cn: str, issuer_key, issuer_cn: str, *, ca: bool, usage: bool = True,
              not_before=None, days: int = 365):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = not_before or now - datetime.timedelta(days=1)
    builder = (x509.CertificateBuilder().subject_name(_name(subject_cn)).issuer_name(_name(issuer_cn))
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_before + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                      key_encipherment=False, data_encipherment=False,
                                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                      encipher_only=False, decipher_only=False), critical=True)
    elif usage:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                      key_encipherment=False, data_encipherment=False,
                                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """root CA -> intermediate CA -> signing leaf (EC P-256), plus an unrelated root; PEM files."""
    from cryptography.hazmat.primitives import serialization

    from guard.signing import keys

    root_dir = tmp_path_factory.mktemp("pki")
    root_key, int_key, leaf_key, other_key = (keys.generate_private_key("p256") for _ in range(4))
    year_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=365)
    root = make_cert(root_key, "guard-test-root", root_key, "guard-test-root", ca=True, not_before=year_ago,
                     days=3650)
    inter = make_cert(int_key, "guard-test-intermediate", root_key, "guard-test-root", ca=True, not_before=year_ago,
                      days=3650)
    leaf = make_cert(leaf_key, "guard-test-signer", int_key, "guard-test-intermediate", ca=False)
    other = make_cert(other_key, "guard-other-root", other_key, "guard-other-root", ca=True, days=3650)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    files = {"root": root_dir / "root.pem", "intermediate": root_dir / "int.pem", "leaf": root_dir / "leaf.pem",
             "other_root": root_dir / "other-root.pem", "leaf_key": root_dir / "leaf.key"}
    files["root"].write_bytes(pem(root))
    files["intermediate"].write_bytes(pem(inter))
    files["leaf"].write_bytes(pem(leaf))
    files["other_root"].write_bytes(pem(other))
    files["leaf_key"].write_bytes(keys.private_key_pem(leaf_key, PASSPHRASE.encode()))
    return {"paths": files, "keys": {"root": root_key, "intermediate": int_key, "leaf": leaf_key}}
