"""Verifying a model directory against an OMS signature, stricter than OMS by default.

Order: read the bundle -> the method checks signature and trust -> parse the signed statement ->
walk the directory (symlinks, special files, unsafe names fail) -> hash it the way the signature says ->
compare name by name. Empty signatures, extra files, missing files and changed files all fail, and the
message names each file with both hex digests.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence

from guard.errors import GuardError, InputError, VerificationError
from guard.signing import _files
from guard.signing.bundle import Bundle, read_bundle
from guard.signing.hashing import HashedModel, HashJob, hash_model
from guard.signing.manifest import Manifest, require_match
from guard.signing.methods import SignedContent, Verifier
from guard.signing.statement import parse_statement


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    model_dir: pathlib.Path
    signature: pathlib.Path
    method: str
    signer: str
    root_digest: str  # OMS subject digest (sha256 over the resource digests)
    hash_type: str
    serialization: str
    files: tuple[str, ...]
    total_bytes: int
    legacy_predicate: bool
    model_name: str = ""  # the name the signed statement gives the model (its subject)
    read: str | None = None  # open_verified_model: where the verified bytes are read ("in place", "private copy: why")

    def to_json(self) -> dict:
        data = {"verified": True, "model_dir": str(self.model_dir), "signature": str(self.signature),
                "method": self.method, "signer": self.signer, "root_digest": f"sha256:{self.root_digest}",
                "hash_type": self.hash_type, "serialization": self.serialization, "files": list(self.files),
                "bytes": self.total_bytes, "legacy_predicate": self.legacy_predicate,
                "model_name": self.model_name}
        if self.read is not None:
            data["read"] = self.read
        return data


def load_verifier(*, public_key: str | os.PathLike | None = None,
                  certificate_chain: Sequence[str | os.PathLike] = (), identity: str | None = None,
                  issuer: str | None = None, trust_config: str | os.PathLike | None = None, staging: bool = False,
                  certificate_time: str = "now", allow_legacy: bool = False) -> Verifier:
    """Exactly one method: `public_key`; `certificate_chain` (trust anchors); or `identity` + `issuer` (keyless).
    `allow_legacy`: also accept model_signing 0.2's forms (off by default)."""
    check_verifier_options(public_key=public_key, certificate_chain=certificate_chain, identity=identity,
                           issuer=issuer, trust_config=trust_config, staging=staging)
    if public_key is not None:
        from guard.signing.method_key import KeyVerifier

        return KeyVerifier.from_file(public_key, allow_legacy=allow_legacy)
    if certificate_chain:
        from guard.signing.method_certificate import CertificateVerifier

        return CertificateVerifier.from_files(certificate_chain, check_time=certificate_time, allow_legacy=allow_legacy)
    from guard.signing.method_sigstore import SigstoreVerifier

    return SigstoreVerifier(identity=identity or "", issuer=issuer or "", trust_config=trust_config, staging=staging,
                            allow_legacy=allow_legacy)


def check_verifier_options(*, public_key=None, certificate_chain=(), identity=None, issuer=None, trust_config=None,
                           staging=False) -> str:
    """Cheap argument checks (no imports, no I/O); returns the method name or raises InputError (exit 2)."""
    chosen = [name for name, on in (("--key", public_key is not None), ("--certificate-chain", bool(certificate_chain)),
                                    ("--identity/--issuer", bool(identity or issuer))) if on]
    if len(chosen) != 1:
        raise InputError(f"choose exactly one verification method (--key, --certificate-chain, or --identity with "
                         f"--issuer); got {', '.join(chosen) or 'none'}", rule="verify-method")
    if (trust_config is not None or staging) and not (identity or issuer):
        raise InputError("--trust-config and --staging only apply to keyless (--identity/--issuer) verification",
                         rule="verify-method")
    if (identity or issuer) and not (identity and issuer):
        raise InputError("keyless verification needs both --identity and --issuer", rule="sigstore-identity")
    return {"--key": "key", "--certificate-chain": "certificate", "--identity/--issuer": "sigstore"}[chosen[0]]


