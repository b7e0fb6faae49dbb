"""LM backdoors against merging: BadNets-style trigger-token poisoning, the same trained across merge
shares (merge-aware, BadMerging's weight-space interpolation), and amplified backdoor vectors in the
style of Merge Hijacking / LoBAM. All attack the LM zoo family (`guard.testing.zoo.lm`);
`evaluate.attack_report` gives ASR, CA and BA before and after merges."""

from attacks.backdoor.lm.amplified import amplification_of, amplify_backdoor_vector, build_amplified_expert, choose_amplification
from attacks.backdoor.lm.evaluate import AttackReport, attack_report, trigger_row_ablation
from attacks.backdoor.lm.trigger_token import (
    TARGET,
    attack_success_rate,
    build_badnets_expert,
    build_merge_aware_expert,
    poisoned_task_data,
    triggered_prompts,
)

__all__ = [
    "TARGET", "AttackReport", "amplification_of", "amplify_backdoor_vector", "attack_report", "attack_success_rate",
    "build_amplified_expert", "build_badnets_expert", "build_merge_aware_expert", "choose_amplification",
    "poisoned_task_data", "trigger_row_ablation", "triggered_prompts",
]
