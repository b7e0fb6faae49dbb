"""The probe stage: guard.probes on every input of a safe-merge and of a Hub audit (docs/probes.md).

Thresholds, which probes run and their budgets come from the policy's `probes:` section
(guard.probes.ProbeSettings; validated by the policy). The merge config's `guard.probes:` section names
only what the merge alone knows: unlabeled calibration inputs and a trusted aligned/unaligned pair,
paths relative to the config file.

- In a merge, each model input is probed once every input has passed its own checks
  (`prepare_merge`), with the other model inputs as its peers (z-scores against them), all read from the
  verified bytes. A flagging probe refuses the merge, naming the probe, the input, the score and the
  threshold; nothing is written.
- In a Hub audit (no merge config) the input is probed against the base alone (`check_input`).

Probes that cannot run (no calibration inputs, no trusted pair) are recorded as skipped with the reason;
if none could run the stage refuses (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from guard.pipeline.decision import Check
from guard.pipeline.stages import Stage, StageContext


class ProbeSection(pydantic.BaseModel):
    """The merge config's `guard.probes:` section."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    calibration: str | None = None  # safetensors: pixel_values, or input_ids + attention_mask
    aligned: str | None = None
    unaligned: str | None = None


class ProbeStage(Stage):
    name = "probes"

    def __init__(self, section: ProbeSection):
        self.section = section

    def check_input(self, subject, context: StageContext) -> list[Check]:
        if context.config is not None or subject.role == "base":
            return []  # a merge probes its inputs in prepare_merge, against each other
        return probe_input(subject, base=context.base, peers=(), context=context, device="cpu")

    def prepare_merge(self, job, inputs: Sequence, context: StageContext) -> tuple[Any, list[Check]]:
        models = [c for c in inputs if c.role == "model"]
        checks = []
        for subject in models:
            peers = [c for c in models if c is not subject]
            checks += probe_input(subject, base=context.base, peers=peers, context=context, device=context.device)
        return job, checks


def probe_input(subject, *, base, peers: Sequence, context: StageContext, device: str) -> list[Check]:
    """Scan one checked input; one Check per probe."""
    if base is None:
        return _no_probe(subject, "no base model to compare with")
    return probe_checks(scan_input(subject, base=base, peers=peers, context=context, device=device), subject)


def scan_input(subject, *, base, peers: Sequence, context: StageContext, device: str, progress=None):
    """The probes' ScanReport for one checked input against `base` (required) and `peers`, with the policy's
    settings and the section's calibration and trusted pair; `progress(name)` is called before each probe."""
    from guard.pipeline.scan import open_scan_input, same_architecture
    from guard.probes.inputs import SafetyPair, ScanInputs, model_kind, read_calibration
    from guard.probes.scan import scan
    from guard.probes.settings import ProbeSettings

    settings = ProbeSettings.model_validate(dict(context.policy.policy.probes))
    section = ProbeSection.model_validate(dict(context.section))
    resolve = (lambda p: p) if context.config is None else context.config.guard_path
    same_architecture(subject.model, base.model, role="the base")
    for peer in peers:
        same_architecture(subject.model, peer.model, role=f"input {peer.label}")
    pair = None
    if (section.aligned is None) != (section.unaligned is None):
        from guard.errors import InputError

        raise InputError("guard.probes: aligned and unaligned go together (a trusted pair)", rule="scan-safety-pair")
    if section.aligned is not None:
        pair = SafetyPair(open_scan_input(resolve(section.aligned), role="the aligned model"),
                          open_scan_input(resolve(section.unaligned), role="the unaligned model"))
    calibration = None if section.calibration is None else read_calibration(
        resolve(section.calibration), kind=model_kind(subject.model))
    inputs = ScanInputs(candidate=subject.model, base=base.model, peers=[p.model for p in peers], safety_pair=pair,
                        calibration=calibration, device=device)
    return scan(inputs, settings, progress=progress)


def probe_checks(report, subject) -> list[Check]:
    """One Check per probe of a ScanReport (refuse when it flagged); a refusal when no probe could run."""
    checks = []
    for result in report.results:
        if result.status != "ran":
            checks.append(Check(f"probe:{result.probe}", "skip", result.message, input=subject.label))
            continue
        evidence = [e.model_dump(mode="json") for e in result.evidence[:5]]
        checks.append(Check(f"probe:{result.probe}", "refuse" if result.flagged else "pass", result.message,
                            input=subject.label, rule=f"probe-{result.probe}" if result.flagged else None,
                            value=result.score, threshold=result.threshold, details={"evidence": evidence}))
    if not report.decision.ran:
        return checks + _no_probe(subject, "no probe could run")
    return checks


def _no_probe(subject, why: str) -> list[Check]:
    return [Check("probes", "refuse", f"{why}: the probes cannot vouch for this input", input=subject.label,
                  rule="probes-not-run")]


def probe_stage(section: Mapping[str, Any] | None) -> ProbeStage:
    """The stage for a config's `guard.probes:` section (STAGES["probes"], guard/pipeline/stages.py)."""
    try:
        return ProbeStage(ProbeSection.model_validate(dict(section or {})))
    except pydantic.ValidationError as exc:
        from guard.errors import InputError

        first = exc.errors()[0]
        raise InputError(f"guard.probes.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}",
                         rule="stage-config") from None
