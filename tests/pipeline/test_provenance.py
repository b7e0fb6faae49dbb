"""Provenance of a merge verifies; a changed weight byte, a changed statement, or another signer fails."""

from __future__ import annotations

import json
import shutil

import pytest

from guard.errors import VerificationError
from guard.pipeline.provenance import PROVENANCE_FILE, verify_provenance
from guard.pipeline.safe_merge import safe_merge
from tests.helpers import assert_one_line_error, run_guard
from tests.pipeline.conftest import PASSPHRASE


@pytest.fixture
def merged(workspace):
    out = workspace.root / "out"
    record = safe_merge(workspace.config(), out, verifier_options={"public_key": workspace.public_key},
                        signer=workspace.signer())
    assert record.verdict == "merged"
    return workspace, out


def _verifier(path):
    from guard.signing import load_verifier

    return load_verifier(public_key=path)


def test_provenance_verifies_and_reverifies_the_inputs(merged):
    ws, out = merged
    report = verify_provenance(out, verifier=_verifier(ws.public_key))
    assert report["merge_method"] == "ties" and report["policy"]["name"] == "strict"
    assert [i["reverified"] for i in report["inputs"]] == [True, True, True]
    statement = json.loads(__import__("base64").b64decode(json.loads((out / PROVENANCE_FILE).read_text())
                                                          ["dsseEnvelope"]["payload"]))
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {d["annotations"]["verifier"]["method"] for d in deps} == {"key"}
    names = {s["name"] for s in statement["subject"]}
    assert "model.safetensors.index.json" in names and "config.json" in names and PROVENANCE_FILE not in names
    checks = statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["checks"]
    assert any(c["check"] == "signature" and c["verdict"] == "pass" for c in checks)


def test_a_changed_input_fails_reverification(merged):
    ws, out = merged
    data = bytearray((ws.experts[0] / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (ws.experts[0] / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        verify_provenance(out, verifier=_verifier(ws.public_key))
    moved = ws.root / "elsewhere"
    shutil.move(ws.experts[0], moved)
    report = verify_provenance(out, verifier=_verifier(ws.public_key))
    assert [i["reverified"] for i in report["inputs"]] == [True, False, True]


@pytest.mark.parametrize("target", ["weights", "statement"])
def test_a_changed_byte_fails(merged, target):
    ws, out = merged
    path = sorted(out.glob("*.safetensors"))[0] if target == "weights" else out / PROVENANCE_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        verify_provenance(out, verifier=_verifier(ws.public_key))


def test_resigned_by_another_key_fails(merged):
    from guard.signing import sign_model

    ws, out = merged
    other = ws.signer(other=True)
    sign_model(out, signer=other)  # a new OMS signature over the same files, by someone else
    with pytest.raises(VerificationError):  # the publisher's key no longer verifies model.sig
        verify_provenance(out, verifier=_verifier(ws.public_key))
    with pytest.raises(VerificationError):  # the new key verifies model.sig but not the provenance
        verify_provenance(out, verifier=_verifier(ws.other_public_key))
    statement = json.loads(__import__("base64").b64decode(json.loads((out / PROVENANCE_FILE).read_text())
                                                          ["dsseEnvelope"]["payload"]))
    from guard.pipeline.provenance import write_provenance

    write_provenance(out, json.dumps(statement).encode(), other)  # re-sign the provenance too
    sign_model(out, signer=other)
    with pytest.raises(VerificationError):
        verify_provenance(out, verifier=_verifier(ws.public_key))


def test_cli_merge_verify_and_refuse(workspace):
    env = {"GUARD_KEY_PASSPHRASE": PASSPHRASE.decode()}
    config = workspace.config()
    out = workspace.root / "cli-out"
    ok = run_guard("safe-merge", config, "--out", out, "--key", workspace.public_key,
                   "--sign-key", workspace.private_key, "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    record = json.loads(ok.stdout)
    assert record["verdict"] == "merged" and record["output"]["provenance"]
    verified = run_guard("verify", out, "--key", workspace.public_key, "--provenance")
    assert verified.returncode == 0 and "re-verified" in verified.stdout, verified.stderr
    (workspace.experts[1] / "model.sig").unlink()
    refused = run_guard("safe-merge", config, "--out", workspace.root / "cli-out-2", "--key", workspace.public_key,
                        "--sign-key", workspace.private_key, env=env)
    line = assert_one_line_error(refused, code=1, contains=("signature-missing", "expert-b"))
    assert "refused by policy strict" in line and not (workspace.root / "cli-out-2").exists()
    assert "REFUSE" in refused.stdout + refused.stderr or "refused" in refused.stdout
    bad = run_guard("safe-merge", workspace.root / "nope.yml", "--out", workspace.root / "x", "--unsigned")
    assert_one_line_error(bad, code=2, contains=("nope.yml",))
    unsigned_choice = run_guard("safe-merge", config, "--out", workspace.root / "x")
    assert_one_line_error(unsigned_choice, code=2, contains=("--unsigned",))


def test_verify_provenance_imports_no_torch(merged):
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    ws, out = merged
    code = ("import sys; sys.argv=['guard','verify',sys.argv[1],'--key',sys.argv[2],'--provenance']\n"
            "from guard.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','transformers'))))")
    result = subprocess.run([sys.executable, "-c", code, str(out), str(ws.public_key)], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
