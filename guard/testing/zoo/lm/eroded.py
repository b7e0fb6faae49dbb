"""Eroded experts for the safety pair: plain task fine-tunes of the aligned base (no refusal data,
no KL anchor), as a user would run them. Their refusal erodes to a measured degree."""

from __future__ import annotations

import pathlib

from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.lm import model as lm_model, tasks
from guard.testing.zoo.lm.family import LMFamily, deterministic_build, expert_seed, train_expert

VERSION = "lm-eroded-1"


def build_eroded_experts(family: LMFamily, *, root: str | pathlib.Path | None = None) -> dict[str, pathlib.Path]:
    """task -> directory of the plain (unanchored) fine-tune of the family's base on that task. Cached."""
    spec = {"version": VERSION, "family": family.spec()}

    def build(out: pathlib.Path) -> None:
        with deterministic_build():
            base = lm_model.load(family.base)
            for task in tasks.TASKS:
                expert = train_expert(base, task, family.profile, seed=expert_seed(family.seed, task), anchored=False)
                lm_model.save(expert, out / task)

    path = cached_build("lm-eroded", spec, build, root=root if root is not None else family.root.parent)
    return {task: path / task for task in tasks.TASKS}
