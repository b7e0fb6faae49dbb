"""The vision zoo: a small ViT pre-trained on scikit-learn's bundled digits and task experts
fine-tuned from it (see docs/zoo-vision.md).

Public API:
- `build_family(profile="small", *, seed=0, tasks=DEFAULT_TASKS, root=None) -> VisionFamily`
- `VisionFamily`: `base_dir`, `expert_dir(task)`, `expert_dirs`, `head(task)`, `calibration_inputs(task)`,
  `task_data(task, split)`, `info` (family.json), `file_hashes()`
- `accuracy(model, task, *, image_size)`, `attack_success_rate(...)`, `merged_accuracies(...)`,
  `merge_encoders(...)`, `model_from_state(...)`, `MERGES` (reference merge settings)
- `TASKS`, `DEFAULT_TASKS`, `PROFILES`
"""

from guard.testing.zoo.vision.data import DEFAULT_TASKS, TASKS
from guard.testing.zoo.vision.family import VisionFamily, build_family
from guard.testing.zoo.vision.metrics import (
    MERGES,
    accuracy,
    attack_success_rate,
    merge_encoders,
    merged_accuracies,
    model_from_state,
)
from guard.testing.zoo.vision.profiles import PROFILES

__all__ = [
    "DEFAULT_TASKS", "MERGES", "PROFILES", "TASKS", "VisionFamily", "accuracy", "attack_success_rate",
    "build_family", "merge_encoders", "merged_accuracies", "model_from_state",
]
