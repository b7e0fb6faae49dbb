"""The per-input check sequence, ONE function for `guard safe-merge` and the Hub audit alike.

    with check_input(path, policy=loaded, trusted=verifiers, label="./expert-a", base=checked_base) as subject:
        subject.checks      # every check, in order, for the decision record
        subject.refused     # True if any check refused
        subject.model       # a ModelDir over the bytes that passed (verified, or an unlocked copy)

In order, stopping at the first refusal (later checks are recorded as skipped):
1. artifacts: strict reading of the directory (safetensors headers, shard index, config, every file
   sniffed by content), with the policy's severities; refused findings refuse.
2. signature: `<input>/model.sig` (or the given file) against the trusted signers (policy + command
   line). The accepted signer's verifier then re-hashes every covered file (guard.signing.open_verified_model:
   in place when nobody else can change the input, else into a private copy): everything after this step
   reads exactly the bytes that were verified. The artifact checks run again on those bytes.
3. mergelock: MergeLock detection (against the base for non-base inputs, which must be the same
   architecture); a protected input is refused, or unlocked when a lock key is given.
4. stages: each configured stage's `check_input` (probes; see guard.pipeline.stages).

The input's files are fingerprinted before verification (guard.artifacts.identity.file_identity: device,
inode, ctime, mtime, size of each name, not following symlinks); `subject.changed_files()` says which
changed since, so a caller can refuse an input swapped after it was verified. Everything staged is
removed when the context exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from guard.errors import InputError, VerificationError
from guard.pipeline.decision import Check
from guard.pipeline.stages import StageContext

SIGNATURE_NAME = "model.sig"


@dataclasses.dataclass
class CheckedInput:
    label: str
    role: str  # "base" or "model"
    source: pathlib.Path
    checks: list[Check] = dataclasses.field(default_factory=list)
    model: Any = None  # guard.artifacts.ModelDir of what passed; None when refused before it was read
    signature: pathlib.Path | None = None
    verification: Any = None  # guard.signing.VerificationResult
    trusted: Any = None  # the TrustedVerifier that accepted the signature
    unlocked_with: str | None = None  # lock key id
    detection: Any = None  # guard.lock.detect.LockSignature, when MergeLock detection ran (measurements, per layer)
    fingerprints: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return any(c.verdict == "refuse" for c in self.checks)

    def changed_files(self) -> list[str]:
        """Files whose identity (guard.artifacts.identity) changed since the checks, or that vanished."""
        return sorted(rel for rel, before in self.fingerprints.items() if _fingerprint(self.source / rel) != before)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"label": self.label, "role": self.role, "path": str(self.source),
                                "verdict": "refused" if self.refused else "passed"}
        if self.verification is not None:
            data["root_digest"] = f"sha256:{self.verification.root_digest}"
            data["signer"] = self.verification.signer
            data["trusted_signer"] = self.trusted.name
        if self.unlocked_with:
            data["unlocked_with_lock_key"] = self.unlocked_with
        return data


def _fingerprint(path: pathlib.Path) -> tuple[int, ...]:
    from guard.artifacts.identity import file_identity

    try:
        return file_identity(os.lstat(path))
    except OSError:
        return ()


def read_policy_for(policy) -> Any:
    from guard.artifacts import ReadPolicy

    artifacts = policy.policy.artifacts
    return ReadPolicy(severities=artifacts.severities(), scan_nan_inf=artifacts.scan_nan_inf)


@contextlib.contextmanager
def check_input(source: str | os.PathLike, *, policy, trusted: Sequence[Any], label: str | None = None,
                role: str = "model", signature: str | os.PathLike | None = None, base: CheckedInput | None = None,
                lock_key: str | os.PathLike | None = None, stages: Sequence[tuple[Any, Any]] = (), config: Any = None,
                work_dir: str | os.PathLike | None = None) -> Iterator[CheckedInput]:
    """Run every per-input check on `source` (see the module docstring); yields a CheckedInput."""
    source = pathlib.Path(source)
    subject = CheckedInput(label=label or str(source), role=role, source=source)
    with contextlib.ExitStack() as stack:
        steps = [("artifacts", _artifacts), ("signature", _signature), ("mergelock", _mergelock)]
        steps += [(f"stage:{stage.name}", _stage_step(stage, section)) for stage, section in stages]
        for i, (name, step) in enumerate(steps):
            step(subject, policy=policy, trusted=trusted, signature=signature, base=base, lock_key=lock_key,
                 config=config, stack=stack, work_dir=work_dir)
            if subject.refused:
                for skipped, _ in steps[i + 1:]:
                    subject.checks.append(Check(skipped, "skip", "not run: an earlier check refused this input",
                                                input=subject.label))
                break
        yield subject


def _add(subject: CheckedInput, check: str, verdict: str, message: str, **fields) -> None:
    subject.checks.append(Check(check, verdict, message, input=subject.label, **fields))  # type: ignore[arg-type]


def _artifacts(subject: CheckedInput, *, policy, **_) -> None:
    from guard.artifacts import open_model_dir

    if not subject.source.is_dir():  # a merge input is a model directory (config, shards), never a single file
        exists = subject.source.exists()
        raise InputError("not a directory (a merge input is a model directory)" if exists else "no such model directory",
                         path=subject.source, rule="path-not-directory" if exists else "path-not-found")
    from guard.artifacts import list_model_files

    subject.fingerprints = {rel: _fingerprint(subject.source / rel) for rel in list_model_files(subject.source)}
    model = open_model_dir(subject.source, policy=read_policy_for(policy))
    _report_findings(subject, model)
    if not model.tensors and not subject.refused:
        _add(subject, "artifacts", "refuse", "no safetensors weights to merge", rule="no-safetensors")
    subject.model = model


def _report_findings(subject: CheckedInput, model, *, stage: str = "artifacts") -> None:
    refused = [f for f in model.findings if f.severity == "refuse"]
    warned = [f for f in model.findings if f.severity == "warn"]
    for finding in refused + warned:
        _add(subject, stage, finding.severity, finding.message, rule=finding.rule, file=finding.path)
    if not refused and not warned:
        _add(subject, stage, "pass", f"{len(model.files)} files read strictly, {len(model.tensors)} tensors, "
                                     f"no findings that warn or refuse", value=len(model.files))


def _signature(subject: CheckedInput, *, policy, trusted, signature, stack, work_dir, **_) -> None:
    from guard.signing.bundle import read_bundle

    required = policy.policy.signatures.required
    missing_verdict = "refuse" if required else "warn"
    sig_path = pathlib.Path(signature) if signature is not None else subject.source / SIGNATURE_NAME
    subject.signature = sig_path
    if not sig_path.is_file():
        _add(subject, "signature", missing_verdict, f"unsigned: no signature at {sig_path}", rule="signature-missing",
             file=str(sig_path))
        return
    if not trusted:
        _add(subject, "signature", missing_verdict, "no trusted signers: the policy lists none and no --key, "
                                                    "--certificate-chain or --identity/--issuer was given",
             rule="signature-no-trusted-signers", file=str(sig_path))
        return
    try:
        bundle = read_bundle(sig_path)
    except VerificationError as exc:
        _add(subject, "signature", missing_verdict, exc.message, rule=exc.rule, file=str(sig_path))
        return
    accepted, reasons = None, []
    for candidate in trusted:
        try:
            candidate.verifier.verify(bundle)
            accepted = candidate
            break
        except VerificationError as exc:
            reasons.append(f"{candidate.name}: {exc.message}")
    if accepted is None:
        hint = f" (it names key {bundle.public_key_hint})" if bundle.public_key_hint else ""
        _add(subject, "signature", missing_verdict,
             f"signed, but not by a trusted signer{hint}; tried {len(trusted)}: " + "; ".join(reasons)[:500],
             rule="signature-untrusted", file=str(sig_path), value=bundle.kind)
        return
    from guard.signing import open_verified_model

    try:
        model = stack.enter_context(open_verified_model(subject.source, signature=sig_path, verifier=accepted.verifier,
                                                        policy=read_policy_for(policy), staging_dir=work_dir))
    except VerificationError as exc:
        _add(subject, "signature", "refuse", exc.message, rule=exc.rule, file=exc.path or str(sig_path))
        return
    result = model.verification
    subject.model, subject.verification, subject.trusted = model, result, accepted
    _add(subject, "signature", "pass", f"signed by {result.signer} (trusted as {accepted.name}); {len(result.files)} "
                                       f"files, {result.total_bytes} bytes re-hashed, root sha256:{result.root_digest}",
         file=str(sig_path), value=f"sha256:{result.root_digest}")
    # The strict reading again, on the verified bytes that will be merged.
    before = len(subject.checks)
    _report_findings(subject, model)
    if not subject.refused:
        del subject.checks[before:]  # same files, same findings: reported once above


def _mergelock(subject: CheckedInput, *, policy, base, lock_key, stack, work_dir, **_) -> None:
    action = policy.policy.mergelock.action
    required = "mergelock" in policy.policy.required_checks
    if action == "off":
        _add(subject, "mergelock", "skip", "MergeLock detection is off in this policy")
        return
    from guard.lock.protect import LOCK_FILE

    model = subject.model
    declared = any(f.relpath == LOCK_FILE for f in model.files)
    if subject.role == "base":
        # A base is not compared with anything; the base-free heuristic is too weak to refuse on alone.
        flagged, rule, message, value, threshold = declared, "mergelock-declared", (
            f"{LOCK_FILE} declares MergeLock protection" if declared else f"no {LOCK_FILE} (a base is only checked "
                                                                         "for the declaration)"), declared, None
    else:
        from guard.lock.detect import detect_model_dir
        from guard.pipeline.inspect import require_same_architecture

        try:
            if base is not None:
                require_same_architecture(model, base.model)
            found = detect_model_dir(model, None if base is None else base.model)
        except InputError as exc:
            _add(subject, "mergelock", "refuse" if required else "warn",
                 f"MergeLock detection could not run: {exc.message}", rule=exc.rule)
            return
        subject.detection = found
        flagged, rule, message = found.flagged, found.rule, found.message
        m = found.measurements
        if "attention_distance_median" in m:
            value, threshold = round(m["attention_distance_median"], 6), m["thresholds"]["attention_far"]
        else:
            value, threshold = round(m.get("ov_imbalance_median", 0.0), 6), m.get("threshold")
    if not flagged:
        _add(subject, "mergelock", "pass", message, rule=rule, value=value, threshold=threshold)
        return
    if lock_key is None:
        verdict = "refuse" if action == "refuse" else "warn"
        _add(subject, "mergelock", verdict, f"MergeLock-protected: {message}; give its lock key in the config's "
                                            f"guard.lock_keys to merge it", rule=rule, value=value, threshold=threshold)
        return
    from guard.artifacts import open_model_dir
    from guard.lock.keys import read_lock_key
    from guard.lock.protect import unlock_model

    key = read_lock_key(lock_key)
    holder = pathlib.Path(tempfile.mkdtemp(prefix="guard-unlocked-", dir=work_dir))
    stack.callback(shutil.rmtree, holder, ignore_errors=True)
    try:
        unlock_model(model, holder / "model", key=key)  # the verified ModelDir, not a reopened path
    except VerificationError as exc:
        _add(subject, "mergelock", "refuse", f"MergeLock-protected and the given lock key does not open it: "
                                             f"{exc.message}", rule=exc.rule, value=value, threshold=threshold)
        return
    subject.model = open_model_dir(holder / "model", policy=read_policy_for(policy))
    subject.model.verification = model.verification
    subject.unlocked_with = key.key_id
    _add(subject, "mergelock", "pass", f"MergeLock-protected ({message}); unlocked with lock key {key.key_id}",
         rule=rule, value=value, threshold=threshold)


def _stage_step(stage, section):
    def run(subject: CheckedInput, *, policy, base, config, **_) -> None:
        context = StageContext(policy=policy, section=section or {}, device="cpu", base=base, config=config)
        for check in stage.check_input(subject, context):
            check.input = check.input or subject.label
            subject.checks.append(check)

    return run
