"""A small trained merge setup for the MergeLock figures: a tiny ViT base on scikit-learn's digits and
four task experts fine-tuned from it (full fine-tuning, own classifier head each).

This stands in for the model zoo until its vision family can be used; everything is seeded, trained on
CPU in about half a minute and cached with the zoo's content-hashed cache.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping

import torch

VERSION = "lock-digits-v2"
TASKS: dict[str, int] = {"transposed": 10, "inverted": 10, "shifted": 10, "parity": 2}  # task -> classes
HEAD = "classifier."
SPEC = {"version": VERSION, "seed": 0, "pretrain_steps": 600, "finetune_steps": 100, "lr_pretrain": 2e-3,
        "lr_finetune": 3e-4, "batch": 64, "hidden": 64, "layers": 2, "heads": 4}


def _images_labels():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [n, 1, 8, 8]
    y = torch.tensor(digits.target, dtype=torch.long)
    return x, y


def task_data(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of `task` (all 1797 images; the split is fixed in `split`)."""
    x, y = _images_labels()
    if task == "pretrain":
        return x, y
    if task == "transposed":
        return x.transpose(-1, -2).contiguous(), y
    if task == "inverted":
        return 1.0 - x, y
    if task == "shifted":
        return torch.roll(x, shifts=(2, 2), dims=(-2, -1)), y
    if task == "parity":
        return torch.flip(x, dims=(-1,)), y % 2
    raise ValueError(task)


def split(n: int, part: str) -> torch.Tensor:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1234))
    cut = int(0.7 * n)
    return order[:cut] if part == "train" else order[cut:]


