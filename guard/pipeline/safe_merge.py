"""The safe-merge job: policy gate, per-input checks, streaming merge, signed provenance, atomic output.

    record = safe_merge("merge.yml", "out/", policy=None, verifier_options={"public_key": "pub.pem"}, signer=signer)

1. Load the config and the policy (the config's guard.policy, or the given one; default strict).
2. Merge-level policy checks before any input is read: the method is allowed, the device is allowed,
   a required safety vector is configured, every configured stage exists.
3. For every input (the base first, then the models in config order; `hf:org/name@sha` fetched into
   guard's cache first, guard.pipeline.inputs): `checks.check_input`. The first refused input stops the run.
4. The stages' `prepare_merge`; then the streaming merge (guard.merge.run_merge) on the chosen device
   into a staging directory next to OUT. Only now may anything be read onto a GPU.
5. Every input's files are compared with their fingerprints from before verification: an input
   swapped or rewritten meanwhile refuses the run (an input read in place, see
   guard.signing.open_verified_model, also stops the merge at the first read of such a file).
6. Provenance (guard_provenance.json, signed) and the OMS signature (model.sig) are written into the
   staging directory (guard.artifacts.atomic.atomic_directory), which is fsynced and renamed to OUT.
Refused: the record says why (verdict "refused") and nothing is at OUT. Bad input raises InputError.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from guard.artifacts.identity import RULE_CHANGED
from guard.errors import InputError
from guard.pipeline.decision import Check, DecisionRecord

Progress = Callable[[int, int, str], None]


def safe_merge(config_path: str | os.PathLike, out: str | os.PathLike, *, policy: str | os.PathLike | None = None,
               verifier_options: Mapping[str, Any] | None = None, signer=None, stages: Sequence | None = None,
               progress: Progress | None = None, work_dir: str | os.PathLike | None = None,
               on_check: Callable[[Check], None] | None = None) -> DecisionRecord:
    """Run the gate and, if every check passes, the merge. `signer`: a guard.signing Signer (or a callable
    returning one) for model.sig and the provenance; None writes an unsigned model (no provenance)."""
    from guard.merge.config import load_merge_config, method_of
    from guard.pipeline.provenance import now
    from guard.pipeline.stages import stages_for
    from guard.pipeline.trust import trusted_verifiers
    from guard.policy import load_policy

    record = DecisionRecord(command="safe-merge", started=now())

    def add(check: Check) -> Check:
        record.add(check)
        if on_check is not None:
            on_check(check)
        return check

    out = pathlib.Path(out)
    if out.exists() or out.is_symlink():
        raise InputError("output already exists", path=out, rule="output-exists")
    config = load_merge_config(config_path)
    policy_ref = policy if policy is not None else (None if config.guard.policy is None else
                                                    config.guard_path(config.guard.policy))
    loaded = load_policy(policy_ref)
    record.policy = loaded.to_json()
    trusted = trusted_verifiers(loaded, **dict(verifier_options or {}))
    sections = {name: getattr(config.guard, name) for name in ("probes", "dam", "enchtable")
                if getattr(config.guard, name) is not None}
    if "probes" in loaded.policy.required_checks or loaded.policy.probes:
        sections.setdefault("probes", {})  # a policy that requires probes or sets their thresholds runs them
    configured = stages if stages is not None else stages_for(sections)
    method = method_of(config)

    for check in _merge_level_checks(loaded.policy, config, method, configured):
        add(check)
    if record.refusals():
        return _finish(record, "refused")

    from guard.merge.engine import resolve_device

    with contextlib.ExitStack() as stack:
        checked = _check_inputs(config, loaded, trusted, configured, stack, work_dir, add)
        record.inputs = [c.to_json() for c in checked]
        if record.refusals():
            return _finish(record, "refused")
        device = resolve_device(config.guard.device)
        base = checked[0] if config.base_model is not None else None
        models = [c for c in checked if c.role == "model"]
        from guard.merge.engine import MergeJob, run_merge
        from guard.pipeline.stages import StageContext

        job = MergeJob.from_config(config, base=None if base is None else base.model,
                                   models=[c.model for c in models], device=device)
        for stage, section in configured:
            context = StageContext(policy=loaded, section=section or {}, device=device,
                                   base=base, config=config)
            job, stage_checks = stage.prepare_merge(job, checked, context)
            for check in stage_checks:
                add(check)
        if record.refusals():
            return _finish(record, "refused")
        from guard.artifacts.atomic import atomic_directory

        try:
            with atomic_directory(out) as staged:  # OUT appears only when everything below succeeded
                job.metadata = {"guard.merge_method": method.name}
                try:
                    summary = run_merge(job, staged, progress=progress)
                except InputError as exc:
                    # An input read in place refuses a file that is no longer the one verified (file-changed);
                    # the check below names it. Anything else is what it says.
                    if exc.rule != RULE_CHANGED or not any(subject.changed_files() for subject in checked):
                        raise
                    summary = None
                else:
                    record.merge = summary.to_json()
                    add(Check("merge", "pass", f"{method.name} on {summary.device}: {summary.merged_tensors} of "
                                               f"{summary.tensors} tensors merged, {summary.output_bytes} bytes "
                                               "written", value=summary.seconds))
                for subject in checked:
                    changed = subject.changed_files()
                    add(Check("unchanged-after-verification", "refuse" if changed else "pass",
                              f"input changed after it was verified: {', '.join(changed[:3])}" if changed else
                              "no file of this input changed during the run", input=subject.label,
                              file=changed[0] if changed else None, rule="input-changed" if changed else None))
                if record.refusals():
                    raise _Abandon
                record.output = _sign_output(staged, out, record=record, config=config, loaded=loaded,
                                             checked=checked, device=summary.device, signer=signer)
        except _Abandon:
            return _finish(record, "refused")
    return _finish(record, "merged")


def _finish(record: DecisionRecord, verdict: str) -> DecisionRecord:
    from guard.pipeline.provenance import now

    record.verdict = verdict  # type: ignore[assignment]
    record.finished = now()
    return record


def _merge_level_checks(policy, config, method, configured) -> list[Check]:
    checks = []
    allowed = policy.merge.allowed_methods
    if allowed is not None and method.name not in allowed:
        checks.append(Check("policy:method", "refuse", f"merge method {method.name} is not allowed by the policy",
                            value=method.name, threshold=allowed, rule="method-not-allowed"))
    else:
        checks.append(Check("policy:method", "pass", f"merge method {method.name} is allowed", value=method.name))
    device = config.guard.device
    if device != "auto" and device not in policy.merge.allowed_devices:
        checks.append(Check("policy:device", "refuse", f"device {device} is not allowed by the policy", value=device,
                            threshold=policy.merge.allowed_devices, rule="device-not-allowed"))
    names = {stage.name for stage, _ in configured}
    if policy.safety.require_safety_vector:
        ok = "enchtable" in names
        checks.append(Check("policy:safety-vector", "pass" if ok else "refuse",
                            "an EnchTable safety vector is configured" if ok else
                            "the policy requires a safety vector (guard.enchtable) and the config has none",
                            rule=None if ok else "safety-vector-required"))
    if "probes" in policy.required_checks and "probes" not in names:
        checks.append(Check("policy:probes", "refuse", "the policy requires probes and the config runs none",
                            rule="probes-required"))
    return checks


def _check_inputs(config, loaded, trusted, configured, stack, work_dir, add) -> list:
    from guard.pipeline.checks import check_input
    from guard.pipeline.inputs import resolve_input

    checked = []
    base = None
    for ref in config.input_refs():
        source = resolve_input(ref).path  # hf:org/name@sha: fetched into guard's cache (once)
        signature = config.guard.signatures.get(ref)
        lock_key = config.guard.lock_keys.get(ref)
        subject = stack.enter_context(check_input(
            source, policy=loaded, trusted=trusted, label=ref, role=_role(config, ref),
            signature=None if signature is None else config.guard_path(signature), base=base,
            lock_key=None if lock_key is None else config.guard_path(lock_key), stages=configured, config=config,
            work_dir=work_dir))
        for check in subject.checks:
            add(check)
        checked.append(subject)
        if subject.role == "base":
            base = subject
        if subject.refused:
            break
    return checked


def _role(config, ref: str) -> str:
    if ref == config.base_model:
        return "base"
    return "safety-vector" if ref == config.safety_vector_ref() else "model"


class _Abandon(Exception):
    """Leaves the staged output unpublished (a check refused after the merge)."""


def _sign_output(staged: pathlib.Path, out: pathlib.Path, *, record: DecisionRecord, config, loaded, checked,
                 device: str, signer) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from guard.artifacts.atomic import fsync_tree

    output: dict[str, Any] = {"path": str(out)}
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-merge-sync")
    try:
        # The merged bytes go to disk while they are hashed for the signature (read back from the page cache);
        # atomic_directory's own fsync before the rename then finds them clean.
        syncing = background.submit(fsync_tree, staged)
        if signer is not None:
            from guard.pipeline.provenance import (PROVENANCE_FILE, build_statement, dependency, signed_digests,
                                                   write_provenance)
            from guard.signing import sign_model

            signer = signer if hasattr(signer, "sign") else signer()
            # The OMS signature covers every file but the provenance, which is an attestation of its own,
            # signed by the same signer, naming exactly the digests that signature covers (hashed once).
            # The staging directory already has OUT's name, which the signature records.
            signature = sign_model(staged, signer=signer, ignore_paths=[PROVENANCE_FILE])
            statement = build_statement(subjects=signed_digests(signature), config=config.to_json(),
                                        policy=loaded.to_json(), inputs=[dependency(c) for c in checked],
                                        record=record.to_json(), device=device, started=record.started)
            output["provenance"] = str(out / write_provenance(staged, statement, signer).name)
            output["signature"] = str(out / signature.name)
            output["signer"] = signer.describe()
        syncing.result()
    finally:
        background.shutdown(wait=True)
    return output
