"""Backdoors against merging of the ViT digits family (docs/zoo-vision.md).

- `build_badnets(family, BadNetsSpec(...)) -> VisionBackdoor`: fixed checkerboard patch, poisoned labels.
- `build_badmerging(family, BadMergingSpec(...)) -> VisionBackdoor`: on-task (`ON_TASK`) or off-task
  (`OFF_TASK`) BadMerging with the feature-interpolation loss plus a small weight-space term.
- `evaluate_backdoor(family, backdoor) -> BackdoorReport`: ASR before merging and CA / BA / ASR after
  task-arithmetic and TIES merges.
"""

from attacks.backdoor.vision.artifacts import VisionBackdoor
from attacks.backdoor.vision.badmerging import OFF_TASK, ON_TASK, BadMergingSpec, build_badmerging
from attacks.backdoor.vision.badnets import BadNetsSpec, build_badnets
from attacks.backdoor.vision.evaluate import BackdoorReport, MergeOutcome, evaluate_backdoor
from attacks.backdoor.vision.trigger import PatchTrigger, checkerboard

__all__ = [
    "OFF_TASK", "ON_TASK", "BackdoorReport", "BadMergingSpec", "BadNetsSpec", "MergeOutcome", "PatchTrigger",
    "VisionBackdoor", "build_badmerging", "build_badnets", "checkerboard", "evaluate_backdoor",
]
