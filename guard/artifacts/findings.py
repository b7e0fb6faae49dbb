"""Findings: things a model directory contains that are readable but may be refused.

Malformed input is an InputError (exit 2); a finding is a fact about well-formed input (a pickle
file, remote code, an unknown binary) with a severity. The default policy refuses every finding of
severity "refuse" (exit 1); "warn" and "info" are reported only.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Severity = Literal["refuse", "warn", "info"]
SEVERITIES: tuple[Severity, ...] = ("refuse", "warn", "info")
DEFAULT_REFUSED_SEVERITIES: frozenset[str] = frozenset({"refuse"})


@dataclasses.dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str
    path: str  # POSIX path relative to the model directory
    message: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def one_line(self) -> str:
        return f"{self.severity}: {self.path} [{self.rule}] {self.message}"

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def refused(findings: list[Finding], *, severities: frozenset[str] = DEFAULT_REFUSED_SEVERITIES) -> list[Finding]:
    return [f for f in findings if f.severity in severities]


def regrade(findings: list[Finding], severities: tuple[tuple[str, str], ...]) -> list[Finding]:
    """Findings with their severity replaced where `severities` names their rule; "*" names every rule
    not named whose finding would refuse."""
    if not severities:
        return findings
    table = dict(severities)
    regraded = []
    for f in findings:
        severity = table.get(f.rule, table.get("*", f.severity) if f.severity == "refuse" else f.severity)
        regraded.append(dataclasses.replace(f, severity=severity))
    return regraded
