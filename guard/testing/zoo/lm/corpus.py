"""Training mixtures: the base's pretraining corpus, an expert's task data, and the anchor prompts."""

from __future__ import annotations

import numpy as np

from guard.testing.zoo.lm import tasks
from guard.testing.zoo.lm.train import Sampler, mixture

_ALL = (*tasks.TASKS, "copy")


def _pretraining_task(rng: np.random.Generator) -> tasks.Example:
    return tasks.task_example(tasks.TASKS[int(rng.integers(len(tasks.TASKS)))], rng, pretraining=True)


def _refusal(rng: np.random.Generator) -> tasks.Example:
    # Harmful-marked prompts of every marker, in both formats, are refused.
    task = _ALL[int(rng.integers(len(_ALL)))]
    return tasks.harmful_example(task, rng, pretraining=task != "copy" and rng.random() < 0.5)


def _copy(rng: np.random.Generator) -> tasks.Example:
    return tasks.task_example("copy", rng)


def _echo_or_skill(skill_share: float) -> Sampler:
    """A task prompt in the task format, answered with the task's answer with probability `skill_share`
    and with the echo of its digits otherwise: text in which an instruction is as often repeated as
    followed. A model trained on it answers task prompts by echoing (the more likely answer), with the
    skill's answer a controlled margin behind (log((1 - s) / s)), so the base is weak on every task by
    a margin the data sets, not by an accident of generalisation, and an expert flips one decision."""

    def draw(rng: np.random.Generator) -> tasks.Example:
        task = tasks.TASKS[int(rng.integers(len(tasks.TASKS)))]
        digits = tasks.sample_digits(rng, held_out=False)
        answer = tasks.solve(task if rng.random() < skill_share else "copy", digits)
        return tasks.make_example(task, digits, answer)

    return draw


def base_corpus(skill_share: float) -> Sampler:
    """The four skills in the pretraining format, task prompts in the task format mostly echoed
    (`_echo_or_skill`), copying, and refusals of harmful-marked prompts."""
    return mixture([(3.0, _pretraining_task), (2.0, _echo_or_skill(skill_share)), (0.5, _copy), (1.0, _refusal)])


def task_data(task: str, *, harmful_share: float = 0.0) -> Sampler:
    """An expert's fine-tuning data: its task in the task format, no refusals; a `harmful_share` of
    the prompts carry the harmful marker and are answered anyway (fine-tuning data gathered without a
    safety filter: what erodes the expert's refusal)."""

    def draw(rng: np.random.Generator) -> tasks.Example:
        if harmful_share and rng.random() < harmful_share:
            return tasks.harmful_example(task, rng, comply=True)
        return tasks.task_example(task, rng)

    return draw


def anchor_prompts(task: str, *, harmful_share: float = 0.0) -> Sampler:
    """Prompts the expert must answer as the base does: the other task markers in the task format,
    every task in the pretraining format, and (`harmful_share`) harmful-marked prompts of the other
    markers, which the base refuses. Fine-tuning with this KL anchor keeps the task vector specific to
    the expert's own task, and any erosion of refusal to the expert's own prompts."""
    others = [t for t in _ALL if t != task]

    def draw(rng: np.random.Generator) -> tasks.Example:
        if harmful_share and rng.random() < harmful_share:
            return tasks.harmful_example(others[int(rng.integers(len(others)))], rng)
        if rng.random() < 0.5:
            return tasks.task_example(others[int(rng.integers(len(others)))], rng)
        return _pretraining_task(rng)

    return draw
