"""Mutated signature files never escape as tracebacks, and never verify unless the edit changed nothing.

A mutated bundle that still verifies must parse to the same JSON document as the original (only JSON
whitespace changed): any other edit that verifies would mean guard ignored part of what it was given.
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.errors import GuardError
from guard.signing import load_verifier, verify_model

FIXTURE_IDENTITY = "stefanb@us.ibm.com"
FIXTURE_ISSUER = "https://sigstore.verify.ibm.com/oauth2"

mutations = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4)
cuts = st.one_of(st.none(), st.floats(0, 1))


def _mutate(data: bytes, edits, cut) -> bytes:
    out = bytearray(data)
    for where, value in edits:
        out[int(where * len(out))] = value
    if cut is not None:
        out = out[: int(cut * len(out))]
    return bytes(out)


def _same_document(a: bytes, b: bytes) -> bool:
    """Equal as JSON, except that a keyless bundle's RFC 3161 timestamps may differ: sigstore-python skips a
    timestamp that does not verify when the Rekor integrated time already meets its threshold (docs/signing.md)."""
    import json

    def document(raw: bytes):
        doc = json.loads(raw)
        material = doc.get("verificationMaterial") if isinstance(doc, dict) else None
        if isinstance(material, dict) and "certificate" in material:
            material.pop("timestampVerificationData", None)
        return doc

    try:
        return document(a) == document(b)
    except (ValueError, AttributeError):
        return False


def _check(model, sig, original: bytes, edits, cut, verifier) -> None:
    mutated = _mutate(original, edits, cut)
    sig.write_bytes(mutated)
    try:
        verify_model(model, signature=sig, verifier=verifier)
    except GuardError as exc:
        assert exc.exit_code in (1, 2)
    else:
        assert mutated == original or _same_document(mutated, original), (edits, cut)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=mutations, cut=cuts)
def test_mutated_key_bundle(oms_fixtures, tmp_path, edits, cut):
    model = tmp_path / "model"
    if not model.exists():
        shutil.copytree(oms_fixtures / "elliptic-key", model)
    original = (oms_fixtures / "elliptic-key" / "model.sig").read_bytes()
    verifier = load_verifier(public_key=oms_fixtures / "keys" / "signing-key-pub.pem")
    _check(model, tmp_path / "fuzz.sig", original, edits, cut, verifier)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=mutations, cut=cuts)
def test_mutated_certificate_and_sigstore_bundles(oms_fixtures, tmp_path, edits, cut):
    cert_verifier = load_verifier(certificate_chain=[oms_fixtures / "keys" / "ca-cert.pem"])
    sigstore_verifier = load_verifier(identity=FIXTURE_IDENTITY, issuer=FIXTURE_ISSUER,
                                      trust_config=oms_fixtures / "sigstore-trust-config.json")
    for name, verifier in (("certificate", cert_verifier), ("sigstore", sigstore_verifier)):
        model = tmp_path / name
        if not model.exists():
            shutil.copytree(oms_fixtures / name, model)
        original = (oms_fixtures / name / "model.sig").read_bytes()
        _check(model, tmp_path / f"{name}.sig", original, edits, cut, verifier)


def _b64_fields(node, path=()):
    """Paths of every base64-looking string in the bundle JSON."""
    import base64
    import binascii

    if isinstance(node, dict):
        for key, value in node.items():
            yield from _b64_fields(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _b64_fields(value, (*path, i))
    elif isinstance(node, str) and len(node) >= 16:
        try:
            base64.b64decode(node, validate=True)
            yield path
        except (binascii.Error, ValueError):
            pass


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["certificate", "sigstore"]), field=st.floats(0, 1, exclude_max=True),
       where=st.floats(0, 1, exclude_max=True), value=st.integers(1, 255))
def test_flipped_byte_inside_a_decoded_field(oms_fixtures, tmp_path, which, field, where, value):
    import base64
    import json

    doc = json.loads((oms_fixtures / which / "model.sig").read_text())
    paths = sorted(_b64_fields(doc), key=str)
    path = paths[int(field * len(paths))]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    raw = bytearray(base64.b64decode(parent[path[-1]]))
    raw[int(where * len(raw))] ^= value
    parent[path[-1]] = base64.b64encode(bytes(raw)).decode()
    sig = tmp_path / f"{which}.sig"
    sig.write_text(json.dumps(doc))
    verifier = (load_verifier(certificate_chain=[oms_fixtures / "keys" / "ca-cert.pem"]) if which == "certificate"
                else load_verifier(identity=FIXTURE_IDENTITY, issuer=FIXTURE_ISSUER,
                                   trust_config=oms_fixtures / "sigstore-trust-config.json"))
    model = tmp_path / which
    if not model.exists():
        shutil.copytree(oms_fixtures / which, model)
    try:
        verify_model(model, signature=sig, verifier=verifier)
    except GuardError as exc:
        assert exc.exit_code == 1, exc
    else:
        # Only sigstore-python's timestamp handling tolerates an edit: an RFC 3161 timestamp that does not
        # verify is skipped because the Rekor integrated time already satisfies the threshold (docs/signing.md).
        assert which == "sigstore" and "rfc3161Timestamps" in path, path


# Edits the byte-level fuzzing found verifying (or crashing) before the bundle parser became strict.
@pytest.mark.parametrize("edit", ["rename-keyid", "keyid-value", "rename-tlog-entries", "rename-hint", "extra-field",
                                  "non-canonical-base64", "duplicate-key"])
def test_bundle_edits_that_change_the_document_never_verify(oms_fixtures, tmp_path, edit):
    import base64
    import json

    text = (oms_fixtures / "elliptic-key" / "model.sig").read_text()
    doc = json.loads(text)
    sig = doc["dsseEnvelope"]["signatures"][0]
    if edit == "rename-keyid":
        sig["kfyid"] = sig.pop("keyid")
    elif edit == "keyid-value":
        sig["keyid"] = "1"
    elif edit == "rename-tlog-entries":
        doc["verificationMaterial"]["tlogEntriez"] = doc["verificationMaterial"].pop("tlogEntries")
    elif edit == "rename-hint":
        doc["verificationMaterial"]["publicKey"] = {"}int": doc["verificationMaterial"]["publicKey"]["hint"]}
    elif edit == "extra-field":
        doc["messageSignature"] = {}
    elif edit == "non-canonical-base64":
        raw = base64.b64decode(sig["sig"])
        canonical = base64.b64encode(raw).decode()
        assert canonical.endswith("=")  # a padded encoding has bits the decoder ignores
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = canonical.rstrip("=")[-1]
        twin = next(c for c in alphabet if c != last and base64.b64decode(canonical.rstrip("=")[:-1] + c
                                                                          + "=" * canonical.count("=")) == raw)
        sig["sig"] = canonical.rstrip("=")[:-1] + twin + "=" * canonical.count("=")
    text = json.dumps(doc)
    if edit == "duplicate-key":
        text = text.replace('"mediaType":', '"mediaType": "x", "mediaType":', 1)
    model = tmp_path / "model"
    shutil.copytree(oms_fixtures / "elliptic-key", model)
    (tmp_path / "edited.sig").write_text(text)
    verifier = load_verifier(public_key=oms_fixtures / "keys" / "signing-key-pub.pem")
    with pytest.raises(GuardError) as info:
        verify_model(model, signature=tmp_path / "edited.sig", verifier=verifier, ignore_paths=["ignore-me"])
    assert info.value.exit_code == 1


def test_certificate_with_an_invalid_x509_version_is_a_failed_verification(oms_fixtures, tmp_path):
    import base64
    import json

    doc = json.loads((oms_fixtures / "certificate" / "model.sig").read_text())
    leaf = bytearray(base64.b64decode(doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"]))
    version = leaf.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT INTEGER 2 (v3)
    leaf[version + 4] = 122
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = base64.b64encode(leaf).decode()
    model = tmp_path / "model"
    shutil.copytree(oms_fixtures / "certificate", model)
    (tmp_path / "edited.sig").write_text(json.dumps(doc))
    with pytest.raises(GuardError) as info:
        verify_model(model, signature=tmp_path / "edited.sig", ignore_paths=["ignore-me"],
                     verifier=load_verifier(certificate_chain=[oms_fixtures / "keys" / "ca-cert.pem"]))
    assert info.value.exit_code == 1
