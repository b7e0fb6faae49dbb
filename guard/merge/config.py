"""The merge config: the subset of mergekit's YAML that guard runs, plus a `guard:` section.

    merge_method: ties
    base_model: ./base
    models:
      - model: ./expert-a
        parameters: {weight: 0.5, density: 0.5}
      - model: ./expert-b
        parameters:
          weight: [{filter: lm_head, value: 0.0}, {value: 0.5}]   # first matching filter wins
          density: 0.5
    parameters: {normalize: true}       # global parameters (and defaults for per-model ones)
    dtype: bfloat16                     # math dtype (default: each tensor's stored dtype)
    out_dtype: bfloat16                 # output dtype (default: dtype)
    guard:
      policy: policies/strict.yaml      # default: the strict policy
      device: auto                      # cpu | cuda | auto
      seed: 0                           # random methods (dare_*)
      signatures: {./expert-a: ./sigs/expert-a.sig}   # default: <input>/model.sig
      lock_keys: {./expert-b: ./expert-b.lockkey}      # unlock a MergeLock-protected input
      probes: {...}                     # stage sections, validated by their stages
      dam: {...}
      enchtable: {...}

Model paths are taken relative to the working directory (as mergekit does); other paths in the
`guard:` section relative to the config file. Everything is validated with pydantic; an error names
the file and the field (exit 2). What guard does differently from mergekit: docs/merge.md.
"""

from __future__ import annotations

import os
import pathlib
from typing import Annotated, Any, Literal

import pydantic

from guard.errors import InputError
from guard.merge.method import MergeMethod

DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16",
          "float32": "float32", "fp32": "float32", "float": "float32", "float64": "float64"}
HUB_PREFIX = "hf:"
MAX_CONFIG_BYTES = 1 << 20
Scalar = bool | int | float | str


class _Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class FilterValue(_Frozen):
    filter: str | None = None  # a substring of the tensor name; absent: matches every tensor
    value: Scalar


Setting = Scalar | list[FilterValue]


class InputModel(_Frozen):
    model: str = pydantic.Field(min_length=1)
    parameters: dict[str, Setting] = {}


class GuardSection(_Frozen):
    policy: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    seed: int = 0
    magnitude_mask: Literal["threshold", "argsort"] = "threshold"
    signatures: dict[str, str] = {}
    lock_keys: dict[str, str] = {}
    probes: dict[str, Any] | None = None
    dam: dict[str, Any] | None = None
    enchtable: dict[str, Any] | None = None


class MergeConfig(_Frozen):
    merge_method: str
    base_model: str | None = None
    models: Annotated[list[InputModel], pydantic.Field(min_length=1)]
    parameters: dict[str, Setting] = {}
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: Literal["base"] | None = None  # guard copies the base's tokenizer files
    guard: GuardSection = GuardSection()
    # Where the config came from: relative `guard:` paths resolve against it (not part of the YAML).
    source: pathlib.Path | None = pydantic.Field(default=None, exclude=True)

    @pydantic.field_validator("dtype", "out_dtype")
    @classmethod
    def _dtype(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; use one of {', '.join(sorted(set(DTYPES.values())))}")
        return DTYPES[value]

    def experts(self) -> list[InputModel]:
        """The non-base inputs, in config order (a `models:` entry naming the base is the base)."""
        return [m for m in self.models if m.model != self.base_model]

    def input_refs(self) -> list[str]:
        """Every input reference once: the base first, then the others in config order, then the safety
        vector (`guard.enchtable.vector`), which is checked like every other input but not merged."""
        refs = [] if self.base_model is None else [self.base_model]
        refs += [m.model for m in self.experts() if m.model not in refs]
        vector = self.safety_vector_ref()
        return refs + ([vector] if vector is not None and vector not in refs else [])

    def safety_vector_ref(self) -> str | None:
        vector = (self.guard.enchtable or {}).get("vector")
        return vector if isinstance(vector, str) and vector else None

    def guard_path(self, value: str) -> pathlib.Path:
        path = pathlib.Path(value)
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path

    def to_json(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


def load_merge_config(path: str | os.PathLike) -> MergeConfig:
    """Read, parse and validate a merge config (YAML or JSON); InputError naming the file and field."""
    import yaml

    path = pathlib.Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"config larger than {MAX_CONFIG_BYTES} bytes", path=path, rule="merge-config")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such config file", path=path, rule="path-not-found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config: {exc}", path=path, rule="path-unreadable") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {str(exc).splitlines()[0]}", path=path, rule="merge-config") from None
    return parse_merge_config(raw, where=path)


def parse_merge_config(raw: object, *, where: str | os.PathLike) -> MergeConfig:
    if not isinstance(raw, dict):
        raise InputError("a merge config must be a mapping", path=where, rule="merge-config")
    for unsupported in ("slices", "modules", "tokenizer", "chat_template"):
        if unsupported in raw:
            raise InputError(f"{unsupported}: not supported by guard (only models: merges; see docs/merge.md)",
                             path=where, rule="merge-config")
    for field, setting in _settings(raw):
        if isinstance(setting, list) and setting and all(isinstance(v, (int, float)) for v in setting):
            raise InputError(f"{field}: gradients (a list of numbers over layers) are not supported; use a value "
                             f"or a list of {{filter, value}}", path=where, rule="merge-config")
    try:
        config = MergeConfig.model_validate({**raw, "source": pathlib.Path(where)})
    except pydantic.ValidationError as exc:
        raise InputError(first_error(exc), path=where, rule="merge-config") from None
    check_method_parameters(config, where=where)
    return config


