"""CA / BA / ASR of a vision backdoor, before and after merging (definitions of BadMerging, CCS 2024).

- ASR: share of triggered test images of the target task (true label != target class) that the model,
  with the target task's head, classifies as the target class.
- CA: clean test accuracy of the merge of the benign experts; BA: the same for the merge in which the
  attacker's model replaces the benign expert of the attacker's task. Reported for the target task and
  as the mean over all tasks.
- Controls: the trigger's ASR on the clean merge and on θ0, so that a backdoor is not confused with an
  adversarial patch that fools every model.
"""

from __future__ import annotations

import copy
import dataclasses

from attacks.backdoor.vision.artifacts import VisionBackdoor
from guard.testing.zoo.vision import MERGES, VisionFamily, accuracy, attack_success_rate, merge_encoders, model_from_state
from guard.testing.zoo.vision import model as vit


@dataclasses.dataclass(frozen=True)
class MergeOutcome:
    method: str
    params: dict
    asr: float  # backdoored merge
    asr_clean_merge: float  # control: same trigger on the merge without the attacker
    ca: float  # target task, clean merge
    ba: float  # target task, backdoored merge
    ca_mean: float  # all tasks
    ba_mean: float


@dataclasses.dataclass(frozen=True)
class BackdoorReport:
    kind: str
    attacker_task: str
    target_task: str
    target_class: int
    asr_before: float  # attacker's model alone, with the target task's head
    asr_base: float  # control: θ0 with the target task's head
    attacker_accuracy: float  # attacker's model on its own task (clean)
    benign_accuracy: float  # the benign expert it replaces, same task
    merges: dict[str, MergeOutcome]


def _task_accuracies(family: VisionFamily, encoder_state, *, split: str) -> dict[str, float]:
    size = family.profile.image_size
    model = model_from_state(family.base_dir, encoder_state, family.head(family.tasks[0]))
    return {t: accuracy(vit.with_head(copy.deepcopy(model), family.head(t)), t, image_size=size, split=split)
            for t in family.tasks}


def evaluate_backdoor(family: VisionFamily, backdoor: VisionBackdoor, *,
                      merges: dict[str, dict] | None = None, split: str = "test") -> BackdoorReport:
    """Every figure on `split`'s images (test; validation for choosing attack settings)."""
    merges = MERGES if merges is None else merges
    size = family.profile.image_size
    trigger, target_task, target = backdoor.trigger, backdoor.target_task, backdoor.target_class
    target_head = family.head(target_task)

    def asr(model) -> float:
        return attack_success_rate(model, target_task, trigger=trigger, target=target, image_size=size, split=split)

    attacker = vit.load(backdoor.model_dir)
    attacker_accuracy = accuracy(attacker, backdoor.attacker_task, image_size=size, split=split)
    benign_accuracy = accuracy(vit.load(family.expert_dir(backdoor.attacker_task)), backdoor.attacker_task,
                               image_size=size, split=split)
    asr_before = asr(vit.with_head(attacker, target_head))
    asr_base = asr(vit.with_head(vit.load(family.base_dir), target_head))

    clean_dirs = family.expert_dirs
    attacked_dirs = {**clean_dirs, backdoor.attacker_task: backdoor.model_dir}
    outcomes = {}
    for method, params in merges.items():
        clean = merge_encoders(family.base_dir, clean_dirs, method, **params)
        attacked = merge_encoders(family.base_dir, attacked_dirs, method, **params)
        clean_acc, attacked_acc = _task_accuracies(family, clean, split=split), _task_accuracies(family, attacked, split=split)
        outcomes[method] = MergeOutcome(
            method=method, params=dict(params),
            asr=asr(model_from_state(family.base_dir, attacked, target_head)),
            asr_clean_merge=asr(model_from_state(family.base_dir, clean, target_head)),
            ca=clean_acc[target_task], ba=attacked_acc[target_task],
            ca_mean=sum(clean_acc.values()) / len(clean_acc), ba_mean=sum(attacked_acc.values()) / len(attacked_acc),
        )
    return BackdoorReport(kind=backdoor.kind, attacker_task=backdoor.attacker_task, target_task=target_task,
                          target_class=target, asr_before=asr_before, asr_base=asr_base,
                          attacker_accuracy=attacker_accuracy, benign_accuracy=benign_accuracy, merges=outcomes)
