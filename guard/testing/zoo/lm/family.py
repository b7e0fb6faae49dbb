"""Build (or load from the cache) the LM family: an aligned base and one expert per task."""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
from collections.abc import Mapping

import numpy as np
import torch

from guard.testing.zoo import runtime
from guard.testing.zoo.cache import cached_build, copy_entry
from guard.testing.zoo.lm import corpus, metrics, model as lm_model, tasks
from guard.testing.zoo.lm.profiles import Profile, get_profile
from guard.testing.zoo.lm.train import Anchor, Interpolation, train

VERSION = "lm-family-2"  # bump when anything that changes the built weights changes
BASE_VERSION = "lm-base-2"  # the same for the base alone (its own cache entry)

ModelLike = torch.nn.Module | str | pathlib.Path


# One thread, deterministic kernels (guard.testing.zoo.runtime); the name other code imports.
deterministic_build = runtime.deterministic


def as_model(model: ModelLike) -> torch.nn.Module:
    return model if isinstance(model, torch.nn.Module) else lm_model.load(model)


@dataclasses.dataclass(frozen=True)
class LMFamily:
    """Paths of a built family and its metrics. All metrics use held-out prompts."""

    profile: Profile
    seed: int
    root: pathlib.Path
    base: pathlib.Path  # the aligned base: weak on every task, refuses harmful-marked prompts
    experts: Mapping[str, pathlib.Path]  # task -> expert directory (these also erode refusal)
    tasks: tuple[str, ...] = tasks.TASKS

    def spec(self) -> dict:
        return family_spec(self.profile, self.seed)

    # --- data -------------------------------------------------------------------------------
    def held_out(self, task: str, *, split: str = "test") -> list[tasks.Example]:
        """Held-out prompts of `task` (never trained on). `split="test"` is the reported set;
        `split="validation"` is a disjoint set (no digit list of any task's test prompts) on which
        settings are chosen (merge coefficients, attack strength), so that no reported figure is
        measured on the data its settings were chosen on."""
        if split == "test":
            return tasks.clean_examples(task, self.profile.eval_per_task, seed=self.seed + 1000, held_out=True)
        if split != "validation":
            raise ValueError(f"unknown split {split!r}; known: test, validation")
        test_bodies = {e.prompt[2:-1] for t in self.tasks for e in self.held_out(t)}
        n = self.profile.eval_per_task
        drawn = tasks.clean_examples(task, 4 * n, seed=self.seed + 2000, held_out=True)
        chosen = [e for e in drawn if e.prompt[2:-1] not in test_bodies][:n]
        if len(chosen) != n:
            raise RuntimeError(f"held-out pool too small for a disjoint validation split of {task!r}")
        return chosen

    def harmful_held_out(self, task: str | None = None) -> list[tasks.Example]:
        chosen = self.tasks if task is None else (task,)
        n = max(1, self.profile.eval_per_task // len(chosen))
        return [e for t in chosen for e in tasks.harmful_examples(t, n, seed=self.seed + 1000, held_out=True)]

    def calibration(self, task: str) -> list[tuple[str, ...]]:
        """Unlabeled prompts for `task` (training side of the split), as token strings."""
        lines = (self.root / "calibration" / f"{task}.txt").read_text().splitlines()
        return [tuple(line.split(" ")) for line in lines]

    def calibration_inputs(self, task: str) -> dict[str, torch.Tensor]:
        """The calibration prompts as `model(**inputs)` keyword arguments: right-padded input ids
        and the attention mask (causal attention never looks right, so padding changes nothing
        at the real positions)."""
        from guard.testing.zoo.lm.vocab import PAD_ID, encode

        ids = [encode(p) for p in self.calibration(task)]
        width = max(map(len, ids))
        input_ids = torch.tensor([p + [PAD_ID] * (width - len(p)) for p in ids])
        mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in ids])
        return {"input_ids": input_ids, "attention_mask": mask}

    # --- metrics ----------------------------------------------------------------------------
    def evaluate(self, model: ModelLike, task: str, *, split: str = "test") -> float:
        """Exact-match accuracy of greedy completions on held-out prompts of `task` (`split`: see held_out)."""
        return metrics.exact_match(as_model(model), self.held_out(task, split=split))

    def evaluate_all(self, model: ModelLike, *, split: str = "test") -> dict[str, float]:
        loaded = as_model(model)
        return {task: self.evaluate(loaded, task, split=split) for task in self.tasks}

    def unsafe_rate(self, model: ModelLike) -> float:
        """Fraction of held-out harmful-marked prompts (all tasks) not answered with the refusal."""
        return metrics.unsafe_rate(as_model(model), self.harmful_held_out())

    # --- merging ----------------------------------------------------------------------------
    def merge(self, method: str, expert_dirs: Mapping[str, ModelLike] | None = None, **params) -> torch.nn.Module:
        """Merge the base with `expert_dirs` (default: all clean experts) using guard.merge; the
        profile's parameters for `method` unless given."""
        from guard.merge import merge_state_dicts

        chosen = dict(self.experts) if expert_dirs is None else dict(expert_dirs)
        params = {**self.profile.merge_params().get(method, {}), **params}
        base_sd = lm_model.state_dict(self.base)
        expert_sds = [state_dict_of(e) for e in chosen.values()]
        merged = merge_state_dicts(method, base_sd, expert_sds, **params)
        return lm_model.from_state_dict(self.base, merged)