def _settings(raw: dict):
    params = raw.get("parameters")
    if isinstance(params, dict):
        yield from ((f"parameters.{k}", v) for k, v in params.items())
    models = raw.get("models")
    for i, model in enumerate(models if isinstance(models, list) else []):
        params = model.get("parameters") if isinstance(model, dict) else None
        if isinstance(params, dict):
            yield from ((f"models.{i}.parameters.{k}", v) for k, v in params.items())


def first_error(exc: pydantic.ValidationError) -> str:
    """`field.path: message` of a pydantic error, one line."""
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"]) or "(top level)"
    return f"{field}: {error['msg']}"


def method_of(config: MergeConfig) -> MergeMethod:
    from guard.merge.methods import REGISTRY

    return REGISTRY.get(config.merge_method)


def check_method_parameters(config: MergeConfig, *, where: str | os.PathLike) -> None:
    """Every parameter name known to the method, every value (and every filter branch) valid, the
    input count and the base what the method needs."""
    try:
        method = method_of(config)
    except InputError as exc:
        raise InputError(f"merge_method: {exc.message}", path=where, rule="merge-config") from None
    global_names, model_names = method.parameter_names()
    experts = config.experts()
    if method.base == "required" and config.base_model is None:
        raise InputError(f"base_model: {method.name} needs a base model", path=where, rule="merge-config")
    if len(experts) < method.min_models or (method.max_models is not None and len(experts) > method.max_models):
        wanted = (f"exactly {method.min_models}" if method.max_models == method.min_models else
                  f"at least {method.min_models}" + (f" and at most {method.max_models}" if method.max_models else ""))
        raise InputError(f"models: {method.name} needs {wanted} model(s) besides the base, got {len(experts)}",
                         path=where, rule="merge-config")
    if len({m.model for m in experts}) != len(experts):
        raise InputError("models: the same model is listed twice", path=where, rule="merge-config")
    for name, setting in config.parameters.items():
        if name not in global_names | model_names:
            raise InputError(f"parameters.{name}: unknown parameter of {method.name} (known: "
                             f"{', '.join(sorted(global_names | model_names)) or 'none'})", path=where, rule="merge-config")
        _check_setting(method.params if name in global_names else method.model_params, name, setting,
                       field=f"parameters.{name}", where=where)
    for i, model in enumerate(config.models):
        for name, setting in model.parameters.items():
            if name not in model_names:
                raise InputError(f"models.{i}.parameters.{name}: unknown per-model parameter of {method.name} (known: "
                                 f"{', '.join(sorted(model_names)) or 'none'})", path=where, rule="merge-config")
            _check_setting(method.model_params, name, setting, field=f"models.{i}.parameters.{name}", where=where)
    for model in experts:
        for name in _required(method.model_params):
            if name not in model.parameters and name not in config.parameters:
                raise InputError(f"models: {model.model}: {method.name} needs the parameter {name!r}", path=where,
                                 rule="merge-config")
    for name in _required(method.params):
        if name not in config.parameters:
            raise InputError(f"parameters.{name}: required by {method.name}", path=where, rule="merge-config")
    known = set(config.input_refs())
    for section in ("signatures", "lock_keys"):
        for ref in getattr(config.guard, section):
            if ref not in known:
                raise InputError(f"guard.{section}: {ref!r} is not an input of this merge", path=where,
                                 rule="merge-config")


def _required(model: type[pydantic.BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items() if field.is_required()]


def _check_setting(model: type[pydantic.BaseModel], name: str, setting: Setting, *, field: str,
                   where: str | os.PathLike) -> None:
    values = [setting] if not isinstance(setting, list) else [entry.value for entry in setting]
    adapter = field_adapter(model, name)
    for value in values:
        try:
            adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise InputError(f"{field}: {exc.errors()[0]['msg']} (got {value!r})", path=where,
                             rule="merge-config") from None


def field_adapter(model: type[pydantic.BaseModel], name: str) -> pydantic.TypeAdapter:
    for key, info in model.model_fields.items():
        if (info.alias or key) == name:
            if not info.metadata:
                return pydantic.TypeAdapter(info.annotation)
            return pydantic.TypeAdapter(Annotated[(info.annotation, *info.metadata)])  # type: ignore[misc]
    raise KeyError(name)


def resolve(setting: Setting, tensor_name: str) -> Scalar | None:
    """A parameter's value for one tensor: a scalar as is; a filter list's first entry whose filter is
    absent or a substring of the name; None when no entry matches."""
    if not isinstance(setting, list):
        return setting
    for entry in setting:
        if not entry.filter or entry.filter in tensor_name:
            return entry.value
    return None
