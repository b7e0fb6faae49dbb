"""config.json: strict parsing and architecture detection (model_type / architectures)."""

from __future__ import annotations

import dataclasses

from guard.errors import InputError

CONFIG_NAME = "config.json"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    raw: dict
    model_type: str | None
    architectures: tuple[str, ...]

    @property
    def architecture(self) -> str | None:
        """The class transformers would build (architectures[0]), else the model_type."""
        return self.architectures[0] if self.architectures else self.model_type


def parse_config(value: object, *, where: str) -> ModelConfig:
    """Validate the parsed config.json object. `where` names the file in errors."""
    if not isinstance(value, dict):
        raise InputError(f"config must be a JSON object, found {type(value).__name__}", path=where, rule="config-not-object")
    model_type = value.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise InputError(f"model_type must be a string, found {type(model_type).__name__}", path=where, rule="config-model-type")
    archs = value.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise InputError("architectures must be a list of strings", path=where, rule="config-architectures")
    return ModelConfig(raw=value, model_type=model_type, architectures=tuple(archs))