def verify_model(model_dir: str | os.PathLike, *, signature: str | os.PathLike | None = None,
                 verifier: Verifier | Callable[[], Verifier], ignore_paths: Iterable[str | os.PathLike] = ()
                 ) -> VerificationResult:
    """Raise VerificationError (exit 1) unless `model_dir` is exactly what `signature` signed.

    `verifier` may also be a zero-argument callable returning one (e.g. `lambda: load_verifier(...)`):
    it is then built while the files hash, so importing cryptography and loading keys cost no wall time.
    Hashing starts speculatively from the not-yet-verified statement; its result is used only if the
    verified statement asks for exactly the same hashing, and nothing is trusted before the signature
    checks out.
    """
    root, sig_path = _locate(model_dir, signature)
    bundle = read_bundle(sig_path)
    ignore_paths = list(ignore_paths)
    job = _speculative_job(root, sig_path, bundle.envelope.payload, ignore_paths)
    try:
        verifier = verifier if isinstance(verifier, Verifier) else verifier()
        content, manifest, relpaths = _check_bundle(root, sig_path, bundle, verifier, ignore_paths)
        if job is not None and job.plan == manifest.serialization.plan and job.relpaths == relpaths:
            hashed = job.result()
        else:
            if job is not None:
                job.cancel()
            job = None
            hashed = hash_model(root, relpaths, plan=manifest.serialization.plan)
    except BaseException:
        if job is not None:
            job.cancel()
        raise
    return finish(root, sig_path, verifier, content, manifest, hashed)


def check_signature(model_dir: str | os.PathLike, *, signature: str | os.PathLike | None, verifier: Verifier,
                    ignore_paths: Iterable[str | os.PathLike] = ()
                    ) -> tuple[pathlib.Path, pathlib.Path, SignedContent, Manifest, list[str]]:
    """Everything before hashing: signature and trust, the statement, and the files to hash."""
    root, sig_path = _locate(model_dir, signature)
    content, manifest, relpaths = _check_bundle(root, sig_path, read_bundle(sig_path), verifier, ignore_paths)
    return root, sig_path, content, manifest, relpaths


def _locate(model_dir: str | os.PathLike, signature: str | os.PathLike | None) -> tuple[pathlib.Path, pathlib.Path]:
    """The model (a directory, or a single file) and its signature (default: _files.default_signature)."""
    root = pathlib.Path(model_dir)
    return root, pathlib.Path(signature) if signature is not None else _files.default_signature(root)


def _check_bundle(root: pathlib.Path, sig_path: pathlib.Path, bundle: Bundle, verifier: Verifier,
                  ignore_paths: Iterable[str | os.PathLike]) -> tuple[SignedContent, Manifest, list[str]]:
    content = verifier.verify(bundle)
    manifest = parse_statement(content.payload)
    if manifest.legacy and not verifier.allow_legacy:
        raise VerificationError("verification failed: a model_signing 0.2 statement (predicate "
                                "https://model_signing/Digests/v0.1), a legacy form guard accepts only with "
                                "--allow-legacy (API: allow_legacy=True)", rule="verify-legacy")
    if content.legacy_encoding and not manifest.legacy:
        raise VerificationError("verification failed: a v1.0 statement signed with model_signing 0.2's legacy "
                                "DSSE encoding", rule="verify-signature")
    if not manifest.resources:
        raise VerificationError("verification failed: the signature covers no files (guard refuses empty models)",
                                rule="verify-empty")
    return content, manifest, _covered(root, sig_path, manifest, ignore_paths)


def _covered(root: pathlib.Path, sig_path: pathlib.Path, manifest: Manifest,
             ignore_paths: Iterable[str | os.PathLike]) -> list[str]:
    return _files.covered_files(root, ignore=uncovered(root, sig_path, manifest, ignore_paths), verifying=True)


def uncovered(root: pathlib.Path, sig_path: pathlib.Path, manifest: Manifest,
              ignore_paths: Iterable[str | os.PathLike]) -> list[str]:
    """The names a verification leaves out: the signed ignore list, the caller's, and the signature itself."""
    ignore = list(manifest.serialization.ignore_paths) + _files.normalize_ignore(ignore_paths)
    inside = None if _files.is_single_file(root) else _files.relative_inside(sig_path, root)
    if inside is not None:
        ignore.append(inside)
    return ignore


def _speculative_job(root: pathlib.Path, sig_path: pathlib.Path, payload: bytes,
                     ignore_paths: list) -> HashJob | None:
    """Start hashing as the unverified statement says; any problem is left to the verified path to report."""
    try:
        manifest = parse_statement(payload)
        if not manifest.resources:
            return None
        return HashJob(root, _covered(root, sig_path, manifest, ignore_paths), plan=manifest.serialization.plan)
    except GuardError:
        return None


def finish(root: pathlib.Path, sig_path: pathlib.Path, verifier: Verifier, content: SignedContent,
           manifest: Manifest, hashed: HashedModel) -> VerificationResult:
    require_match(manifest, hashed.digests)
    return VerificationResult(
        model_dir=root, signature=sig_path, method=verifier.method, signer=content.signer,
        root_digest=manifest.root_digest(), hash_type=manifest.serialization.hash_type,
        serialization=manifest.serialization.method, files=tuple(sorted(hashed.sizes)),
        total_bytes=hashed.total_bytes, legacy_predicate=manifest.legacy, model_name=manifest.model_name)
