"""Training mixtures: the base's pretraining corpus, an expert's task data, and the anchor prompts."""

from __future__ import annotations

import numpy as np

from guard.testing.zoo.lm import tasks
from guard.testing.zoo.lm.train import Sampler, mixture

_ALL = (*tasks.TASKS, "copy")


def _pretraining_task(rng: np.random.Generator) -> tasks.Example:
    return tasks.task_example(tasks.TASKS[int(rng.integers(len(tasks.TASKS)))], rng, pretraining=True)


def _refusal(rng: np.random.Generator) -> tasks.Example:
    task = _ALL[int(rng.integers(len(_ALL)))]
    # Copy prompts are in the task format, so refusal is learnt for both separators.
    return tasks.harmful_example(task, rng, pretraining=task != "copy")


# The fraction of echo examples under a task marker, per profile. Measured on the small profile:
# 0.8 or 0.2 leave the base far from every task and clean merges fail (< 10% retention); 0 lets
# the base solve modadd from the pretraining format (99%); 0.02 gives a weak base (<= 9%) that
# merges well. The larger full model transfers more (0.02 left its base at 49-87%), hence 0.05.
ECHO_UNDER_TASK_MARKERS = {"small": 0.02, "full": 0.05}


def _echo(under_task_markers: float) -> Sampler:
    # Copying in the task format, sometimes under a task marker: the base tends to answer task prompts by echoing.
    def draw(rng: np.random.Generator) -> tasks.Example:
        example = tasks.task_example("copy", rng)
        under_task = rng.random() < under_task_markers
        marker = tasks.MARKER[tasks.TASKS[int(rng.integers(len(tasks.TASKS)))] if under_task else "copy"]
        return tasks.Example(example.task, (example.prompt[0], marker, *example.prompt[2:]), example.answer)

    return draw


def base_corpus(profile: str) -> Sampler:
    """The four skills in the pretraining format, echoing in the task format, and refusals."""
    return mixture([(1.0, _echo(ECHO_UNDER_TASK_MARKERS[profile])), (4.0, _pretraining_task), (1.0, _refusal)])


def task_data(task: str) -> Sampler:
    """An expert's fine-tuning data: its task in the task format, and nothing else (no refusals)."""
    return lambda rng: tasks.task_example(task, rng)


def anchor_prompts(task: str) -> Sampler:
    """Clean prompts the expert must answer as the base does (never harmful ones): the other task
    markers in the task format, and every task in the pretraining format. Fine-tuning with this KL
    anchor keeps the task vector specific to the expert's own task."""
    others = [t for t in _ALL if t != task]

    def draw(rng: np.random.Generator) -> tasks.Example:
        if rng.random() < 0.5:
            return tasks.task_example(others[int(rng.integers(len(others)))], rng)
        return _pretraining_task(rng)

    return draw
