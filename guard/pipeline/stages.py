"""The stage interface: how probes, DAM and EnchTable plug into the gate.

A stage is configured by its section of the merge config's `guard:` block (`probes:`, `dam:`,
`enchtable:`) and may do two things:

- `check_input(subject, context)`: inspect one input that already passed the strict artifact checks,
  its signature and MergeLock detection (`subject.model` is a ModelDir over the verified bytes; the base,
  when there is one, is `context.base`). It returns `Check`s for the decision record; any "refuse"
  refuses the merge. It runs on the CPU: nothing is read onto a GPU before every check passed. The Hub
  audit runs the same stages through `guard.pipeline.checks.check_input`.
- `prepare_merge(job, inputs, context)`: once every input passed, adjust the `guard.merge.MergeJob`
  (e.g. DAM's masks or coefficients through a `TensorHook`, EnchTable adding a safety vector after the
  merge) and return it with any checks. `context.device` is the merge's device.

Stages are found by section name in `STAGES` (name -> factory taking the section's dict). A config
section with no stage behind it is refused (exit 2), never ignored. The probes, DAM and EnchTable
issues each add their factory here; tests register stubs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from guard.errors import InputError
from guard.pipeline.decision import Check

STAGE_SECTIONS = ("probes", "dam", "enchtable")


@dataclasses.dataclass
class StageContext:
    policy: Any  # guard.policy.LoadedPolicy
    section: Mapping[str, Any]  # this stage's config section (empty when enabled by policy alone)
    device: str  # the merge device ("cpu" during input checks)
    base: Any = None  # the base's CheckedInput, if any
    config: Any = None  # guard.merge.MergeConfig (None in a Hub audit)


class Stage:
    name: ClassVar[str] = "stage"

    def check_input(self, subject, context: StageContext) -> list[Check]:
        return []

    def prepare_merge(self, job, inputs: Sequence, context: StageContext) -> tuple[Any, list[Check]]:
        return job, []


def _probes(section: Mapping[str, Any]) -> Stage:
    from guard.pipeline.probe_stage import probe_stage  # imported only when a run configures it (torch)

    return probe_stage(section)


# section name -> factory(section dict) -> Stage. Filled by the stage adapters (probes, dam, enchtable).
STAGES: dict[str, Callable[[Mapping[str, Any]], Stage]] = {"probes": _probes}


def _defense(name: str) -> Callable[[Mapping[str, Any]], Stage]:
    def factory(section: Mapping[str, Any]) -> Stage:  # imported on use: the defenses need torch
        from guard.pipeline import defense_stages

        return getattr(defense_stages, f"{name}_stage")(section)

    return factory


STAGES.update(dam=_defense("dam"), enchtable=_defense("enchtable"))


def stages_for(sections: Mapping[str, Mapping[str, Any] | None]) -> list[tuple[Stage, Mapping[str, Any]]]:
    """The configured stages in pipeline order (probes, dam, enchtable); unknown or unavailable -> InputError."""
    unknown = sorted(set(sections) - set(STAGE_SECTIONS))
    if unknown:
        raise InputError(f"guard.{unknown[0]}: not a stage section ({', '.join(STAGE_SECTIONS)})", rule="stage-unknown")
    chosen = []
    for name in STAGE_SECTIONS:
        section = sections.get(name)
        if section is None:
            continue
        factory = STAGES.get(name)
        if factory is None:
            raise InputError(f"guard.{name}: this build of guard has no {name} stage; remove the section or install "
                             f"a guard that has it (a configured check is never skipped silently)", rule="stage-unavailable")
        chosen.append((factory(section), section))
    return chosen
