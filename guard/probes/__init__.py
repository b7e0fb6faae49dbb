"""Ingestion probes: is this model backdoored, safety-stripped or re-parameterised? (docs/probes.md)

Stage `probes` of the pipeline (artifacts -> signing -> lock -> probes -> merge -> policy -> pipeline):
it reads validated ModelDirs and imports nothing to its right.

Public API:
- `ProbeSettings` (frozen pydantic; the `probes:` section of a safe-merge policy), `PROBE_SETTINGS`
  (probe name -> its settings model, for policy validation);
- `ScanInputs` (candidate, base, peers, trusted pair, calibration), `read_calibration`, `SafetyPair`;
- `scan(inputs, settings) -> ScanReport` (every probe's `ProbeResult` and the combined `Decision`);
- `all_probes()` (the registry: name -> `Probe`, each declaring its `Needs`);
- `guard.probes.sarif.to_sarif`, `guard.probes.html.to_html` (report formats).
Torch is imported only when a scan runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.probes.settings import ProbeSettings

PROBE_SETTINGS = {name: type(ProbeSettings().for_probe(name)) for name in ProbeSettings.probe_names()}

if TYPE_CHECKING:
    from guard.probes.framework import Decision, Needs, Probe, ProbeResult, all_probes
    from guard.probes.inputs import SafetyPair, ScanInputs, read_calibration
    from guard.probes.scan import ScanReport, scan

__all__ = ["PROBE_SETTINGS", "Decision", "Needs", "Probe", "ProbeResult", "ProbeSettings", "SafetyPair", "ScanInputs",
           "ScanReport", "all_probes", "read_calibration", "scan"]

_LAZY = {
    "Decision": "guard.probes.framework", "Needs": "guard.probes.framework", "Probe": "guard.probes.framework",
    "ProbeResult": "guard.probes.framework", "all_probes": "guard.probes.framework",
    "SafetyPair": "guard.probes.inputs", "ScanInputs": "guard.probes.inputs", "read_calibration": "guard.probes.inputs",
    "ScanReport": "guard.probes.scan", "scan": "guard.probes.scan",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guard.probes' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
