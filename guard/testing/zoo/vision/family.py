"""Build (or fetch from the cache) the ViT digits family: a pre-trained base and one expert per task.

Layout of a family directory:
    base/                  ViTForImageClassification, head = 10-digit pre-training head
    experts/<task>/        ViTForImageClassification fine-tuned from base; `classifier.*` is the task head
    calibration/<task>.safetensors   {"pixel_values": [N, 1, S, S]} unlabeled task inputs
    family.json            tasks, profile, seed, per-model accuracies (test and validation) measured at build time
Every expert's head is a linear probe fitted on the base's features and then frozen while the encoder
is fine-tuned, so heads stay valid on merged encoders; merges leave `classifier.*` out.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib

import torch
from safetensors.torch import load_file, save_file

from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.vision import data, train
from guard.testing.zoo.vision import model as vit
from guard.testing.zoo.vision.metrics import accuracy
from guard.testing.zoo.vision.profiles import Profile, profile as get_profile

# Bump when anything that changes the built bytes changes.
VERSION = "vision-family-2"


@dataclasses.dataclass(frozen=True)
class VisionFamily:
    root: pathlib.Path
    profile: Profile
    seed: int
    tasks: tuple[str, ...]

    @property
    def base_dir(self) -> pathlib.Path:
        return self.root / "base"

    def expert_dir(self, task: str) -> pathlib.Path:
        if task not in self.tasks:
            raise ValueError(f"task {task!r} is not in this family ({', '.join(self.tasks)})")
        return self.root / "experts" / task

    @property
    def expert_dirs(self) -> dict[str, pathlib.Path]:
        return {t: self.expert_dir(t) for t in self.tasks}

    def calibration_path(self, task: str) -> pathlib.Path:
        return self.root / "calibration" / f"{task}.safetensors"

    def calibration_inputs(self, task: str) -> torch.Tensor:
        """Unlabeled inputs of `task` (pixel_values [N, 1, S, S]) for methods that need calibration data."""
        return load_file(self.calibration_path(task))["pixel_values"]

    def task_data(self, task: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        return data.task_data(task, split, image_size=self.profile.image_size)

    def head(self, task: str) -> dict[str, torch.Tensor]:
        """The task head ({'weight', 'bias'}) as stored in the expert directory."""
        state = load_file(self.expert_dir(task) / "model.safetensors")
        return {"weight": state["classifier.weight"], "bias": state["classifier.bias"]}

    def expert_accuracy(self, task: str, *, split: str = "test") -> float:
        """The expert's accuracy on its task, measured at build time (family.json), on `split`
        (test or validation)."""
        key = {"test": "accuracy", "validation": "validation_accuracy"}.get(split)
        if key is None:
            raise ValueError(f"unknown split {split!r}; known: test, validation")
        return self.info["experts"][task][key]

    @property
    def info(self) -> dict:
        return json.loads((self.root / "family.json").read_text())

    def file_hashes(self) -> dict[str, str]:
        """sha256 of every model and calibration file, keyed by path relative to the family root."""
        import hashlib

        out = {}
        for path in sorted(self.root.rglob("*.safetensors")):
            out[str(path.relative_to(self.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out


def new_vit(prof: Profile, *, num_labels: int, seed: int):
    return vit.build_vit(image_size=prof.image_size, hidden=prof.hidden, layers=prof.layers, heads=prof.heads,
                         mlp=prof.mlp, num_labels=num_labels, seed=seed)


def _label_names(task: str) -> dict[int, str]:
    return {i: f"{task}:{i}" for i in range(data.task(task).num_labels)}


def train_expert(base, task: str, prof: Profile, *, seed: int, index: int):
    """Fit the task head on θ0 features, then fine-tune the encoder under it (head frozen).
    Returns (expert model, accuracy of θ0 with the fitted head). Call inside `train.deterministic()`."""
    spec = data.task(task)
    pixels, labels = data.task_data(task, "train", image_size=prof.image_size)
    head = train.linear_probe(train.encode(base, pixels), labels, spec.num_labels, steps=prof.probe_steps,
                              seed=seed + index)
    expert = vit.with_head(copy.deepcopy(base), head)
    probe_accuracy = accuracy(expert, task, image_size=prof.image_size)
    train.optimise(expert, pixels, labels, schedule=prof.finetune, seed=seed + 100 + index,
                   loss=train.cross_entropy_loss(), trainable=train.encoder_only)
    expert.config.id2label = _label_names(task)
    expert.config.label2id = {v: k for k, v in expert.config.id2label.items()}
    return expert, probe_accuracy


def _build(out: pathlib.Path, prof: Profile, seed: int, tasks: tuple[str, ...]) -> None:
    size = prof.image_size
    with train.deterministic():
        base = new_vit(prof, num_labels=10, seed=seed)
        pixels, labels = data.task_data(data.PRETRAIN.name, "train", image_size=size)
        train.optimise(base, pixels, labels, schedule=prof.pretrain, seed=seed,
                       loss=train.cross_entropy_loss(augment=True, domain_share=prof.pretrain_domain_share),
                       trainable=train.everything)
        base.config.id2label = _label_names(data.PRETRAIN.name)
        base.config.label2id = {v: k for k, v in base.config.id2label.items()}
        vit.save(base, out / "base")
        info = {"version": VERSION, "profile": prof.name, "seed": seed, "tasks": list(tasks),
                "base": {"task": data.PRETRAIN.name, "accuracy": accuracy(base, data.PRETRAIN.name, image_size=size)},
                "experts": {}}
        (out / "calibration").mkdir()
        for i, task in enumerate(tasks):
            expert, probe_accuracy = train_expert(base, task, prof, seed=seed, index=i)
            vit.save(expert, out / "experts" / task)
            info["experts"][task] = {"description": data.task(task).description, "num_labels": data.task(task).num_labels,
                                     "base_probe_accuracy": probe_accuracy,
                                     "accuracy": accuracy(expert, task, image_size=size),
                                     "validation_accuracy": accuracy(expert, task, image_size=size, split="validation")}
            save_file({"pixel_values": data.calibration_inputs(task, image_size=size)},
                      out / "calibration" / f"{task}.safetensors")
    (out / "family.json").write_text(json.dumps(info, indent=2, sort_keys=True))


def family_spec(prof: Profile, seed: int, tasks: tuple[str, ...]) -> dict:
    return {"version": VERSION, "profile": prof.family_dict(), "seed": seed, "tasks": list(tasks),
            "split_seed": data.SPLIT_SEED, "split_sizes": [data.N_TEST, data.N_CALIBRATION, data.N_VALIDATION]}


def build_family(profile: str = "small", *, seed: int = 0, tasks: tuple[str, ...] = data.DEFAULT_TASKS,
                 root: pathlib.Path | str | None = None) -> VisionFamily:
    """The family for (profile, seed, tasks), built once and then served from the cache."""
    prof = get_profile(profile)
    for task in tasks:
        data.task(task)  # unknown names fail before any training
    path = cached_build("vision-family", family_spec(prof, seed, tuple(tasks)),
                        lambda out: _build(out, prof, seed, tuple(tasks)), root=root)
    return VisionFamily(root=path, profile=prof, seed=seed, tasks=tuple(tasks))