def build_config(num_labels: int = 10):
    import transformers

    return transformers.ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=SPEC["hidden"],
                                  intermediate_size=2 * SPEC["hidden"], num_hidden_layers=SPEC["layers"],
                                  num_attention_heads=SPEC["heads"], num_labels=num_labels,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _train(model, x, y, *, steps: int, lr: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (SPEC["batch"],), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _build(out: pathlib.Path) -> None:
    import transformers

    torch.manual_seed(SPEC["seed"])
    torch.set_num_threads(2)
    base = transformers.ViTForImageClassification(build_config())
    # The base learns digit identity from a mixture of all views (a generic "pretrained" body, like a
    # foundation model); each expert then specialises to one view or labelling with its own head.
    views = [task_data(task)[0] for task in ("pretrain", *TASKS)]
    x, y = torch.cat(views), task_data("pretrain")[1].repeat(len(views))
    train = torch.cat([split(len(views[0]), "train") + i * len(views[0]) for i in range(len(views))])
    _train(base, x[train], y[train], steps=SPEC["pretrain_steps"], lr=SPEC["lr_pretrain"], seed=1)
    base.save_pretrained(out / "base")
    for i, (task, classes) in enumerate(TASKS.items()):
        expert = transformers.ViTForImageClassification(build_config(classes))
        state = {k: v for k, v in base.state_dict().items() if classes == 10 or not k.startswith(HEAD)}
        expert.load_state_dict(state, strict=False)  # base body; base head where the labels agree
        tx, ty = task_data(task)
        train = split(len(tx), "train")
        _train(expert, tx[train], ty[train], steps=SPEC["finetune_steps"], lr=SPEC["lr_finetune"], seed=10 + i)
        expert.save_pretrained(out / task)
    (out / "setup.json").write_text(json.dumps({"spec": SPEC, "tasks": TASKS}, indent=2))


def is_head(name: str) -> bool:
    """A per-task classifier head of the ViT setups: kept out of every merge, each task scored with its own."""
    return name.startswith(HEAD)


def head_of(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier head of a ViT state dict, as {'weight', 'bias'}."""
    return {k.removeprefix(HEAD): v for k, v in state.items() if k.startswith(HEAD)}


@dataclasses.dataclass(frozen=True)
class MergeSetup:
    """What the figures need: a base, experts with their own heads (state dicts with the module's tensor
    names), the config, per-task accuracy of a body with a task's head, and the task's chance level.
    evaluate_fn(body, task, head_source): head_source is the state dict whose task head scores the body
    (None: the task expert's own); setups without per-task heads ignore it."""

    root: pathlib.Path
    base: dict[str, torch.Tensor]
    experts: dict[str, dict[str, torch.Tensor]]
    config: object
    evaluate_fn: Callable[[Mapping[str, torch.Tensor], str, Mapping[str, torch.Tensor] | None], float]
    labels_fn: Callable[[str], torch.Tensor] | None
    name: str
    methods: Mapping[str, dict] | None = None  # merge settings; None: the run's defaults
    # Tensors every merge keeps at the base's value (the ViT setups' per-task heads); None: merge all.
    exclude: Callable[[str], bool] | None = is_head
    chance_fn: Callable[[str], float] | None = None  # the floor of "retained"; None: from labels_fn
    metric: str = "accuracy"
    # An optional softer score (name, fn(state, task)), reported next to the metric for the default bound.
    secondary: tuple[str, Callable[[Mapping[str, torch.Tensor], str], float]] | None = None
    test_size_fn: Callable[[str], int] | None = None  # held-out examples per task (for standard errors)
    seed: int = 0

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.experts)

    @property
    def has_heads(self) -> bool:
        """Per-task heads kept out of the merge (the ViT setups)."""
        return self.exclude is not None

    def evaluate(self, body: Mapping[str, torch.Tensor], task: str, *,
                 head_source: Mapping[str, torch.Tensor] | None = None) -> float:
        """Accuracy on `task`'s held-out split of `body` (for the ViT setups: non-head weights, scored with
        the head of `head_source`, by default the task expert's own)."""
        return self.evaluate_fn(body, task, head_source)

    def test_size(self, task: str) -> int:
        if self.test_size_fn is not None:
            return self.test_size_fn(task)
        return len(self.labels_fn(task)) if self.labels_fn is not None else 0

    def chance(self, task: str) -> float:
        """Accuracy of always answering the most frequent held-out label (or the setup's own floor)."""
        if self.chance_fn is not None:
            return self.chance_fn(task)
        labels = self.labels_fn(task)
        return float(torch.bincount(labels).max() / len(labels))


def accuracy(body: Mapping[str, torch.Tensor], head_source: Mapping[str, torch.Tensor], task: str) -> float:
    import transformers

    model = transformers.ViTForImageClassification(build_config(TASKS[task])).eval()
    state = {k: v for k, v in body.items() if not k.startswith(HEAD)}
    state.update({k: v for k, v in head_source.items() if k.startswith(HEAD)})
    model.load_state_dict(state)
    x, y = task_data(task)
    test = split(len(x), "test")
    with torch.no_grad():
        pred = model(pixel_values=x[test]).logits.argmax(-1)
    return float((pred == y[test]).float().mean())


def load_setup(*, root: str | pathlib.Path | None = None) -> MergeSetup:
    """Build (once, cached) and load the digits setup; state dicts use the module's own tensor names."""
    import transformers

    from guard.testing.zoo.cache import cached_build

    path = cached_build("lock-digits-vit", SPEC, _build, root=root)

    def state(name: str) -> dict[str, torch.Tensor]:
        return transformers.ViTForImageClassification.from_pretrained(path / name).state_dict()

    experts = {task: state(task) for task in TASKS}

    def labels(task: str) -> torch.Tensor:
        y = task_data(task)[1]
        return y[split(len(y), "test")]

    return MergeSetup(path, state("base"), experts, transformers.AutoConfig.from_pretrained(path / "base"),
                      lambda body, task, head: accuracy(body, experts[task] if head is None else head, task), labels,
                      f"digits-ViT ({SPEC['layers']} layers, hidden {SPEC['hidden']}, attacks/restoration/experts.py)")


def load_zoo_setup(profile: str = "small", *, seed: int = 0) -> MergeSetup:
    """The model zoo's vision family (guard.testing.zoo.vision) in the same shape."""
    import transformers

    from guard.testing.zoo import vision

    family = vision.build_family(profile, seed=seed)
    from guard.testing.zoo.vision.metrics import load_state

    experts = {task: load_state(family.expert_dir(task)) for task in family.tasks}
    size = family.profile.image_size

    def evaluate(body, task, head_source):
        head = family.head(task) if head_source is None else head_of(head_source)
        model = vision.model_from_state(family.base_dir, body, head)
        return vision.accuracy(model, task, image_size=size)

    return MergeSetup(family.root, load_state(family.base_dir), experts,
                      transformers.AutoConfig.from_pretrained(family.base_dir), evaluate,
                      lambda task: family.task_data(task, "test")[1],
                      f"zoo vision family, profile {profile}, seed {seed} ({family.profile.layers} layers, "
                      f"hidden {family.profile.hidden})", seed=seed)
