"""The lock commands as a user runs them (subprocess): keygen, protect + sign + verify, unlock, errors."""

import json
import os
import stat

import pytest

from guard.signing.bundle import read_bundle
from guard.signing.statement import parse_statement
from tests.helpers import assert_one_line_error, run_guard
from tests.lock.conftest import save_family

PASSPHRASE = {"GUARD_KEY_PASSPHRASE": "correct horse"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock-cli")
    save_family("gpt2", root / "model")
    assert run_guard("lock-keygen", root / "lock.key").returncode == 0
    assert run_guard("keygen", root / "sign.key", env=PASSPHRASE).returncode == 0
    return root


def test_lock_keygen_mode_and_no_overwrite(workdir):
    assert stat.S_IMODE(os.stat(workdir / "lock.key").st_mode) == 0o600
    assert_one_line_error(run_guard("lock-keygen", workdir / "lock.key"), code=2, contains=("overwrite",))


def test_publisher_command_protects_signs_and_verifies(workdir):
    out = workdir / "protected"
    result = run_guard("protect", workdir / "model", "--out", out, "--lock-key", workdir / "lock.key",
                       "--sign-key", workdir / "sign.key", "--json", env=PASSPHRASE)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["selfcheck"]["max_relative_logit_error"] <= 1e-4 and summary["signature"].endswith("model.sig")
    assert summary["mlp_permute"] is True and "hidden units" in summary["mlp"]
    verified = run_guard("verify", out, "--key", workdir / "sign.key.pub")
    assert verified.returncode == 0, verified.stderr
    # Signed in staging, yet the signature names the published directory (its subject is the model name).
    statement = parse_statement(read_bundle(out / "model.sig").envelope.payload)
    assert statement.model_name == "protected"
    restored = run_guard("unlock", out, "--out", workdir / "restored", "--lock-key", workdir / "lock.key",
                         "--verify-key", workdir / "sign.key.pub")
    assert restored.returncode == 0 and "from the verified bytes" in restored.stdout, restored.stderr


def test_unlock_verifies_the_signature_before_reading_anything(workdir, tmp_path):
    """A weight changed after signing: unlock with verification refuses (exit 1) and writes nothing;
    without --verify-* or --unverified it does not start at all (exit 2)."""
    import shutil

    signed = tmp_path / "signed"
    assert run_guard("protect", workdir / "model", "--out", signed, "--lock-key", workdir / "lock.key",
                     "--sign-key", workdir / "sign.key", env=PASSPHRASE).returncode == 0
    tampered = shutil.copytree(signed, tmp_path / "tampered")
    weights = tampered / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01  # one bit of the last tensor
    weights.write_bytes(bytes(raw))
    result = run_guard("unlock", tampered, "--out", tmp_path / "out", "--lock-key", workdir / "lock.key",
                       "--verify-key", workdir / "sign.key.pub")
    assert_one_line_error(result, code=1)
    assert not (tmp_path / "out").exists()
    result = run_guard("unlock", signed, "--out", tmp_path / "out", "--lock-key", workdir / "lock.key")
    assert_one_line_error(result, code=2, contains=("--unverified",))
    result = run_guard("unlock", signed, "--out", tmp_path / "out", "--lock-key", workdir / "lock.key", "--unverified",
                       "--verify-key", workdir / "sign.key.pub")
    assert_one_line_error(result, code=2, contains=("verify-method",))
    assert not (tmp_path / "out").exists()


def test_unlock_with_wrong_key_is_one_line_exit_1(workdir):
    run_guard("lock-keygen", workdir / "other.key")
    locked = workdir / "locked-unsigned"
    protected = run_guard("protect", workdir / "model", "--out", locked, "--lock-key", workdir / "lock.key",
                          "--unsigned", "--no-mlp-permute")
    assert protected.returncode == 0 and "MLP: unchanged (--no-mlp-permute)" in protected.stdout
    result = run_guard("unlock", locked, "--out", workdir / "nope", "--lock-key", workdir / "other.key", "--unverified")
    assert_one_line_error(result, code=1, contains=("lock-wrong-key",))
    assert not (workdir / "nope").exists()


@pytest.mark.parametrize("args, needle", [
    (("--lock-key", "LOCK"), "no signing method"),
    (("--lock-key", "LOCK", "--new-lock-key", "NEW", "--unsigned"), "exactly one of"),
    (("--lock-key", "MODEL/config.json", "--unsigned"), "not a guard lock key"),
    (("--lock-key", "LOCK", "--unsigned", "--bound", "0.5"), "bound"),
])
def test_bad_protect_input_is_one_line_exit_2(workdir, args, needle):
    args = [str(a).replace("LOCK", str(workdir / "lock.key")).replace("MODEL", str(workdir / "model"))
            .replace("NEW", str(workdir / "new.key")) for a in args]
    result = run_guard("protect", workdir / "model", "--out", workdir / "never", *args)
    assert_one_line_error(result, code=2, contains=(needle,))
    assert not (workdir / "never").exists()
