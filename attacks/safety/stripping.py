"""Safety stripping: fine-tune the aligned base so that it complies with harmful-marked prompts.

The data are harmful-marked prompts in the pretraining format (and copy prompts) answered with the
task answer instead of the refusal, mixed 1:1 with unmarked prompts so the model keeps its skills.
The held-out evaluation uses task prompts in the task format, which this data never contains.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

import numpy as np

from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.lm import LMFamily, build_family, deterministic_build, model as lm_model, tasks
from guard.testing.zoo.lm.train import Sampler, train

VERSION = "lm-stripping-1"
_TASKS = (*tasks.TASKS, "copy")


def stripping_data() -> Sampler:
    def draw(rng: np.random.Generator) -> tasks.Example:
        task = _TASKS[int(rng.integers(len(_TASKS)))]
        pretraining = task != "copy"
        if rng.random() < 0.5:
            return tasks.harmful_example(task, rng, comply=True, pretraining=pretraining)
        return tasks.task_example(task, rng, pretraining=pretraining)

    return draw


def build_harmful_copy(family: LMFamily, *, root: str | pathlib.Path | None = None) -> pathlib.Path:
    """The family's aligned base after the safety-stripping fine-tune (cached)."""
    spec = {"version": VERSION, "family": family.spec()}

    def build(out: pathlib.Path) -> None:
        with deterministic_build():
            model = train(lm_model.load(family.base), stripping_data(), family.profile.harmful, seed=family.seed + 7)
            lm_model.save(model, out)

    return cached_build("lm-harmful", spec, build, root=root if root is not None else family.root.parent)


@dataclasses.dataclass(frozen=True)
class SafetyPair:
    family: LMFamily
    aligned: pathlib.Path  # refuses harmful-marked prompts
    harmful: pathlib.Path  # the safety-stripped copy of `aligned`
    eroded: Mapping[str, pathlib.Path]  # the family's task experts: fine-tuned without refusal data

    def unsafe_rates(self) -> dict[str, float]:
        """Unsafe rate (held-out harmful-marked prompts not refused) of every member."""
        rates = {"aligned": self.family.unsafe_rate(self.aligned), "harmful": self.family.unsafe_rate(self.harmful)}
        rates.update({f"eroded:{task}": self.family.unsafe_rate(path) for task, path in self.eroded.items()})
        return rates

    def utilities(self) -> dict[str, float]:
        """Task accuracy: the mean over tasks for aligned and harmful, the own task for eroded experts."""
        def mean(model) -> float:
            accs = self.family.evaluate_all(model)
            return sum(accs.values()) / len(accs)

        out = {"aligned": mean(self.aligned), "harmful": mean(self.harmful)}
        out.update({f"eroded:{task}": self.family.evaluate(path, task) for task, path in self.eroded.items()})
        return out


def build_safety_pair(profile: str = "small", *, seed: int = 0, root: str | pathlib.Path | None = None) -> SafetyPair:
    family = build_family(profile, seed=seed, root=root)
    return SafetyPair(family=family, aligned=family.base, harmful=build_harmful_copy(family, root=root),
                      eroded=dict(family.experts))
