"""The keygen / sign / verify commands as a user runs them: exit codes 0 / 1 / 2, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attacks.tamper import flip_byte
from tests.helpers import REPO_ROOT, assert_one_line_error, run_guard
from tests.signing.conftest import PASSPHRASE

ENV = {"GUARD_KEY_PASSPHRASE": PASSPHRASE}


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-keys")
    result = run_guard("keygen", root / "signer.key", "--curve", "p384", "--json", env=ENV)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["curve"] == "p384" and len(info["key_hint"]) == 64
    return root / "signer.key", root / "signer.key.pub"


def test_keygen_writes_an_encrypted_private_key(cli_keys, tmp_path):
    private, public = cli_keys
    assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes()
    assert private.stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in public.read_bytes()
    assert_one_line_error(run_guard("keygen", private, env=ENV), code=2, contains=("already exists",))
    no_pass = run_guard("keygen", tmp_path / "k", env={"GUARD_KEY_PASSPHRASE": ""})
    assert_one_line_error(no_pass, code=2, contains=("no passphrase",))


def test_sign_then_verify_then_tamper(cli_keys, model_copy):
    private, public = cli_keys
    signed = run_guard("sign", model_copy, "--key", private, "--json", env=ENV)
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["signature"] == str(model_copy / "model.sig")
    ok = run_guard("verify", model_copy, "--signature", model_copy / "model.sig", "--key", public)
    assert ok.returncode == 0 and ok.stdout.startswith("verified "), ok.stderr
    flip_byte(model_copy / "config.json", 3)
    bad = run_guard("verify", model_copy, "--key", public)
    line = assert_one_line_error(bad, code=1, contains=("digest mismatch config.json", "signed sha256:"))
    assert line.startswith("guard: error: ")


def test_sign_with_blake3_shards_and_custom_passphrase_variable(cli_keys, model_copy, tmp_path):
    private, public = cli_keys
    sig = tmp_path / "detached.sig"
    signed = run_guard("sign", model_copy, "--key", private, "--passphrase-env", "MY_PASS", "--hash", "blake3",
                       "--signature", sig, env={"MY_PASS": PASSPHRASE})
    assert signed.returncode == 0, signed.stderr
    verified = run_guard("verify", model_copy, "--signature", sig, "--key", public, "--json")
    assert json.loads(verified.stdout)["hash_type"] == "blake3"
    wrong = run_guard("sign", model_copy, "--key", private, "--signature", sig, env={"GUARD_KEY_PASSPHRASE": "nope"})
    assert_one_line_error(wrong, code=2, contains=("wrong passphrase",))
    missing = run_guard("sign", model_copy, "--key", private, "--signature", sig, env={"GUARD_KEY_PASSPHRASE": ""})
    assert_one_line_error(missing, code=2, contains=("GUARD_KEY_PASSPHRASE",))


@pytest.mark.parametrize("args, code, needle", [
    (["verify", "{model}", "--key", "{pub}", "--signature", "{model}/nope.sig"], 2, "no such signature file"),
    (["verify", "{model}/missing", "--key", "{pub}"], 2, "no such model file or directory"),
    (["verify", "{model}", "--key", "{pub}", "--identity", "a@b"], 2, "exactly one verification method"),
    (["verify", "{model}"], 2, "exactly one verification method"),
    (["verify", "{model}", "--identity", "a@b"], 2, "both --identity and --issuer"),
    (["sign", "{model}"], 2, "no signing method"),
    (["sign", "{model}", "--sigstore", "--key", "{pub}"], 2, "choose one signing method"),
    (["sign", "{model}", "--key", "{pub}", "--trust-config", "{pub}"], 2, "only apply to --sigstore"),
])
def test_argument_errors_are_one_line_exit_2(cli_keys, model_copy, args, code, needle):
    filled = [a.format(model=model_copy, pub=cli_keys[1]) for a in args]
    assert_one_line_error(run_guard(*filled, env=ENV), code=code, contains=(needle,))


def test_garbled_bundle_is_exit_1(cli_keys, model_copy):
    private, public = cli_keys
    assert run_guard("sign", model_copy, "--key", private, env=ENV).returncode == 0
    sig = model_copy / "model.sig"
    sig.write_bytes(sig.read_bytes()[:100])
    assert_one_line_error(run_guard("verify", model_copy, "--key", public), code=1, contains=("bundle unreadable",))


def test_oms_fixtures_verify_through_the_cli(oms_fixtures):
    f = oms_fixtures
    runs = [
        ("elliptic-key", ["--key", f / "keys" / "signing-key-pub.pem"]),
        ("certificate", ["--certificate-chain", f / "keys" / "ca-cert.pem"]),
        ("sigstore", ["--identity", "stefanb@us.ibm.com", "--issuer", "https://sigstore.verify.ibm.com/oauth2",
                      "--trust-config", f / "sigstore-trust-config.json"]),
    ]
    for name, args in runs:
        result = run_guard("verify", f / name, "--signature", f / name / "model.sig", *args)
        assert result.returncode == 0, (name, result.stderr)
    wrong = run_guard("verify", f / "sigstore", "--signature", f / "sigstore" / "model.sig", "--identity",
                      "mallory@example.com", "--issuer", "https://sigstore.verify.ibm.com/oauth2", "--trust-config",
                      f / "sigstore-trust-config.json")
    assert_one_line_error(wrong, code=1, contains=("SANs do not match",))


def test_sigstore_signing_without_network_fails_cleanly(model_copy, tmp_path):
    # Keyless signing needs Fulcio/Rekor; offline it must end in one line, not a traceback.
    bad_config = tmp_path / "tc.json"
    bad_config.write_text("{}")
    result = run_guard("sign", model_copy, "--sigstore", "--identity-token", "x.y.z", "--trust-config", bad_config)
    assert_one_line_error(result, code=2, contains=("ClientTrustConfig",))


@pytest.mark.parametrize("token_from", ["option", "environment"])
def test_sigstore_signing_with_a_bad_token_fails_before_any_network(model_copy, oms_fixtures, token_from):
    token_args = ["--identity-token", "not-a-jwt"] if token_from == "option" else []
    result = run_guard("sign", model_copy, "--sigstore", *token_args, "--trust-config",
                       oms_fixtures / "sigstore-trust-config.json", env={"SIGSTORE_ID_TOKEN": "not-a-jwt"})
    assert_one_line_error(result, code=2, contains=("cannot obtain an OIDC identity token",))
    assert not (model_copy / "model.sig").exists()


def test_guard_verify_imports_neither_torch_nor_sigstore(oms_fixtures):
    f = oms_fixtures
    code = (
        "import sys\n"
        "from guard.cli import main\n"
        "try:\n"
        f"    main(['verify', {str(f / 'elliptic-key')!r}, '--key', {str(f / 'keys' / 'signing-key-pub.pem')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sigstore', 'transformers')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
