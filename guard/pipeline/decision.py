"""The decision record: every check of a run, with its input, file, number, threshold and verdict.

`guard safe-merge` prints it (`--json`, or a summary table), the merged model's provenance carries it,
and the Hub audit stores it. A check's verdict is pass, warn, refuse or skip (not run, and why).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Verdict = Literal["pass", "warn", "refuse", "skip"]


@dataclasses.dataclass
class Check:
    check: str  # artifacts, signature, mergelock, probe:<name>, policy:method, merge, ...
    verdict: Verdict
    message: str
    input: str | None = None  # the input's label as the config names it; None for merge-level checks
    rule: str | None = None
    file: str | None = None
    value: Any = None  # the number measured (or the thing found)
    threshold: Any = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {})}

    def one_line(self) -> str:
        where = " ".join(p for p in (self.input, self.file) if p)
        number = f" ({self.value} vs threshold {self.threshold})" if self.threshold is not None else ""
        return f"{self.check}{' ' + where if where else ''}: {self.message}{number}"


@dataclasses.dataclass
class DecisionRecord:
    command: str
    policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)
    merge: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    verdict: Literal["merged", "refused", "passed", "running"] = "running"
    started: str = ""
    finished: str = ""

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def refusals(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "refuse"]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["checks"] = [c.to_json() for c in self.checks]
        from guard import __version__

        return {"guard_version": __version__, **data}
