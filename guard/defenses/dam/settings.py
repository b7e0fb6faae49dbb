"""DAM's settings: one frozen pydantic model, the `guard.dam:` section of a merge config (less the
inputs the stage reads, see guard.pipeline.dam_stage). Defaults are the released code's layer-wise
configuration (reference notes §2.5) unless a field says otherwise."""

from __future__ import annotations

from typing import Literal

import pydantic


class DamSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    mode: Literal["paper", "code"] = pydantic.Field(
        default="paper", description="paper: a Task-Shared and a Backdoor-Detection mask, optimised alternately, "
        "each on its own loss; code: the released code's single mask with the combined loss")
    coefficients: Literal["task", "layer"] = pydantic.Field(
        default="layer", description="one merge coefficient per task, or per task and tensor (AdaMerging)")
    initial_coefficient: float | None = pydantic.Field(
        default=None, description="lambda_0 for every task; None: each model's weight x lambda from the merge config "
        "(0.3 in the library API, the paper's value)")
    steps: int = pydantic.Field(default=1000, ge=0, description="mask meta-learning steps (max_steps)")
    adamerging_steps: int = pydantic.Field(default=1000, ge=0, description="coefficient steps with the final mask")
    batch: int = pydantic.Field(default=16, ge=1, description="unlabeled inputs per task per step")
    mask_lr: float = pydantic.Field(default=1e-3, gt=0)
    inner_lr: float = pydantic.Field(default=1.0, gt=0, description="the one-step inner update of the coefficients "
                                     "(base_lr)")
    adamerging_lr: float = pydantic.Field(default=1e-3, gt=0)
    temperature: float = pydantic.Field(default=0.5, gt=0)
    initial_logit: float = 0.0
    adv_lr: float = pydantic.Field(default=1e-4, gt=0, description="surrogate-trigger learning rate")
    adv_weight: float = pydantic.Field(default=0.1, ge=0, description="beta: weight of the perturbed-input term")
    granularity: Literal["entry", "row", "block", "tensor"] = "entry"
    block: int = pydantic.Field(default=64, ge=1, description="tile side for granularity: block")
    final_mask: Literal["sample", "deterministic"] = pydantic.Field(
        default="sample", description="sample: one continuous draw (the released code); deterministic: "
        "1[sigmoid(logit) > 0.5]")
    consistency: Literal["entropy", "kl"] = pydantic.Field(
        default="entropy", description="the perturbed-input term: entropy (the paper's and code's: rewards confident "
        "predictions under the trigger) or kl: KL(f(x) || f(x + delta)) (guard's named option: rewards predictions "
        "the trigger does not change)")
    trigger_bound: float | None = pydantic.Field(
        default=None, gt=0, description="None: the surrogate trigger is unbounded (the released code); else its "
        "L-inf bound (classifier inputs) or its L2 bound relative to the mean token-embedding norm (LMs)")
    trigger: Literal["additive", "blend"] = pydantic.Field(
        default="additive", description="classifiers: additive: one universal additive perturbation per task (the "
        "paper's); blend: guard's named option, a Neural-Cleanse-style universal patch x' = (1 - m) x + m p with a "
        "learnt mask m and pattern p (both sigmoids) and a penalty on the mask's area, so the surrogate searches for "
        "small triggers such as backdoor patches rather than diffuse adversarial noise")
    trigger_area: float = pydantic.Field(default=1.0, ge=0, description="blend trigger: weight of the mask's mean "
                                         "(area) penalty in the trigger step")
    backdoor_mask: Literal["shared", "per_model"] = pydantic.Field(
        default="shared", description="shared: one mask over the merged task vector (the paper's and the code's); "
        "per_model: guard's named option: the mask that sees the surrogate trigger (code: the one mask; paper: the "
        "Backdoor-Detection mask) has its own cells per merged model, so the parameters it drops are dropped from "
        "the task vector that carries the backdoor, not from every contributor's")
    clean_anchor: float = pydantic.Field(
        default=0.0, ge=0, description="guard's named option: weight of KL(f_plain(x) || f(x)) on clean inputs in "
        "the mask step, f_plain the merge with the same coefficients and no mask. 0: the paper's and code's "
        "entropy-only clean term, which rewards confident predictions rather than the merge's own, so a mask "
        "that drops what the trigger implicates may also drop what the clean tasks need")
    soft_tokens: int = pydantic.Field(default=1, ge=1, description="LMs: embedding-space soft-prompt length")
    answer_tokens: int = pydantic.Field(default=8, ge=1, description="LMs: greedy continuation length scored")
    exclude: tuple[str, ...] = pydantic.Field(
        default=(), description="tensor-name substrings DAM leaves alone (no mask, no learnt coefficient)")
    seed: int = 0
