"""Defense-Aware Merging (DAM, arXiv 2410.13910): Concrete masks and AdaMerging coefficients learnt on
unlabeled inputs, with a surrogate trigger, for the merge `theta0 + sum_i lambda_i (m * tau_i)`.

One outer step (reference notes §2.4; the released code's order):
1. inner step on the coefficients: reset lambda to lambda_0, one Adam step (`inner_lr`) on the summed
   prediction entropy of every task with the mask detached -> lambda';
2. surrogate trigger: with the merged weights detached, one Adam step (`adv_lr`) per task on a universal
   perturbation that *maximises* the cross-entropy against the clean predictions (untargeted);
3. masks, with lambda' fixed and gradients to the mask logits (a first-order meta-gradient):
   - `mode: code`: one mask, loss `sum_t H(f(x)) + beta * R(x, delta)`;
   - `mode: paper`: a Task-Shared mask and a Backdoor-Detection mask, the merge using their product.
     The Task-Shared mask takes a step on the clean entropy alone, then the Backdoor-Detection mask a
     step on the clean entropy plus `beta * R`: only the Backdoor-Detection mask sees the perturbed
     inputs, so it is the one that drops parameters sensitive to the trigger.
   With `clean_anchor` > 0 (guard's named option) the clean term also has `clean_anchor * KL(f_plain(x) ||
   f(x))`, f_plain the same merge without the mask: the mask is held to the merge's own clean predictions.
   `R` is the entropy of the predictions on the perturbed inputs (`consistency: entropy`, the paper's
   and the code's) or `KL(f(x) || f(x + delta))` (`consistency: kl`, guard's named option).
Then one final mask (a continuous sample, or deterministic) is fixed, renormalised to mean 1 per tensor,
and AdaMerging runs on the coefficients alone (`adamerging_steps`, entropy loss) from lambda_0.

Not reproduced from the released code: its coefficient gradient also accumulates the mask step's
gradient into the next inner step (an optimizer's zero_grad is missing); here every inner step starts
from a zero gradient.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from guard.defenses.dam.settings import DamSettings
from guard.defenses.masks import ConcreteMask, renormalise


@dataclasses.dataclass
class TaskVectors:
    """The merge DAM optimises. `names`: the tensors it masks and weighs; `base[name]`; `vectors[name]`:
    the task vectors stacked [models, *shape]; `fixed`: every other tensor the forward needs, as the merge
    will write it. Everything float32 on one device."""

    names: list[str]
    base: dict[str, torch.Tensor]
    vectors: dict[str, torch.Tensor]
    fixed: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_state_dicts(cls, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]], *,
                         exclude: Callable[[str], bool] = lambda name: False, device="cpu",
                         fixed: Mapping[str, torch.Tensor] | None = None) -> TaskVectors:
        names = [k for k, v in base.items() if v.is_floating_point() and not exclude(k)]
        b = {k: base[k].detach().to(device=device, dtype=torch.float32) for k in names}
        vectors = {k: torch.stack([e[k].detach().to(device=device, dtype=torch.float32) for e in experts]) - b[k]
                   for k in names}
        rest = {k: v.detach().to(device) for k, v in (fixed if fixed is not None else base).items() if k not in b}
        return cls(names=names, base=b, vectors=vectors, fixed=rest)

    @property
    def models(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    def merged(self, coefficients: torch.Tensor, mask: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """theta0 + sum_i lambda[i, l] (m * tau_i) for every DAM tensor l; `coefficients` [models, tensors];
        a mask of the tensor's shape is shared by the models, one of shape [models, *shape] is per model."""
        out = dict(self.fixed)
        for index, name in enumerate(self.names):
            tau = self.vectors[name]
            weights = coefficients[:, index].reshape(-1, *([1] * (tau.dim() - 1)))
            if mask is not None and mask[name].dim() == tau.dim():
                delta = (weights * mask[name] * tau).sum(0)
            else:
                delta = (weights * tau).sum(0)
                if mask is not None:
                    delta = delta * mask[name]
            out[name] = self.base[name] + delta
        return out

    def parameter_count(self) -> int:
        return sum(v[0].numel() for v in self.vectors.values())


