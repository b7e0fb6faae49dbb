"""The probe framework: what a probe declares, what it returns, and the combined decision.

A probe declares what it needs (`Needs`: base, peers, a trusted aligned/unaligned pair, unlabeled
calibration inputs, a model kind, whether it wants a GPU) and returns a `ProbeResult`: one score
(larger = more suspicious), the threshold it was compared with (from the settings, i.e. the policy),
whether it flagged, a one-line message, and evidence (per tensor, layer, head, class, token or patch)
plus plot series for the HTML report. A probe whose needs are not met is *skipped* with the reason;
skipping never counts as clean evidence, and the report says which probes ran.

The combined decision flags the model if any probe that ran flagged it; its score is the largest
score / threshold ratio, so the combined ROC sweeps one multiplier over every probe's threshold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import pydantic

if TYPE_CHECKING:
    from guard.probes.inputs import ScanInputs
    from guard.probes.settings import ProbeSettings

Kind = Literal["any", "causal-lm", "image-classifier"]
Status = Literal["ran", "skipped"]
EvidenceKind = Literal["model", "tensor", "layer", "head", "mlp", "class", "token", "position", "patch"]


@dataclasses.dataclass(frozen=True)
class Needs:
    base: bool = True
    peers: bool = False  # uses peers when given; without them falls back to reference values
    safety_pair: bool = False
    calibration: bool = False
    kind: Kind = "any"
    gpu: Literal["no", "preferred"] = "no"
    weight_only: bool = True

    def describe(self) -> list[str]:
        out = ["base"] if self.base else []
        out += ["peers (optional)"] if self.peers else []
        out += ["trusted aligned/unaligned pair"] if self.safety_pair else []
        out += ["unlabeled calibration inputs"] if self.calibration else []
        out += [f"a {self.kind} model"] if self.kind != "any" else []
        out += ["GPU when present"] if self.gpu == "preferred" else []
        return out


class Evidence(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    kind: EvidenceKind
    where: str  # tensor name, layer prefix, "class 3 of head peer:1", token id and text, ...
    value: float
    detail: str = ""


class Series(pydantic.BaseModel):
    """One plot of the HTML report: labelled values (e.g. a score per layer), optionally with the peers'."""

    model_config = pydantic.ConfigDict(frozen=True)

    title: str
    labels: list[str]
    values: list[float]
    reference: list[float] | None = None  # e.g. the peers' median at each label
    reference_label: str = "peers (median)"
    threshold: float | None = None


class ProbeResult(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    probe: str
    title: str
    status: Status
    score: float | None = None
    threshold: float | None = None
    flagged: bool = False
    message: str
    evidence: list[Evidence] = []
    series: list[Series] = []
    measurements: dict[str, float | int | str | bool | None] = {}
    seconds: float = 0.0
    device: str = "cpu"
    truncated: bool = False  # stopped by its time budget before finishing every case

    @property
    def ratio(self) -> float | None:
        """score / threshold (> 1 flags); None when the probe did not run."""
        if self.status != "ran" or self.score is None or not self.threshold:
            return None
        return self.score / self.threshold


ProbeFn = Callable[["ScanInputs", "ProbeSettings"], ProbeResult]


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str  # also the key of its settings in ProbeSettings
    title: str
    needs: Needs
    run: ProbeFn
    catches: str

    def skipped(self, reason: str) -> ProbeResult:
        return ProbeResult(probe=self.name, title=self.title, status="skipped", message=f"skipped: {reason}")

    def result(self, *, score: float, threshold: float, message: str, **fields) -> ProbeResult:
        """A ran result; flagged when the score reaches the threshold (a NaN score flags: fail closed)."""
        flagged = not (score < threshold) or math.isnan(score)
        return ProbeResult(probe=self.name, title=self.title, status="ran", score=score, threshold=threshold,
                           flagged=flagged, message=message, **fields)


PROBES: dict[str, Probe] = {}


def register(probe: Probe) -> Probe:
    PROBES[probe.name] = probe
    return probe


def all_probes() -> dict[str, Probe]:
    import guard.probes.library  # noqa: F401  (each probe module registers itself)

    return PROBES


def missing_needs(probe: Probe, inputs: ScanInputs) -> str | None:
    """Why `probe` cannot run on `inputs`, or None."""
    needs = probe.needs
    if needs.kind != "any" and inputs.kind != needs.kind:
        return f"applies to {needs.kind} models; this one is {inputs.kind}"
    if needs.base and inputs.base is None:
        return "needs the base model"
    if needs.safety_pair and inputs.safety_pair is None:
        return "needs a trusted aligned/unaligned pair (--aligned, --unaligned)"
    if needs.calibration and inputs.calibration is None:
        return "needs unlabeled calibration inputs (--calibration)"
    return None


def run_probe(probe: Probe, inputs: ScanInputs, settings: ProbeSettings) -> ProbeResult:
    own = settings.for_probe(probe.name)
    if not own.enabled:
        return probe.skipped("disabled by the settings")
    reason = missing_needs(probe, inputs)
    if reason is not None:
        return probe.skipped(reason)
    start = time.perf_counter()
    with _threads(0 if probe.needs.weight_only or inputs.device != "cpu" else settings.cpu_threads):
        result = probe.run(inputs, settings)
    return result.model_copy(update={"seconds": round(time.perf_counter() - start, 3)})


@contextlib.contextmanager
def _threads(count: int):
    """torch's intra-op thread count for the duration (0: leave it alone)."""
    import torch

    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Decision(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    flagged: bool
    score: float | None  # the largest score/threshold ratio of the probes that ran
    reasons: list[str]  # one line per flagging probe
    ran: list[str]
    skipped: list[str]


def combine(results: list[ProbeResult]) -> Decision:
    ran = [r for r in results if r.status == "ran"]
    ratios = [r.ratio for r in ran if r.ratio is not None]
    reasons = [f"{r.probe}: {r.message} (score {r.score:.3g} >= threshold {r.threshold:.3g})"
               for r in ran if r.flagged]
    return Decision(flagged=bool(reasons), score=max(ratios) if ratios else None, reasons=reasons,
                    ran=[r.probe for r in ran], skipped=[r.probe for r in results if r.status != "ran"])
