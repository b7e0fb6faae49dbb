"""Run every probe on one candidate and combine the results into one decision with its reasons."""

from __future__ import annotations

import time
from typing import Any

import pydantic

from guard.probes.framework import Decision, ProbeResult, all_probes, combine, run_probe
from guard.probes.inputs import ScanInputs
from guard.probes.settings import ProbeSettings


class ScanReport(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    inputs: dict[str, Any]
    results: list[ProbeResult]
    decision: Decision
    settings: dict[str, Any]
    seconds: float

    def result(self, probe: str) -> ProbeResult:
        return next(r for r in self.results if r.probe == probe)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        from guard.errors import InputError

        raise InputError("device cuda requested but no CUDA device is available", rule="scan-device")
    return setting


def scan(inputs: ScanInputs, settings: ProbeSettings | None = None, *, probes: list[str] | None = None,
         progress=None) -> ScanReport:
    """Run the probes (all registered ones, or `probes`) in registry order; `progress(name)` is called
    before each."""
    settings = settings or ProbeSettings()
    start = time.perf_counter()
    results = []
    for name, probe in all_probes().items():
        if probes is not None and name not in probes:
            results.append(probe.skipped("not selected"))
            continue
        if progress is not None:
            progress(name)
        results.append(run_probe(probe, inputs, settings))
    return ScanReport(inputs=inputs.describe(), results=results, decision=combine(results),
                      settings=settings.model_dump(mode="json"), seconds=round(time.perf_counter() - start, 3))
