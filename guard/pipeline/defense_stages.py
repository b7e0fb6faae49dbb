"""The DAM and EnchTable stages of safe-merge (guard.defenses behind the stage interface).

`guard: dam:` holds guard.defenses.dam.DamSettings' fields plus
- `calibration`: {input reference: safetensors file of unlabeled inputs} for every merged model (required;
  relative to the config), read strictly;
- `heads`: tensor-name prefixes that are each model's own task head (default `classifier.` for image
  classifiers, none for LMs).
DAM defines the merge (theta0 + sum_i lambda_i (m * tau_i)), so the config's method must be
task_arithmetic; each model's `weight` x `lambda` is its lambda_0 unless `initial_coefficient` is set.

`guard: enchtable:` holds
- `vector`: the safety vector's input reference (a model directory written by `guard safety-vector
  distill` or guard.defenses.enchtable.vector.write_safety_vector). It is an input like any other:
  read strictly, signature-verified against the trusted signers (`guard.signatures` may name its
  signature), checked for MergeLock and scanned by the configured probes, before use;
- `beta` (0.1), `gamma_task` (0.5), `gamma_safety` (0.5): reference notes §3.3;
- `alpha` (`merge`): `inputs` scales Delta to the mean of the merged models' task-vector norms instead
  of the merge's (guard's named option, docs/enchtable.md).
The surrogate the vector was distilled on must be the merge's base (checked by weights digest).

Both put what they did into a `Check` of the decision record (and so into the provenance): DAM its
masks kept, coefficients and losses; EnchTable alpha, the norms, and every matrix's interference score
and weight (filled in while the merge streams).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic

from guard.errors import InputError
from guard.pipeline.decision import Check
from guard.pipeline.stages import Stage, StageContext


def _parse(model: type[pydantic.BaseModel], values: Mapping[str, Any], section: str):
    try:
        return model.model_validate(dict(values))
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"guard.{section}.{'.'.join(map(str, error['loc']))}: {error['msg']}",
                         rule=f"{section}-config") from None


def _task_arithmetic(job, section: str) -> None:
    if job.method.name != "task_arithmetic":
        raise InputError(f"guard.{section}: needs merge_method task_arithmetic (this config uses {job.method.name}): "
                         "DAM computes its own merge theta0 + sum_i lambda_i (m * tau_i)", rule=f"{section}-method")


class DamStage(Stage):
    name = "dam"

    def __init__(self, section: Mapping[str, Any]):
        from guard.defenses.dam.settings import DamSettings

        section = dict(section or {})
        self.calibration = section.pop("calibration", None)
        self.heads = section.pop("heads", None)
        if not isinstance(self.calibration, dict) or not self.calibration:
            raise InputError("guard.dam.calibration: map every merged model to a safetensors file of unlabeled inputs",
                             rule="dam-config")
        if self.heads is not None and (not isinstance(self.heads, list) or not all(isinstance(h, str) for h in self.heads)):
            raise InputError("guard.dam.heads: a list of tensor-name prefixes", rule="dam-config")
        self.settings = _parse(DamSettings, section, "dam")

    def prepare_merge(self, job, inputs: Sequence, context: StageContext):
        from guard.defenses.calibration import classifier_inputs, lm_prompts, read_calibration
        from guard.defenses.dam.hook import DamHook
        from guard.defenses.dam.models import kind_of, module_for, run_on_model_dirs

        _task_arithmetic(job, "dam")
        if job.base is None:
            raise InputError("guard.dam: needs a base_model (task vectors are taken against it)", rule="dam-config")
        labels = list(job.labels)
        missing = [label for label in labels if label not in self.calibration]
        if missing:
            raise InputError(f"guard.dam.calibration: no calibration inputs for {missing[0]!r}", rule="dam-config")
        kind = kind_of(module_for(job.base))
        calibration = []
        for label in labels:
            path = context.config.guard_path(self.calibration[label]) if context.config is not None else self.calibration[label]
            tensors = read_calibration(path)
            calibration.append({"pixel_values": classifier_inputs(tensors, path=path)} if kind == "classifier"
                               else lm_prompts(tensors, path=path))
        lam = float(job.settings.get("lambda", 1.0)) if not isinstance(job.settings.get("lambda", 1.0), list) else 1.0
        initial = [float(s.get("weight", 1.0)) * lam if not isinstance(s.get("weight", 1.0), list) else lam
                   for s in job.model_settings]
        started = time.perf_counter()
        result = run_on_model_dirs(job.base, job.models, calibration, self.settings, initial=initial, heads=self.heads,
                                   device=context.device)
        hook = DamHook(result)
        job.hooks = [*job.hooks, hook]
        summary = result.summary(labels)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        return job, [Check("dam", "pass", f"DAM ({self.settings.mode} mode): masks keep {summary['kept']:.1%} of "
                                          f"{summary['entries']} task-vector entries over {summary['tensors']} tensors; "
                                          f"learnt coefficients applied", value=summary["kept"], details=summary)]


class EnchTableSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    vector: str = pydantic.Field(min_length=1)
    beta: float = pydantic.Field(default=0.1, gt=0)
    gamma_task: float = pydantic.Field(default=0.5, gt=0, le=1)
    gamma_safety: float = pydantic.Field(default=0.5, gt=0, le=1)
    alpha: Literal["merge", "inputs"] = pydantic.Field(
        default="merge", description="merge: alpha = beta ||tau|| / ||Delta|| with tau the merge's own task vector "
        "(the reference); inputs: guard's named option, ||tau|| the mean over the merged models of their own, so "
        "the scale does not grow with how many models are merged or how the method rescales their sum")


class EnchTableStage(Stage):
    name = "enchtable"

    def __init__(self, section: Mapping[str, Any]):
        self.settings = _parse(EnchTableSettings, section or {}, "enchtable")

    def prepare_merge(self, job, inputs: Sequence, context: StageContext):
        from guard.defenses.enchtable.hook import EnchTableHook, alpha_for
        from guard.defenses.enchtable.vector import safety_delta

        if context.base is None or job.base is None:
            raise InputError("guard.enchtable: needs a base_model (the surrogate the safety vector was distilled on)",
                             rule="enchtable-config")
        vector = next((c for c in inputs if c.role == "safety-vector"), None)
        if vector is None or vector.model is None:
            raise InputError("guard.enchtable: the safety vector was not checked as an input", rule="enchtable-config")
        started = time.perf_counter()
        delta = safety_delta(vector.model, job.base)
        alpha, tau_norm, delta_norm = alpha_for(job, delta, beta=self.settings.beta, scale_to=self.settings.alpha)
        check = Check("enchtable", "pass", f"safety vector {vector.label} reinjected: alpha {alpha:.4g} "
                                           f"(beta {self.settings.beta} x ||tau|| {tau_norm:.4g} / ||Delta|| "
                                           f"{delta_norm:.4g}); per-matrix interference weights in details",
                      input=vector.label, value=alpha)
        hook = EnchTableHook(delta, alpha=alpha, gamma_task=self.settings.gamma_task,
                             gamma_safety=self.settings.gamma_safety, record=check.details)
        check.details.update({"beta": self.settings.beta, "alpha_from": self.settings.alpha, "tau_norm": tau_norm, "delta_norm": delta_norm,
                              "tensors": len(delta), "norm_pass_seconds": round(time.perf_counter() - started, 3)})
        job.hooks = [*job.hooks, hook]
        return job, [check]


def dam_stage(section: Mapping[str, Any]) -> Stage:
    return DamStage(section)


def enchtable_stage(section: Mapping[str, Any]) -> Stage:
    return EnchTableStage(section)
