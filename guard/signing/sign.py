"""Signing a model directory: pick a method (load_signer), hash, build the statement, write the bundle."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterable, Sequence

from guard.errors import InputError
from guard.signing import _files
from guard.signing.hashing import DEFAULT_SHARD_SIZE, HASH_TYPES, HashJob, HashPlan
from guard.signing.manifest import DEFAULT_IGNORE_PATHS, Serialization, build_manifest
from guard.signing.methods import Signer
from guard.signing.statement import statement_bytes


def load_signer(*, key: str | os.PathLike | None = None, key_passphrase: bytes | str | None = None,
                certificate: str | os.PathLike | None = None, certificate_chain: Sequence[str | os.PathLike] = (),
                sigstore: bool = False, identity_token: str | None = None, staging: bool = False,
                trust_config: str | os.PathLike | None = None) -> Signer:
    """Exactly one method: `key`; `key` + `certificate` (+ chain); or `sigstore` (keyless)."""
    if isinstance(key_passphrase, str):
        key_passphrase = key_passphrase.encode("utf-8")
    if sigstore:
        if key is not None or certificate is not None:
            raise InputError("choose one signing method: --sigstore, or a key (with an optional certificate)",
                             rule="sign-method")
        from guard.signing.method_sigstore import SigstoreSigner

        return SigstoreSigner(identity_token=identity_token, staging=staging, trust_config=trust_config)
    if identity_token or staging or trust_config:
        raise InputError("--identity-token, --staging and --trust-config only apply to --sigstore", rule="sign-method")
    if key is None:
        raise InputError("no signing method: pass a private key, a key + --certificate, or --sigstore",
                         rule="sign-method")
    if certificate is not None:
        from guard.signing.method_certificate import CertificateSigner

        return CertificateSigner.from_files(key=key, passphrase=key_passphrase, certificate=certificate,
                                            chain=certificate_chain)
    if certificate_chain:
        raise InputError("--certificate-chain needs --certificate", rule="sign-method")
    from guard.signing.method_key import KeySigner

    return KeySigner.from_file(key, passphrase=key_passphrase)


def sign_model(model_dir: str | os.PathLike, *, signer: Signer | Callable[[], Signer], signature_path: str | os.PathLike | None = None,
               hash_algorithm: str = "sha256", ignore_paths: Iterable[str | os.PathLike] = (),
               serialization: str = "files", shard_size: int | None = None) -> pathlib.Path:
    """Sign every file under `model_dir` (except ignored ones and the signature itself); return the signature path.
    `model_dir` may also be a single file (OMS names it "." in the manifest).

    The default signature path is `<model_dir>/model.sig`, or `<file>.sig` beside a single-file model.
    The ignore list actually used is recorded in
    the signed predicate, so verifiers (guard's and OMS's) apply the same list by themselves.
    `signer` may be a zero-argument callable returning the Signer: it is then built while the files hash
    (importing cryptography and decrypting the key cost no wall time).
    """
    root = pathlib.Path(model_dir)
    if hash_algorithm not in HASH_TYPES:
        raise InputError(f"unknown hash algorithm {hash_algorithm!r} (choose {', '.join(HASH_TYPES)})",
                         rule="sign-hash-type")
    if serialization == "shards" and shard_size is None:
        shard_size = DEFAULT_SHARD_SIZE
    plan = HashPlan(method=serialization, hash_type=hash_algorithm,
                    shard_size=shard_size if serialization == "shards" else None)
    signature = pathlib.Path(signature_path) if signature_path is not None else _files.default_signature(root)
    ignore = list(DEFAULT_IGNORE_PATHS) + _files.normalize_ignore(ignore_paths)
    if not _files.is_single_file(root):
        inside = _files.relative_inside(signature, root)
        if inside is not None:
            ignore.append(inside)
    ignore = list(dict.fromkeys(ignore))
    relpaths = _files.covered_files(root, ignore=ignore, verifying=False)
    if not relpaths:
        raise InputError("the model directory has no files to sign (guard refuses empty models)", path=root,
                         rule="sign-empty")
    if signature.is_dir():
        raise InputError("the signature path is a directory", path=signature, rule="path-not-file")
    if not signature.parent.is_dir():
        raise InputError("the signature's directory does not exist", path=signature.parent, rule="path-not-found")
    job = HashJob(root, relpaths, plan=plan)
    try:
        if not isinstance(signer, Signer):
            signer = signer()
        hashed = job.result()
    except BaseException:
        job.cancel()
        raise
    record = Serialization(method=plan.method, hash_type=plan.hash_type, allow_symlinks=False,
                           shard_size=plan.shard_size, ignore_paths=tuple(ignore))
    manifest = build_manifest(root.resolve().name, hashed.digests, record)
    text = signer.sign(statement_bytes(manifest))
    from guard.artifacts.atomic import write_atomically

    write_atomically(signature, text)
    return signature
