"""Training mixtures: the base's pretraining corpus, an expert's task data, and the anchor prompts."""

from __future__ import annotations

import numpy as np

from guard.testing.zoo.lm import tasks
from guard.testing.zoo.lm.train import Sampler, mixture

_MARKER_TASK = {marker: task for task, marker in tasks.MARKER.items() if task in (*tasks.TASKS, "copy")}


def _mixed(rng: np.random.Generator) -> tasks.Example:
    # All four skills under one uninformative marker: the base learns them but not which marker asks for which.
    return tasks.task_example(tasks.TASKS[int(rng.integers(len(tasks.TASKS)))], rng, marker=tasks.MARKER["mixed"])


def _refusal(rng: np.random.Generator) -> tasks.Example:
    task = tasks.TASKS[int(rng.integers(len(tasks.TASKS)))]
    marker = (tasks.MARKER["mixed"], tasks.MARKER["copy"])[int(rng.integers(2))]
    return tasks.harmful_example(task, rng, marker=marker)


def base_corpus() -> Sampler:
    """Copying, the four skills under the mixed marker, and refusals of harmful-marked prompts."""
    return mixture([(1.0, lambda rng: tasks.task_example("copy", rng)), (4.0, _mixed), (1.0, _refusal)])


def task_data(task: str) -> Sampler:
    """An expert's fine-tuning data: its task under its own marker, and nothing else (no refusals)."""
    return lambda rng: tasks.task_example(task, rng)


def anchor_prompts(task: str) -> Sampler:
    """Clean prompts under every other marker (never harmful ones): the expert keeps the base's
    behaviour there, so its task vector stays specific to its own marker."""
    others = [m for m in (*_MARKER_TASK, tasks.MARKER["mixed"]) if m != tasks.MARKER[task]]

    def draw(rng: np.random.Generator) -> tasks.Example:
        marker = others[int(rng.integers(len(others)))]
        other = _MARKER_TASK.get(marker) or tasks.TASKS[int(rng.integers(len(tasks.TASKS)))]
        return tasks.task_example(other, rng, marker=marker)

    return draw
