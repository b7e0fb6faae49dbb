"""Provenance of a merged model: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

`guard safe-merge` writes `guard_provenance.json` into the merged model: a Sigstore bundle v0.3 (the
same envelope as an OMS signature: DSSE, in-toto payload) signed by the merge's signer, whose statement
names every merged file with its sha256 (subjects) and records:
- buildDefinition.externalParameters: the merge config and the policy (name, path, sha256 of the file);
- buildDefinition.resolvedDependencies: every input with its OMS root digest, who signed it, the public
  material of the signer guard trusted (key PEM, trust anchors, or Sigstore identity), its signature
  file, and the lock key id if it was unlocked;
- runDetails: guard's version, the device, start/finish times, and the decision record (every check).
The OMS signature (`model.sig`) covers every other file and records `guard_provenance.json` in its
ignore list (an attestation beside the model, as OMS verifiers apply that list by themselves); the
provenance's subjects are exactly the digests that signature covers.

`verify_provenance` checks it all again: the OMS signature over the files, the provenance signature by
the same signer, each subject against the signed file digests, and, for inputs still at hand, each
input's own signature and root digest.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import uuid
from collections.abc import Mapping
from typing import Any

from guard.errors import VerificationError

PROVENANCE_FILE = "guard_provenance.json"
OMS_SIGNATURE = "model.sig"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:guard-merge:safe-merge:v1"
BUILDER_ID = "urn:guard-merge:builder:safe-merge"
RULE = "provenance"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build_statement(*, subjects: Mapping[str, str], config: dict[str, Any], policy: dict[str, Any],
                    inputs: list[dict[str, Any]], record: dict[str, Any], device: str, started: str) -> bytes:
    from guard import __version__
    from guard.signing.statement import STATEMENT_TYPE

    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"config": config, "policy": policy},
                "internalParameters": {"device": device},
                "resolvedDependencies": inputs,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"guard": __version__}},
                "metadata": {"invocationId": str(uuid.uuid4()), "startedOn": started, "finishedOn": now()},
                "byproducts": [{"name": "decision-record", "mediaType": "application/json",
                                "annotations": {"checks": record["checks"], "merge": record.get("merge")}}],
            },
        },
    }
    return json.dumps(statement, indent=2, sort_keys=True).encode("utf-8")


def dependency(subject) -> dict[str, Any]:
    """A resolvedDependencies entry for a CheckedInput (guard.pipeline.checks)."""
    annotations: dict[str, Any] = {"role": subject.role, "digest_kind": "OMS root digest (sha256 over file digests)"}
    hub = subject.label.startswith("hf:")
    entry: dict[str, Any] = {"name": subject.label, "uri": subject.label if hub else str(subject.source.resolve())}
    if hub:
        annotations["fetched_to"] = str(subject.source.resolve())
    if subject.verification is not None:
        entry["digest"] = {"sha256": subject.verification.root_digest}
        annotations.update(signer=subject.verification.signer, trusted_signer=subject.trusted.name,
                           verifier=subject.trusted.material, signature_file=str(subject.signature.resolve()),
                           files=len(subject.verification.files))
    else:
        annotations["signer"] = None  # accepted unsigned (a warn-only policy)
    if subject.unlocked_with:
        annotations["unlocked_with_lock_key"] = subject.unlocked_with
    entry["annotations"] = annotations
    return entry


def signed_digests(signature: pathlib.Path) -> dict[str, str]:
    """File name -> sha256 from an OMS signature guard has just written (files, sha256)."""
    from guard.signing.bundle import read_bundle
    from guard.signing.statement import parse_statement

    manifest = parse_statement(read_bundle(signature).envelope.payload)
    return {r.name: r.digest for r in manifest.resources}


def write_provenance(model_dir: pathlib.Path, statement: bytes, signer) -> pathlib.Path:
    from guard.artifacts.atomic import write_atomically

    path = model_dir / PROVENANCE_FILE
    write_atomically(path, signer.sign(statement))
    return path


def _fail(message: str, *, path=None) -> VerificationError:
    return VerificationError(f"provenance check failed: {message}", path=path, rule=RULE)


def _signed_statement(path: pathlib.Path, verifier) -> dict:
    from guard.signing.bundle import read_bundle

    if not path.is_file():
        raise _fail(f"no {path.name} (not a guard safe-merge output, or it was removed)", path=path)
    content = verifier.verify(read_bundle(path))
    try:
        return json.loads(content.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"the signed payload is not JSON: {exc}", path=path) from None


def verify_provenance(model_dir: str | os.PathLike, *, verifier, check_inputs: bool = True,
                      input_paths: Mapping[str, str | os.PathLike] | None = None) -> dict[str, Any]:
    """Raise VerificationError unless the merged model, its provenance and (when at hand) its inputs check out."""
    from guard.signing.statement import STATEMENT_TYPE, parse_statement
    from guard.signing.verify import verify_model

    root = pathlib.Path(model_dir)
    result = verify_model(root, verifier=verifier)  # every file but the provenance, as signed
    oms = _signed_statement(root / OMS_SIGNATURE, verifier)
    manifest = parse_statement(json.dumps(oms).encode("utf-8"))
    if manifest.serialization.method != "files" or manifest.serialization.hash_type != "sha256":
        raise _fail("the model's signature must hash files with sha256 to pair them with provenance subjects")
    signed = {r.name: r.digest for r in manifest.resources}
    statement = _signed_statement(root / PROVENANCE_FILE, verifier)
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise _fail(f"not an in-toto statement with predicate {PREDICATE_TYPE}", path=root / PROVENANCE_FILE)
    subjects = {s.get("name"): (s.get("digest") or {}).get("sha256") for s in statement.get("subject", [])}
    expected = {name: digest for name, digest in signed.items() if name != PROVENANCE_FILE}
    if subjects != expected:
        differ = sorted(n for n in set(subjects) | set(expected) if subjects.get(n) != expected.get(n))
        raise _fail(f"the provenance subjects do not match the signed files: {differ[:5]}", path=root / PROVENANCE_FILE)
    build = statement["predicate"]["buildDefinition"]
    inputs = []
    for dep in build.get("resolvedDependencies", []):
        inputs.append(_check_input(dep, check_inputs=check_inputs, input_paths=input_paths or {}))
    return {"verified": True, "model_dir": str(root), "signer": result.signer, "files": len(expected),
            "root_digest": f"sha256:{result.root_digest}", "policy": build["externalParameters"].get("policy"),
            "merge_method": build["externalParameters"].get("config", {}).get("merge_method"),
            "builder": statement["predicate"]["runDetails"]["builder"], "inputs": inputs,
            "checks": len(statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["checks"])}


def _check_input(dep: dict, *, check_inputs: bool, input_paths: Mapping) -> dict[str, Any]:
    from guard.pipeline.trust import verifier_from_material
    from guard.signing.verify import verify_model

    name = dep.get("name")
    notes = dep.get("annotations", {})
    recorded = (dep.get("digest") or {}).get("sha256")
    entry = {"name": name, "role": notes.get("role"), "signer": notes.get("signer"),
             "root_digest": None if recorded is None else f"sha256:{recorded}"}
    uri = dep.get("uri", "")
    if name in input_paths:
        path = pathlib.Path(input_paths[name])
    elif uri.startswith("hf:"):
        from guard.pipeline.inputs import cached_dir

        path = cached_dir(uri)  # the Hub revision in guard's cache, if still there (no network)
    else:
        path = pathlib.Path(uri)
    if not check_inputs or recorded is None:
        entry["reverified"] = False
        entry["reason"] = "not asked" if not check_inputs else "accepted unsigned at merge time"
        return entry
    if not path.is_dir():
        entry["reverified"] = False
        entry["reason"] = f"not at hand ({path})"
        return entry
    signature = notes.get("signature_file")
    if signature is None or not pathlib.Path(signature).is_file():
        signature = None  # default: <input>/model.sig
    result = verify_model(path, signature=signature, verifier=verifier_from_material(notes["verifier"]))
    if result.root_digest != recorded:
        raise _fail(f"input {name} at {path} now has root digest sha256:{result.root_digest}, the merge used "
                    f"sha256:{recorded}")
    entry["reverified"] = True
    entry["path"] = str(path)
    return entry
