"""What a merge method is: its parameters, what inputs it needs, and one function over one tensor group.

A method never sees files or models, only a `TensorGroup`: one tensor name, the base's tensor (or None)
and every other input's tensor, already cast to the math dtype and on the math device, with the
parameters resolved for that tensor name. Methods are registered in `guard.merge.methods` (one module
each); this module imports none of them, so the registry and the methods import one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pydantic

BaseUse = Literal["required", "optional", "unused"]


class Parameters(pydantic.BaseModel):
    """Base of every method's parameter models: frozen, unknown names refused."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class NoParameters(Parameters):
    pass


@dataclasses.dataclass
class TensorGroup:
    """One tensor's inputs for a method. `models` is in config order; methods may empty it as they
    go (to release memory early). `model_params[i]` belongs to `models[i]`."""

    name: str
    base: Any  # torch.Tensor | None
    models: list
    model_params: Sequence[Parameters]
    params: Parameters
    generator: Any = None  # torch.Generator for random methods (seeded once per merge)
    magnitude_mask: str = "threshold"  # or "argsort" (mergekit's order); see guard.merge.sparsify


@dataclasses.dataclass(frozen=True)
class MergeMethod:
    name: str
    description: str
    reference: str
    merge: Callable[[TensorGroup], Any]  # -> merged tensor (math dtype, on the group's device)
    params: type[Parameters] = NoParameters  # global parameters (`parameters:` at the top of the config)
    model_params: type[Parameters] = NoParameters  # per-model parameters (also settable globally)
    base: BaseUse = "required"
    min_models: int = 1  # non-base inputs
    max_models: int | None = None
    random: bool = False  # draws from the merge's generator

    def parameter_names(self) -> tuple[set[str], set[str]]:
        return set(_field_names(self.params)), set(_field_names(self.model_params))


def _field_names(model: type[pydantic.BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def validate_params(model: type[Parameters], values: Mapping[str, Any]) -> Parameters:
    """Build a parameter model; pydantic errors propagate (the caller knows the file and field)."""
    return model.model_validate(dict(values))


class Registry:
    """Method name -> MergeMethod. Built once in guard.merge.methods from an explicit list."""

    def __init__(self, methods: Sequence[MergeMethod] = ()):
        self._methods: dict[str, MergeMethod] = {}
        for method in methods:
            self.register(method)

    def register(self, method: MergeMethod) -> MergeMethod:
        if method.name in self._methods:
            raise ValueError(f"merge method {method.name!r} registered twice")
        self._methods[method.name] = method
        return method

    def get(self, name: str) -> MergeMethod:
        from guard.errors import InputError

        try:
            return self._methods[name]
        except KeyError:
            raise InputError(f"unknown merge method {name!r}; known: {', '.join(sorted(self._methods))}",
                             rule="merge-method") from None

    def names(self) -> list[str]:
        return sorted(self._methods)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __iter__(self):
        return iter(self._methods.values())
