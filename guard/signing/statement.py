"""in-toto Statement v1 with the OMS predicate: writing, and strict parsing (v1.0 and legacy v0.2).

Parsing trusts nothing: every field is type-checked, numbers are cast (protobuf Struct turns
`shard_size` into a float), names must stay inside the model root, and the subject's root digest
must equal the digest recomputed from the resources.
"""

from __future__ import annotations

import json
import re

from guard.artifacts.paths import check_relname
from guard.errors import InputError, VerificationError
from guard.signing._files import SINGLE_FILE
from guard.signing.hashing import METHODS, MIN_SHARD_SIZE, VERIFY_HASH_TYPES
from guard.signing.manifest import DEFAULT_IGNORE_PATHS, Manifest, Resource, Serialization

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
LEGACY_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"
RULE = "verify-statement"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


def statement_bytes(manifest: Manifest) -> bytes:
    """The DSSE payload: a Statement v1 whose subject is the root digest, resources in the predicate."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.model_name, "digest": {"sha256": manifest.root_digest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": manifest.serialization.to_json(),
            "resources": [{"name": r.name, "algorithm": r.algorithm, "digest": r.digest} for r in manifest.resources],
        },
    }
    return json.dumps(statement, indent=2).encode("utf-8")


def parse_statement(payload: bytes) -> Manifest:
    """Decode a (signature-checked) DSSE payload into a Manifest; VerificationError on anything odd."""
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"payload is not JSON: {exc}") from None
    _require(isinstance(statement, dict), "statement is not a JSON object")
    _require(statement.get("_type") == STATEMENT_TYPE,
             f"statement type {statement.get('_type')!r} is not {STATEMENT_TYPE}")
    predicate_type = statement.get("predicateType")
    if predicate_type == PREDICATE_TYPE:
        return _parse_v1(statement)
    if predicate_type == LEGACY_PREDICATE_TYPE:
        return _parse_legacy(statement)
    raise VerificationError(f"verification failed: wrong predicate type {predicate_type!r} "
                            f"(expected {PREDICATE_TYPE} or legacy {LEGACY_PREDICATE_TYPE})", rule="verify-predicate")


def _parse_v1(statement: dict) -> Manifest:
    subjects = statement.get("subject")
    _require(isinstance(subjects, list) and len(subjects) == 1, "expected exactly one subject")
    subject = subjects[0]
    _require(isinstance(subject, dict) and isinstance(subject.get("digest"), dict), "subject has no digest")
    root = subject["digest"].get("sha256")
    _require(isinstance(root, str) and _HEX64.fullmatch(root), "subject digest is not a sha256 hex string")
    name = subject.get("name", "")
    _require(isinstance(name, str), "subject name is not a string")
    predicate = statement.get("predicate")
    _require(isinstance(predicate, dict), "predicate is not an object")
    serialization = _parse_serialization(predicate.get("serialization"))
    resources = _parse_resources(predicate.get("resources"), serialization)
    manifest = Manifest(model_name=name, resources=tuple(sorted(resources, key=lambda r: r.name)),
                        serialization=serialization)
    # OMS hashes the digests in the order the predicate lists them.
    recomputed = Manifest(model_name=name, resources=tuple(resources), serialization=serialization).root_digest()
    _require(recomputed == root, f"root digest {root} does not match the resources (they hash to {recomputed})")
    return manifest


def _parse_serialization(record: object) -> Serialization:
    _require(isinstance(record, dict), "predicate has no serialization record")
    method = record.get("method")
    _require(method in METHODS, f"unknown serialization method {method!r}")
    hash_type = record.get("hash_type")
    _require(hash_type in VERIFY_HASH_TYPES, f"unsupported hash type {hash_type!r}")
    allow_symlinks = record.get("allow_symlinks", False)
    _require(isinstance(allow_symlinks, bool), "allow_symlinks is not a boolean")
    shard_size = None
    if method == "shards":
        raw = record.get("shard_size")
        _require(isinstance(raw, (int, float)) and not isinstance(raw, bool) and float(raw).is_integer(),
                 f"shard_size {raw!r} is not an integer")
        shard_size = int(raw)
        _require(shard_size >= MIN_SHARD_SIZE, f"shard_size {shard_size} is below {MIN_SHARD_SIZE}")
    ignore = record.get("ignore_paths", [])
    _require(isinstance(ignore, list) and all(isinstance(p, str) for p in ignore), "ignore_paths is not a list of strings")
    ignore_paths = []
    for path in ignore:
        clean = path.rstrip("/")
        problem = _name_problem(clean)
        _require(problem is None, f"ignore path {path!r} is unsafe ({problem})")
        ignore_paths.append(clean)
    return Serialization(method=method, hash_type=hash_type, allow_symlinks=allow_symlinks,
                         shard_size=shard_size, ignore_paths=tuple(ignore_paths))


def _parse_resources(raw: object, serialization: Serialization) -> list[Resource]:
    _require(isinstance(raw, list), "predicate has no resources list")
    algorithm = serialization.plan.algorithm_name()
    resources: list[Resource] = []
    seen: set[str] = set()
    for item in raw:
        _require(isinstance(item, dict), "a resource is not an object")
        name, alg, digest = item.get("name"), item.get("algorithm"), item.get("digest")
        _require(isinstance(name, str) and isinstance(alg, str) and isinstance(digest, str),
                 "a resource lacks name, algorithm or digest")
        _require(alg == algorithm, f"resource {name!r} uses algorithm {alg!r}, the serialization says {algorithm!r}")
        _require(bool(_HEX.fullmatch(digest)), f"resource {name!r} digest is not lowercase hex")
        _check_resource_name(name, serialization)
        _require(name not in seen, f"resource {name!r} appears twice")
        seen.add(name)
        resources.append(Resource(name=name, algorithm=alg, digest=digest))
    paths = {_resource_path(r.name, serialization) for r in resources}
    _require(SINGLE_FILE not in paths or paths == {SINGLE_FILE},
             "a single-file manifest (resource '.') names other files too")
    return resources


def _resource_path(name: str, serialization: Serialization) -> str:
    return name.rsplit(":", 2)[0] if serialization.method == "shards" else name


def _check_resource_name(name: str, serialization: Serialization) -> None:
    path = name
    if serialization.method == "shards":
        parts = name.rsplit(":", 2)
        _require(len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit(),
                 f"shard resource {name!r} is not path:start:end")
        path, start, end = parts[0], int(parts[1]), int(parts[2])
        size = serialization.shard_size
        _require(start % size == 0 and start <= end <= start + size,
                 f"shard resource {name!r} does not fit shard size {size}")
    problem = None if path == SINGLE_FILE else _name_problem(path)  # "." is the model itself, a single file
    if problem:
        raise VerificationError(f"verification failed: signed name {name!r} escapes the model root ({problem})",
                                rule="verify-unsafe-name")


def _parse_legacy(statement: dict) -> Manifest:
    """v0.2: one subject per file, sha256 only, no serialization record and no root digest."""
    subjects = statement.get("subject")
    _require(isinstance(subjects, list) and subjects, "legacy statement has no subjects")
    serialization = Serialization(method="files", hash_type="sha256", ignore_paths=DEFAULT_IGNORE_PATHS)
    resources: list[Resource] = []
    seen: set[str] = set()
    for subject in subjects:
        _require(isinstance(subject, dict) and isinstance(subject.get("digest"), dict), "a legacy subject has no digest")
        name, digest = subject.get("name"), subject["digest"].get("sha256")
        _require(isinstance(name, str) and isinstance(digest, str) and bool(_HEX64.fullmatch(digest)),
                 "a legacy subject lacks a name or sha256 digest")
        _check_resource_name(name, serialization)
        _require(name not in seen, f"legacy subject {name!r} appears twice")
        seen.add(name)
        resources.append(Resource(name=name, algorithm="sha256", digest=digest))
    return Manifest(model_name="", resources=tuple(sorted(resources, key=lambda r: r.name)),
                    serialization=serialization, legacy=True)


def _name_problem(name: str) -> str | None:
    try:
        check_relname(name)
    except InputError as exc:
        return exc.message
    return None


def _require(condition: object, message: str) -> None:
    if not condition:
        raise _fail(message)


def _fail(message: str) -> VerificationError:
    return VerificationError(f"verification failed: malformed signed statement: {message}", rule=RULE)
