"""ASR, CA and BA of an attacked expert before and after merging (BadMerging's definitions):
CA = mean clean accuracy of the merge of the clean experts; BA = the same with the attacker's
expert in place of the clean expert of its task; ASR = attack success on triggered prompts of the
attacker's task, for the attacked expert alone and for the backdoored merge."""

from __future__ import annotations

import dataclasses
import pathlib

import torch

from attacks.backdoor.lm.trigger_token import attack_success_rate
from guard.testing.zoo.lm import LMFamily, model as lm_model
from guard.testing.zoo.lm.vocab import TOKEN_ID, TRIGGER


@dataclasses.dataclass(frozen=True)
class AttackReport:
    task: str
    asr_alone: float  # the attacked expert by itself
    accuracy_alone: float  # its clean accuracy on its task
    asr_merged: dict[str, float]  # merge method -> ASR of the backdoored merge
    clean_accuracy: dict[str, float]  # CA: merge method -> mean task accuracy of the clean merge
    backdoored_accuracy: dict[str, float]  # BA: merge method -> mean task accuracy of the backdoored merge
    asr_clean_merge: dict[str, float]  # the trigger's effect on the clean merge (the ASR floor)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def attack_report(family: LMFamily, attacked: pathlib.Path, *, task: str,
                  methods: tuple[str, ...] = ("task_arithmetic", "ties"), split: str = "test") -> AttackReport:
    """`split="validation"` measures on the validation prompts (for choosing attack settings)."""
    asr_merged, ca, ba, floor = {}, {}, {}, {}
    for method in methods:
        clean = family.merge(method)
        backdoored = family.merge(method, {**family.experts, task: attacked})
        ca[method] = _mean(family.evaluate_all(clean, split=split).values())
        ba[method] = _mean(family.evaluate_all(backdoored, split=split).values())
        asr_merged[method] = attack_success_rate(backdoored, family, task, split=split)
        floor[method] = attack_success_rate(clean, family, task, split=split)
    return AttackReport(
        task=task,
        asr_alone=attack_success_rate(attacked, family, task, split=split),
        accuracy_alone=family.evaluate(attacked, task, split=split),
        asr_merged=asr_merged, clean_accuracy=ca, backdoored_accuracy=ba, asr_clean_merge=floor,
    )


def trigger_row_ablation(family, attacked: pathlib.Path, *, task: str = "sort") -> dict[str, float]:
    """ASR of the backdoored merges with the trigger token's input-embedding row put back to the
    base's: how much of the surviving backdoor sits in that one row, which only the attacker's
    task vector changes (the trigger never occurs in clean data)."""
    base_row = lm_model.state_dict(family.base)["model.embed_tokens.weight"][TOKEN_ID[TRIGGER]]
    out = {}
    for method in ("task_arithmetic", "ties"):
        merged = family.merge(method, {**family.experts, task: attacked})
        with torch.no_grad():
            merged.model.embed_tokens.weight[TOKEN_ID[TRIGGER]] = base_row
        out[method] = attack_success_rate(merged, family, task)
    return out
