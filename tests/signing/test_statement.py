from __future__ import annotations

import hashlib
import json

import pytest

from guard.errors import VerificationError
from guard.signing.manifest import Serialization, build_manifest
from guard.signing.statement import LEGACY_PREDICATE_TYPE, PREDICATE_TYPE, parse_statement, statement_bytes

DIGESTS = {"b.bin": "22" * 32, "a.bin": "11" * 32}


def _statement(serialization=None) -> dict:
    serialization = serialization or Serialization(method="files", hash_type="sha256", ignore_paths=("model.sig",))
    return json.loads(statement_bytes(build_manifest("m", DIGESTS, serialization)))


def test_round_trip_and_oms_root_digest():
    statement = _statement()
    assert statement["predicateType"] == PREDICATE_TYPE
    assert [r["name"] for r in statement["predicate"]["resources"]] == ["a.bin", "b.bin"]
    root = hashlib.sha256(bytes.fromhex("11" * 32) + bytes.fromhex("22" * 32)).hexdigest()
    assert statement["subject"][0]["digest"]["sha256"] == root
    manifest = parse_statement(json.dumps(statement).encode())
    assert manifest.as_dict() == DIGESTS
    assert manifest.serialization.ignore_paths == ("model.sig",)


def test_float_shard_size_from_protobuf_is_cast():
    statement = _statement(Serialization(method="shards", hash_type="sha256", shard_size=1 << 20))
    statement["predicate"]["resources"] = [{"name": "a.bin:0:100", "algorithm": "sha256-sharded-1048576",
                                            "digest": "11" * 32}]
    statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(bytes.fromhex("11" * 32)).hexdigest()
    statement["predicate"]["serialization"]["shard_size"] = 1048576.0
    manifest = parse_statement(json.dumps(statement).encode())
    assert manifest.serialization.shard_size == 1048576
    assert manifest.relpaths() == ["a.bin"]


@pytest.mark.parametrize("edit, reason", [
    (lambda s: s.update(predicateType="https://example.com/other"), "wrong predicate type"),
    (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "statement type"),
    (lambda s: s["subject"][0]["digest"].update(sha256="ab" * 32), "does not match the resources"),
    (lambda s: s["predicate"]["resources"][0].update(name="../etc/passwd"), "escapes the model root"),
    (lambda s: s["predicate"]["resources"][0].update(name="/abs/path"), "escapes the model root"),
    (lambda s: s["predicate"]["resources"][0].update(algorithm="md5"), "uses algorithm"),
    (lambda s: s["predicate"]["resources"][0].update(digest="XYZ"), "not lowercase hex"),
    (lambda s: s["predicate"]["serialization"].update(hash_type="md5"), "unsupported hash type"),
    (lambda s: s["predicate"]["serialization"].update(ignore_paths=["../up"]), "unsafe"),
    (lambda s: s["predicate"]["resources"].append(dict(s["predicate"]["resources"][0])), "appears twice"),
    (lambda s: s.update(subject=[]), "exactly one subject"),
])
def test_malformed_statements_fail_with_the_reason(edit, reason):
    statement = _statement()
    edit(statement)
    with pytest.raises(VerificationError, match=reason):
        parse_statement(json.dumps(statement).encode())


def test_not_json_payload():
    with pytest.raises(VerificationError, match="not JSON"):
        parse_statement(b"\xff\xfe")


def test_legacy_v02_predicate_is_accepted():
    legacy = {"_type": "https://in-toto.io/Statement/v1", "predicateType": LEGACY_PREDICATE_TYPE,
              "subject": [{"name": "b.bin", "digest": {"sha256": "22" * 32}},
                          {"name": "a.bin", "digest": {"sha256": "11" * 32}}],
              "predicate": {}}
    manifest = parse_statement(json.dumps(legacy).encode())
    assert manifest.legacy and manifest.as_dict() == DIGESTS
    assert manifest.serialization.method == "files" and manifest.serialization.hash_type == "sha256"
