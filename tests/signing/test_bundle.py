from __future__ import annotations

import json

import pytest

from guard.errors import InputError, VerificationError
from guard.signing.bundle import MEDIA_TYPE, parse_bundle, read_bundle


def test_oms_fixture_bundles_parse(oms_fixtures):
    kinds = {name: read_bundle(oms_fixtures / name / "model.sig").kind
             for name in ("elliptic-key", "certificate", "sigstore")}
    assert kinds == {"elliptic-key": "key", "certificate": "certificate", "sigstore": "sigstore"}


def test_missing_signature_is_unreadable_input(tmp_path):
    with pytest.raises(InputError) as info:
        read_bundle(tmp_path / "nope.sig")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("raw, reason", [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"mediaType": "application/json"}).encode(), "media type"),
    (json.dumps({"mediaType": MEDIA_TYPE, "verificationMaterial": {}}).encode(), "exactly one of"),
    (json.dumps({"mediaType": MEDIA_TYPE, "verificationMaterial": {"publicKey": {"hint": "ab"}},
                 "dsseEnvelope": {"payloadType": "x", "payload": "!!", "signatures": [{"sig": "AA=="}]}}).encode(),
     "not valid base64"),
    (json.dumps({"mediaType": MEDIA_TYPE, "verificationMaterial": {"publicKey": {"hint": "ab"}},
                 "dsseEnvelope": {"payloadType": "x", "payload": "AA==", "signatures": []}}).encode(),
     "exactly one signature"),
    (json.dumps({"mediaType": MEDIA_TYPE, "verificationMaterial": {"publicKey": {"hint": "ab"}},
                 "messageSignature": {}}).encode(), "no dsseEnvelope"),
])
def test_garbled_bundles_fail_verification_with_the_reason(raw, reason):
    with pytest.raises(VerificationError, match=reason) as info:
        parse_bundle(raw)
    assert info.value.exit_code == 1 and "bundle unreadable" in info.value.message


def test_truncated_fixture_bundle_fails(oms_fixtures, tmp_path):
    sig = tmp_path / "model.sig"
    data = (oms_fixtures / "certificate" / "model.sig").read_bytes()
    sig.write_bytes(data[: len(data) // 2])
    with pytest.raises(VerificationError, match="bundle unreadable"):
        read_bundle(sig)


def test_signature_write_is_durable_file_and_directory(model_copy, keypair, monkeypatch):
    """Issue 10, hole 6: bundle writes did not fsync the directory, so the rename could be lost on a crash."""
    from guard.signing import load_signer, sign_model
    from tests.helpers import record_fsyncs
    from tests.signing.conftest import PASSPHRASE

    signer = load_signer(key=keypair[1], key_passphrase=PASSPHRASE)
    synced = record_fsyncs(monkeypatch)
    signature = sign_model(model_copy, signer=signer)
    assert ("file", signature.stat().st_ino) in synced
    assert synced[-1] == ("dir", model_copy.stat().st_ino)  # after the rename, the directory entry is made durable
