"""DAM on validated model directories (the safe-merge stage's path): build the architecture from the
base's config (transformers classes only, no remote code, no weights loaded by transformers), read the
base and the experts' tensors from their verified bytes, and set up the tasks from the calibration
inputs. Tensor names stay the checkpoint's (what the merge streams); the module runs with them mapped to
its own names (guard.defenses.names).

Task heads: tensors whose name starts with one of `heads` (default `classifier.` for image classifiers)
are each expert's own head, as in the paper's frozen zero-shot heads: DAM neither masks nor weighs them,
and each task is scored through its own expert's head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from guard.defenses.dam.optimise import DamResult, TaskVectors, run_dam
from guard.defenses.dam.settings import DamSettings
from guard.defenses.dam.tasks import CausalLMTasks, ClassifierTasks
from guard.defenses.names import checkpoint_names
from guard.errors import InputError

CLASSIFIER_HEADS = ("classifier.",)


def module_for(model_dir) -> torch.nn.Module:
    """An untrained module of the model's architecture, from its config.json (transformers classes only)."""
    import transformers

    config = dict(model_dir.config or {})
    arch = (config.get("architectures") or [None])[0]
    cls = getattr(transformers, arch, None) if isinstance(arch, str) else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        raise InputError(f"dam: config.json names no transformers architecture ({arch!r})", path=model_dir.root,
                         rule="dam-architecture")
    model_type = config.pop("model_type", None)
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **config)
        torch.manual_seed(0)
        module = cls(hf_config)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"dam: cannot build {arch} from config.json: {exc}", path=model_dir.root,
                         rule="dam-architecture") from None
    return module.float().eval()


def kind_of(module: torch.nn.Module) -> str:
    name = type(module).__name__
    if name.endswith("ForImageClassification"):
        return "classifier"
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "causal-lm"
    raise InputError(f"dam: {name} is neither an image classifier nor a decoder LM", rule="dam-architecture")


def run_on_model_dirs(base, experts: Sequence, calibration: Sequence[dict[str, torch.Tensor]], settings: DamSettings, *,
                      initial: Sequence[float], heads: Sequence[str] | None = None, device: str = "cpu",
                      progress=None) -> DamResult:
    """Learn DAM's masks and coefficients for merging `experts` onto `base` (validated ModelDirs);
    `calibration[i]`: expert i's unlabeled inputs (pixel_values, or input_ids + attention_mask)."""
    module = module_for(base)
    kind = kind_of(module)
    names = checkpoint_names(module)  # checkpoint name -> module name
    heads = tuple(heads) if heads is not None else (CLASSIFIER_HEADS if kind == "classifier" else ())
    is_head = lambda n: n.startswith(heads) if heads else False  # noqa: E731
    excluded = lambda n: is_head(n) or any(part in n for part in settings.exclude) or n not in names  # noqa: E731
    base_sd = {n: t.float() if t.is_floating_point() else t for n, t in base.iter_tensors()}
    expert_sds = [{n: t.float() if t.is_floating_point() else t for n, t in e.iter_tensors()} for e in experts]
    vectors = TaskVectors.from_state_dicts(base_sd, expert_sds, exclude=excluded, device=device)
    module.to(device)
    if kind == "classifier":
        head_sets = [{names[n]: sd[n].to(device) for n in sd if is_head(n) and n in names} for sd in expert_sds]
        tasks = ClassifierTasks(module, [c["pixel_values"].to(device) for c in calibration], heads=head_sets,
                                names=names, trigger_bound=settings.trigger_bound, trigger=settings.trigger,
                                trigger_area=settings.trigger_area)
    else:
        embedding = next((n for n, m in names.items() if m == _embedding_name(module)), None)
        if embedding is None:
            raise InputError("dam: the input embedding is not a checkpoint tensor", rule="dam-architecture")
        teachers = [{**base_sd, **sd} for sd in expert_sds]
        tasks = CausalLMTasks(module, [{k: v.to(device) for k, v in c.items()} for c in calibration], teachers,
                              embedding=embedding, names=names, answer_tokens=settings.answer_tokens,
                              soft_tokens=settings.soft_tokens, trigger_bound=settings.trigger_bound)
        tasks.to(device)
    return run_dam(vectors, tasks, settings, initial=list(initial), progress=progress)


def _embedding_name(module: torch.nn.Module) -> str:
    table = module.get_input_embeddings().weight
    return next(n for n, p in module.named_parameters() if p is table)
