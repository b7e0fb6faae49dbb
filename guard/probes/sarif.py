"""A scan report as SARIF 2.1.0 (OASIS), for code-scanning dashboards and CI gates.

One run; one rule per probe (`guard.probes/<name>`); one result per probe that ran: level "error" when it
flagged, "note" otherwise, with the score, threshold and evidence in the result's property bag. Locations
are logical (tensor, layer, head, class, token, patch) inside the model directory, which is the run's
analysis target; a probe that was skipped is reported as a notification, not a result.
"""

from __future__ import annotations

import pathlib
from typing import Any

from guard import __version__
from guard.probes.framework import all_probes

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_LOGICAL_KIND = {"tensor": "member", "layer": "module", "head": "member", "mlp": "module", "class": "variable",
                 "token": "variable", "position": "variable", "patch": "variable", "model": "module"}


def rule_id(probe: str) -> str:
    return f"guard.probes/{probe}"


def _rules() -> list[dict[str, Any]]:
    return [{"id": rule_id(p.name), "name": p.name, "shortDescription": {"text": p.title},
             "fullDescription": {"text": f"Catches {p.catches}. Needs: {', '.join(p.needs.describe())}."},
             "defaultConfiguration": {"level": "error"}, "help": {"text": "See docs/probes.md in guard."}}
            for p in all_probes().values()]


def _uri(path: str) -> str:
    return pathlib.Path(path).resolve().as_uri() + "/"


def to_sarif(report) -> dict[str, Any]:
    """The SARIF log (a JSON-ready dict) of a guard.probes.scan.ScanReport."""
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    results, notifications = [], []
    for r in report.results:
        rid = rule_id(r.probe)
        if r.status != "ran":
            notifications.append({"level": "note", "message": {"text": f"{r.probe}: {r.message}"},
                                  "descriptor": {"id": rid, "index": index[rid]} if rid in index else {"id": rid}})
            continue
        logical = list({(e.where, _LOGICAL_KIND[e.kind]): None for e in r.evidence[:10]}) or [("model", "module")]
        logical = [{"name": name, "kind": kind} for name, kind in logical]  # unique, as SARIF requires
        results.append({
            "ruleId": rid, "ruleIndex": index.get(rid, -1), "level": "error" if r.flagged else "note",
            "kind": "fail" if r.flagged else "pass",
            "message": {"text": r.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": ".", "uriBaseId": "MODELDIR"}},
                           "logicalLocations": logical}],
            "properties": {"score": r.score, "threshold": r.threshold, "seconds": r.seconds, "device": r.device,
                           "truncated": r.truncated,
                           "evidence": [e.model_dump(mode="json") for e in r.evidence],
                           "measurements": r.measurements},
        })
    decision = report.decision
    run = {
        "tool": {"driver": {"name": "guard", "semanticVersion": __version__,
                            "rules": rules}},
        "originalUriBaseIds": {"MODELDIR": {"uri": _uri(report.inputs["model"]),
                                            "description": {"text": "the scanned model directory"}}},
        "artifacts": [{"location": {"uri": ".", "uriBaseId": "MODELDIR"}, "roles": ["analysisTarget", "directory"]}],
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
        "results": results,
        "properties": {"flagged": decision.flagged, "combinedScore": decision.score, "reasons": decision.reasons,
                       "inputs": report.inputs},
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