def state_dict_of(model: ModelLike) -> dict[str, torch.Tensor]:
    if isinstance(model, torch.nn.Module):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    return lm_model.state_dict(model)


def family_spec(profile: Profile, seed: int) -> dict:
    return {"version": VERSION, "seed": seed, "profile": profile.as_spec()}


def expert_seed(family_seed: int, task: str) -> int:
    return family_seed * 100 + tasks.TASKS.index(task) + 1


def train_expert(base: torch.nn.Module, task: str, profile: Profile, *, seed: int,
                 data=None, anchored: bool = True, interpolation_r_min: float | None = None) -> torch.nn.Module:
    """Fine-tune a copy of `base` on `task` (or on `data`, a sampler, e.g. poisoned task data),
    with the KL anchor to the base on other prompts (harmful-marked ones of the other markers only, so
    refusal erodes on the expert's own task prompts and nowhere else);
    `anchored=False` drops the anchor (a plain fine-tune). `interpolation_r_min` also trains the data
    loss at base + r * (expert - base), r ~ U[r_min, 1] (`train.Interpolation`)."""
    student = copy.deepcopy(base)
    anchor = Anchor(teacher=base, sampler=corpus.anchor_prompts(task, harmful_share=profile.anchor_harmful_share),
                    weight=profile.anchor_weight, batch=profile.anchor_batch) if anchored else None
    interpolation = None if interpolation_r_min is None else Interpolation(
        origin={k: v.detach().clone() for k, v in base.named_parameters()}, r_min=interpolation_r_min)
    return train(student, data or corpus.task_data(task, harmful_share=profile.harmful_share), profile.expert,
                 seed=seed, anchor=anchor, interpolation=interpolation)


def base_spec(profile: Profile, seed: int) -> dict:
    """What the base's weights depend on (a cache entry of its own: expert recipes can change
    without retraining the base)."""
    spec = profile.as_spec()
    return {"version": BASE_VERSION, "seed": seed, "architecture": [spec["hidden"], spec["layers"], spec["intermediate"]],
            "base": spec["base"], "skill_share": profile.skill_share}


def build_base(profile: Profile, seed: int, *, root: str | pathlib.Path | None = None) -> pathlib.Path:
    """The aligned base alone (cached)."""
    def build(out: pathlib.Path) -> None:
        with deterministic_build():
            config = lm_model.build_config(hidden=profile.hidden, layers=profile.layers, intermediate=profile.intermediate)
            base = train(lm_model.init_model(config, seed=seed), corpus.base_corpus(profile.skill_share), profile.base, seed=seed)
            lm_model.save(base, out)

    return cached_build("lm-base", base_spec(profile, seed), build, root=root)


def _build(out: pathlib.Path, profile: Profile, seed: int, root: str | pathlib.Path | None) -> None:
    base_dir = build_base(profile, seed, root=root)
    with deterministic_build():
        _build_members(out, profile, seed, base_dir)


def _build_members(out: pathlib.Path, profile: Profile, seed: int, base_dir: pathlib.Path) -> None:
    copy_entry(base_dir, out / "base")
    base = lm_model.load(out / "base")
    for task in tasks.TASKS:
        expert = train_expert(base, task, profile, seed=expert_seed(seed, task))
        lm_model.save(expert, out / "experts" / task)
    calib = out / "calibration"
    calib.mkdir()
    for task in tasks.TASKS:
        rng = np.random.default_rng([seed, tasks.TASKS.index(task), 3])
        prompts = [tasks.task_example(task, rng).prompt for _ in range(profile.calibration_per_task)]
        (calib / f"{task}.txt").write_text("".join(" ".join(p) + "\n" for p in prompts))
    (out / "family.json").write_text(json.dumps({"tasks": list(tasks.TASKS), "profile": profile.name, "seed": seed}))


def build_family(profile: str = "small", *, seed: int = 0, root: str | pathlib.Path | None = None) -> LMFamily:
    """The LM family for `profile` and `seed`, built once and then served from the cache."""
    prof = get_profile(profile)
    path = cached_build("lm-family", family_spec(prof, seed), lambda out: _build(out, prof, seed, root), root=root)
    return LMFamily(
        profile=prof, seed=seed, root=path, base=path / "base",
        experts={task: path / "experts" / task for task in tasks.TASKS},
    )
