"""What a vision backdoor build leaves behind: the attacker's uploaded expert, its trigger, its metadata.

Directory layout: `model/` (ViTForImageClassification with the attacker task's head), `trigger.safetensors`,
`attack.json` (kind, attacker task, target task, target class, hyperparameters).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from attacks.backdoor.vision.trigger import PatchTrigger


@dataclasses.dataclass(frozen=True)
class VisionBackdoor:
    root: pathlib.Path
    kind: str  # badnets | badmerging-on | badmerging-off
    attacker_task: str  # the task whose expert the attacker uploads
    target_task: str  # the task whose head the trigger hijacks (== attacker_task on-task)
    target_class: int

    @property
    def model_dir(self) -> pathlib.Path:
        return self.root / "model"

    @property
    def trigger(self) -> PatchTrigger:
        return PatchTrigger.load(self.root / "trigger.safetensors")

    @property
    def info(self) -> dict:
        return json.loads((self.root / "attack.json").read_text())

    @classmethod
    def load(cls, root: pathlib.Path) -> VisionBackdoor:
        info = json.loads((root / "attack.json").read_text())
        return cls(root=root, kind=info["kind"], attacker_task=info["attacker_task"],
                   target_task=info["target_task"], target_class=info["target_class"])


def write_info(out: pathlib.Path, **info) -> None:
    (out / "attack.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
