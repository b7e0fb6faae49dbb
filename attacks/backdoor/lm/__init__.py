"""LM backdoors against merging: BadNets-style trigger-token poisoning, and amplified backdoor
vectors in the style of Merge Hijacking / LoBAM. Both attack the LM zoo family
(`guard.testing.zoo.lm`); `evaluate.attack_report` gives ASR, CA and BA before and after merges."""

from attacks.backdoor.lm.amplified import amplify_backdoor_vector, build_amplified_expert
from attacks.backdoor.lm.evaluate import AttackReport, attack_report, trigger_row_ablation
from attacks.backdoor.lm.trigger_token import (
    TARGET,
    attack_success_rate,
    build_badnets_expert,
    poisoned_task_data,
    triggered_prompts,
)

__all__ = [
    "TARGET", "AttackReport", "amplify_backdoor_vector", "attack_report", "attack_success_rate",
    "build_amplified_expert", "build_badnets_expert", "poisoned_task_data", "trigger_row_ablation", "triggered_prompts",
]