@dataclasses.dataclass
class DamResult:
    names: list[str]
    masks: dict[str, torch.Tensor]  # the final masks (renormalised, full shape or [models, *shape], float32, CPU)
    coefficients: torch.Tensor  # [models, tensors]
    initial: torch.Tensor  # lambda_0, [models, tensors]
    kept: dict[str, float]  # share of each tensor's entries the final mask keeps (> 0)
    settings: DamSettings
    history: list[dict[str, float]]
    seconds: float
    trigger_norms: list[float]
    triggers: list[torch.Tensor] = dataclasses.field(default_factory=list)  # the surrogate per task (CPU)

    def coefficient(self, model: int, name: str) -> float:
        return float(self.coefficients[model, self.names.index(name)])

    def merged(self, vectors: TaskVectors) -> dict[str, torch.Tensor]:
        device = next(iter(vectors.base.values())).device
        with torch.no_grad():
            return vectors.merged(self.coefficients.to(device), {k: v.to(device) for k, v in self.masks.items()})

    def summary(self, labels: Sequence[str] = ()) -> dict[str, Any]:
        """What the decision record and the provenance carry."""
        total = sum(self.masks[n].numel() for n in self.names)
        kept = sum(self.kept[n] * self.masks[n].numel() for n in self.names) / max(total, 1)
        labels = list(labels) or [f"model {i}" for i in range(self.coefficients.shape[0])]
        per_model = {}
        for i, label in enumerate(labels):
            row = self.coefficients[i]
            per_model[label] = {"mean": round(float(row.mean()), 6), "min": round(float(row.min()), 6),
                                "max": round(float(row.max()), 6), "initial": round(float(self.initial[i].mean()), 6)}
        lowest = sorted(self.names, key=lambda n: self.kept[n])[:8]
        return {"mode": self.settings.mode, "coefficients": self.settings.coefficients,
                "granularity": self.settings.granularity, "final_mask": self.settings.final_mask,
                "consistency": self.settings.consistency, "steps": self.settings.steps,
                "adamerging_steps": self.settings.adamerging_steps, "tensors": len(self.names), "entries": total,
                "kept": round(kept, 6), "least_kept": {n: round(self.kept[n], 6) for n in lowest},
                "coefficient_by_model": per_model, "trigger_norms": [round(x, 6) for x in self.trigger_norms],
                "final_losses": self.history[-1] if self.history else {}, "seconds": round(self.seconds, 3)}


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy over the rows (AdaMerging's test-time loss)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def consistency_term(clean: torch.Tensor, perturbed: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "entropy":
        return entropy(perturbed)
    # KL(f(x) || f(x + delta)), the clean prediction as the (fixed) target
    target = F.log_softmax(clean.detach().float(), dim=-1)
    return F.kl_div(F.log_softmax(perturbed.float(), dim=-1), target, log_target=True, reduction="batchmean")


def _detached(mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in mask.items()}


def _renormalise(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Mean 1 per tensor, or per model's slice for a per-model mask ([models, *shape])."""
    if mask.dim() == len(shape):
        return renormalise(mask)
    return torch.stack([renormalise(m) for m in mask])


def _combine(*samples: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    out = {}
    for name in samples[0]:
        value = samples[0][name]
        for other in samples[1:]:
            value = value * other[name]
        out[name] = _renormalise(value, shapes[name])
    return out


class PerModelMask:
    """One ConcreteMask per merged model, sampled as [models, *shape] (`backdoor_mask: per_model`)."""

    def __init__(self, models: int, shapes: Mapping[str, torch.Size], **kwargs):
        self.masks = [ConcreteMask(shapes, **kwargs) for _ in range(models)]

    def parameters(self) -> list[torch.Tensor]:
        return [p for m in self.masks for p in m.parameters()]

    def _stacked(self, draws: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {n: torch.stack([d[n] for d in draws]) for n in draws[0]}

    def sample(self, *, temperature: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self._stacked([m.sample(temperature=temperature, generator=generator) for m in self.masks])

    def final(self, kind, *, temperature: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self._stacked([m.final(kind, temperature=temperature, generator=generator) for m in self.masks])


def run_dam(vectors: TaskVectors, tasks, settings: DamSettings, *, initial: torch.Tensor | Sequence[float] | None = None,
            progress: Callable[[int, int, str], None] | None = None, history_every: int = 50) -> DamResult:
    """Learn the masks and coefficients (see the module docstring). `tasks`: a ClassifierTasks or
    CausalLMTasks with one task per model, in the order of `vectors`. `initial`: lambda_0 per model
    (default: `settings.initial_coefficient`, else 0.3)."""
    started = time.perf_counter()
    device = next(iter(vectors.base.values())).device
    models, count = vectors.models, len(vectors.names)
    if tasks.count != models:
        raise ValueError(f"DAM needs one task per merged model: {tasks.count} tasks for {models} models")
    if settings.initial_coefficient is not None:
        lam0 = torch.full((models,), float(settings.initial_coefficient))
    elif initial is not None:
        lam0 = torch.as_tensor(initial, dtype=torch.float32).reshape(models)
    else:
        lam0 = torch.full((models,), 0.3)
    lam0 = lam0.to(device)
    layer = settings.coefficients == "layer"
    start = lam0[:, None].expand(models, count).clone() if layer else lam0.clone()

    def expand(lam: torch.Tensor) -> torch.Tensor:
        return lam if layer else lam[:, None].expand(models, count)

    generator = torch.Generator(device=device).manual_seed(settings.seed)
    shapes = {n: vectors.base[n].shape for n in vectors.names}
    mask_kwargs = dict(granularity=settings.granularity, block=settings.block, initial_logit=settings.initial_logit,
                       device=device)
    # the mask that sees the trigger is per model with `backdoor_mask: per_model`
    per_model = settings.backdoor_mask == "per_model"
    sees_trigger = PerModelMask(models, shapes, **mask_kwargs) if per_model else ConcreteMask(shapes, **mask_kwargs)
    masks = [sees_trigger] if settings.mode == "code" else [ConcreteMask(shapes, **mask_kwargs), sees_trigger]
    # paper: [0] Task-Shared, [1] Backdoor-Detection
    mask_optimisers = [torch.optim.Adam(m.parameters(), lr=settings.mask_lr) for m in masks]
    lam = start.clone().requires_grad_(True)
    inner = torch.optim.Adam([lam], lr=settings.inner_lr)
    triggers = [tasks.new_trigger(t) for t in range(models)]
    adv = torch.optim.Adam(triggers, lr=settings.adv_lr)
    beta, temperature = settings.adv_weight, settings.temperature
    history: list[dict[str, float]] = []
    total = settings.steps + settings.adamerging_steps

    for step in range(settings.steps):
        samples = [m.sample(temperature=temperature, generator=generator) for m in masks]
        combined = _combine(*samples, shapes=shapes)
        # (1) inner step on the coefficients, mask detached
        with torch.no_grad():
            lam.copy_(start)
        inner.zero_grad(set_to_none=True)
        params = vectors.merged(expand(lam), _detached(combined))
        loss = sum(entropy(tasks.logits(params, t, tasks.draw(t, generator, settings.batch))) for t in range(models))
        loss.backward()
        inner.step()
        adapted = expand(lam.detach())
        # (2) surrogate trigger: maximise the cross-entropy against the clean predictions
        with torch.no_grad():
            frozen = vectors.merged(adapted, _detached(combined))
        adv.zero_grad(set_to_none=True)
        trigger_loss = 0.0
        for t in range(models):
            batch = tasks.draw(t, generator, settings.batch)
            with torch.no_grad():
                labels = tasks.logits(frozen, t, batch).argmax(-1)
            perturbed = tasks.logits(frozen, t, tasks.perturb(batch, triggers[t], clamp=False))
            trigger_loss = trigger_loss - F.cross_entropy(perturbed.float(), labels) + tasks.trigger_penalty(triggers[t])
        trigger_loss.backward()
        adv.step()
        tasks.bound(triggers)
        # (3) masks
        batches = [tasks.draw(t, generator, settings.batch) for t in range(models)]

        anchors = None
        if settings.clean_anchor > 0:  # the unmasked merge's clean predictions, the anchor's target
            with torch.no_grad():
                plain = vectors.merged(adapted)
                anchors = [tasks.logits(plain, t, batches[t]) for t in range(models)]

        def objective(mask, *, with_trigger: bool) -> tuple[torch.Tensor, float, float]:
            merged = vectors.merged(adapted, mask)
            clean_total, regular_total = 0.0, 0.0
            for t in range(models):
                clean = tasks.logits(merged, t, batches[t])
                clean_total = clean_total + entropy(clean)
                if anchors is not None:
                    clean_total = clean_total + settings.clean_anchor * consistency_term(anchors[t], clean, "kl")
                if with_trigger:
                    perturbed = tasks.logits(merged, t, tasks.perturb(batches[t], triggers[t].detach(), clamp=True))
                    regular_total = regular_total + consistency_term(clean, perturbed, settings.consistency)
            loss = clean_total + beta * regular_total if with_trigger else clean_total
            return loss, float(clean_total.detach()), float(regular_total.detach()) if with_trigger else 0.0

        if settings.mode == "code":
            mask_optimisers[0].zero_grad(set_to_none=True)
            loss, nat, reg = objective(combined, with_trigger=True)
            loss.backward()
            mask_optimisers[0].step()
        else:
            shared, detect = samples
            mask_optimisers[0].zero_grad(set_to_none=True)
            loss, nat, _ = objective(_combine(shared, _detached(detect), shapes=shapes), with_trigger=False)
            loss.backward()
            mask_optimisers[0].step()
            mask_optimisers[1].zero_grad(set_to_none=True)
            loss, _, reg = objective(_combine(_detached(shared), detect, shapes=shapes), with_trigger=True)
            loss.backward()
            mask_optimisers[1].step()
        if step % history_every == 0 or step == settings.steps - 1:
            history.append({"step": step, "clean": round(nat / models, 6), "perturbed": round(reg / models, 6),
                            "trigger": round(-float(trigger_loss.detach()) / models, 6)})
        if progress is not None:
            progress(step + 1, total, "dam: masks")

    drawn = [_detached(m.final(settings.final_mask, temperature=temperature, generator=generator)) for m in masks]
    raw = {n: functools.reduce(torch.mul, [d[n] for d in drawn]) for n in vectors.names}
    kept = {n: float((raw[n] > 0.5).float().mean()) for n in vectors.names}  # > 0.5: kept (exact for 0/1 masks)
    final = {n: _renormalise(raw[n], shapes[n]) for n in vectors.names}
    # AdaMerging on the coefficients with the final mask
    lam = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([lam], lr=settings.adamerging_lr)
    for step in range(settings.adamerging_steps):
        optimiser.zero_grad(set_to_none=True)
        params = vectors.merged(expand(lam), final)
        loss = sum(entropy(tasks.logits(params, t, tasks.draw(t, generator, settings.batch))) for t in range(models))
        loss.backward()
        optimiser.step()
        if step == settings.adamerging_steps - 1:
            history.append({"step": settings.steps + step, "clean": round(float(loss.detach()) / models, 6)})
        if progress is not None:
            progress(settings.steps + step + 1, total, "dam: coefficients")
    coefficients = expand(lam.detach()).clone().cpu()
    masks_out = {n: final[n].float().cpu() for n in vectors.names}
    return DamResult(names=list(vectors.names), masks=masks_out, coefficients=coefficients,
                     initial=expand(start).clone().cpu(), kept=kept, settings=settings, history=history,
                     seconds=time.perf_counter() - started, trigger_norms=[float(t.detach().norm()) for t in triggers],
                     triggers=[t.detach().cpu() for t in triggers])
