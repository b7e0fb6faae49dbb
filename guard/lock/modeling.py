"""The transformers side of the lock, built only from the validated copy of the model's config.

config.json is untrusted text. Its dict is the one guard.artifacts validated (never re-read from disk:
the file may have changed since), turned into the config class transformers registers for its
model_type (built-in classes only, no remote code). Its `architectures` entry may only select a class
that one of transformers' auto-model mappings lists for that model_type; an arbitrary attribute of the
transformers module (`getattr(transformers, name)`) is never looked up. Resolving through the mapping
also imports only the one modeling module the model needs.
"""

from __future__ import annotations

from typing import Any

from guard.errors import InputError


def transformers_config(raw: dict | None, *, path=None):
    """The transformers config object for a validated config.json dict."""
    if raw is None:
        raise InputError("no config.json: MergeLock needs the architecture", path=path, rule="lock-no-config")
    from guard.lock.layouts import layout_for

    layout_for(raw.get("model_type"), path=path)  # refuse unsupported architectures before transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[raw["model_type"]].from_dict(dict(raw))
    except Exception as exc:  # noqa: BLE001 - transformers' validators raise many types; all mean bad input
        raise InputError(f"config.json is not a valid {raw['model_type']} config: {exc}", path=path,
                         rule="lock-config") from None


def outputs_residual_stream(config: Any, *, path=None) -> bool:
    """Whether the model's output is its residual stream itself (a base model: last_hidden_state, as
    sentence encoders such as MiniLM are used), which a residual-stream transform would change."""
    from transformers.models.auto import modeling_auto

    base = modeling_auto.MODEL_MAPPING[type(config)]
    return model_class(config, path=path) in (base if isinstance(base, tuple) else (base,))


def model_class(config: Any, *, path=None) -> type:
    """The model class for `config`: its first `architectures` entry if an auto-model mapping lists that
    class for the config's model_type, the base model class (AutoModel's) if it names none."""
    from transformers.models.auto import modeling_auto

    names = getattr(config, "architectures", None) or []
    wanted = names[0] if names else None
    if wanted is None:
        return modeling_auto.MODEL_MAPPING[type(config)]
    for attr in sorted(dir(modeling_auto)):
        if not (attr.startswith("MODEL_") and attr.endswith("_MAPPING_NAMES")):
            continue
        listed = getattr(modeling_auto, attr).get(config.model_type)
        if listed != wanted and not (isinstance(listed, tuple) and wanted in listed):
            continue
        found = getattr(modeling_auto, attr.removesuffix("_NAMES"))[type(config)]
        for cls in found if isinstance(found, tuple) else (found,):
            if cls.__name__ == wanted:
                return cls
    raise InputError(f"config.json names architecture {wanted!r}, which no transformers auto-model mapping lists "
                     f"for model_type {config.model_type!r}", path=path, rule="lock-architecture")
