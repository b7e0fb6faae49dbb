"""P5, universal-patch inversion against the base, for image classifiers.

For a classification head, a class k and a location, a small patch is optimised on the unlabeled
calibration images to make the model predict k, once through the candidate's encoder and once through
the base's under the same head (all classes of a head at once, one patch each). Inherent adversarial
patches exist for any model, so what counts is how much easier the candidate makes it: the gain in
lift (share of held-out images predicted k with the patch minus without it; the patch is fitted on the
other half of the images). Two passes:

- alone: the candidate as uploaded, its own head, a patch of `patch_fraction` of the image side: a plain
  backdoor (BadNets) of its own task.
- merged: the candidate as a merge would contribute it, theta_0 + c x tau (c = `merge_coefficient`),
  under every head the scan knows (its own and each peer's: an off-task backdoor such as BadMerging-off
  aims at another contributor's class) with a `merged_patch_fraction` patch. At c = 0.3 a clean expert's
  domain adaptation has mostly faded, so peers' heads stop being confused by it, while a backdoor built
  to survive merging (BadMerging) is still there by design.

score = the largest gain over both passes, every head, class and location, within `max_seconds`.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from guard.probes.framework import Evidence, Needs, Probe, Series, register
from guard.probes.models import classifier_heads, data_range, head_features, shared_model
from guard.probes.weights import HEAD_PREFIXES


def corner(location: str, height: int, width: int, side: int) -> tuple[int, int]:
    top = {"top": 0, "bottom": height - side, "center": (height - side) // 2}[location.split("-")[0]]
    left = {"left": 0, "right": width - side, "center": (width - side) // 2}[location.split("-")[-1]]
    return top, left


def paste(images: torch.Tensor, patches: torch.Tensor, where: tuple[int, int]) -> torch.Tensor:
    """images [N, C, H, W], patches [K, C, s, s] -> [K * N, C, H, W], patch k on every image of block k."""
    k, n, side = patches.shape[0], images.shape[0], patches.shape[-1]
    top, left = where
    out = images.unsqueeze(0).expand(k, *images.shape).clone()
    out[:, :, :, top:top + side, left:left + side] = patches.unsqueeze(1).expand(k, n, *patches.shape[1:])
    return out.reshape(k * n, *images.shape[1:])


def logits_under(model, head, images: torch.Tensor) -> torch.Tensor:
    _, weight, bias = head
    logits = head_features(model, images) @ weight.to(images.device).T
    return logits if bias is None else logits + bias.to(images.device)


def invert(model, head, images: torch.Tensor, where, side: int, *, steps: int, seed: int) -> torch.Tensor:
    """Per class of `head`, the lift of an optimised patch at `where` ([K]): the share of images predicted as
    the class with the patch minus without it. The patch is fitted on the first half of `images` and
    measured on the second half: a trigger generalises to images it was not fitted on; an adversarial
    patch fitted to a few images generalises less."""
    k = head[1].shape[0]
    half = images.shape[0] // 2
    fit, held_out = images[:half], images[half:]
    low, high = data_range(images)
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(k, images.shape[1], side, side, generator=generator).to(images.device).requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=0.1)
    targets = torch.arange(k, device=images.device).repeat_interleave(fit.shape[0])
    for _ in range(steps):
        patch = low + (high - low) * torch.sigmoid(raw)
        loss = F.cross_entropy(logits_under(model, head, paste(fit, patch, where)), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        before = logits_under(model, head, held_out).argmax(dim=1)
        patch = low + (high - low) * torch.sigmoid(raw)
        after = logits_under(model, head, paste(held_out, patch, where)).argmax(dim=1).reshape(k, -1)
    classes = torch.arange(k, device=images.device)
    return ((after == classes[:, None]).float().mean(dim=1) - (before[None] == classes[:, None]).float().mean(dim=1)).cpu()


def digest(*tensors) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def others_median(values: torch.Tensor, k: int) -> float:
    """The median of `values` without entry k (0 when there is no other entry)."""
    others = torch.cat([values[:k], values[k + 1:]])
    return float(others.median()) if len(others) else 0.0


def merged_view(cand, base, coefficient: float, head_prefixes: tuple[str, ...]) -> torch.nn.Module:
    """A copy of the candidate with theta_0 + c x (theta - theta_0) on every tensor it shares with the base
    (heads keep the candidate's own)."""
    import copy

    merged = copy.deepcopy(cand)
    theirs = base.state_dict()
    state = {k: (theirs[k] + coefficient * (v - theirs[k]) if k in theirs and theirs[k].shape == v.shape
                 and not k.startswith(head_prefixes) else v) for k, v in cand.state_dict().items()}
    merged.load_state_dict(state)
    return merged.eval().requires_grad_(False)


def run(inputs, settings):
    start = time.perf_counter()  # the budget covers loading and set-up too
    own = settings.patch_inversion
    images = inputs.calibration.tensors["pixel_values"][: own.max_images].to(torch.float32).to(inputs.device)
    heads = classifier_heads(inputs)
    if not heads or heads[0][0] != "own":
        return PROBE.skipped("no linear classification head on the candidate")
    cand = shared_model(inputs, "candidate", inputs.candidate)
    base = shared_model(inputs, "base", inputs.base)
    height, width = images.shape[-2:]
    merged = merged_view(cand, base, own.merge_coefficient, HEAD_PREFIXES)
    passes = [("alone", cand, heads[:1], own.patch_fraction), ("merged", merged, heads, own.merged_patch_fraction)]
    cases, truncated = [], False
    for pass_name, model, pass_heads, fraction in passes:
        side = max(1, round(fraction * min(height, width)))
        for location in own.locations:
            where = corner(location, height, width, side)
            for h, head in enumerate(pass_heads):
                if time.perf_counter() - start > own.max_seconds:
                    truncated = True
                    break
                seed = settings.seed + 101 * h
                s_c = invert(model, head, images, where, side, steps=own.steps, seed=seed)
                key = ("patch-inversion-base", str(inputs.base.root), digest(head[1], head[2], images), where, side,
                       own.steps, seed)
                s_b = inputs.reusable(key, lambda: invert(base, head, images, where, side, steps=own.steps, seed=seed))
                gains = s_c - s_b
                cases += [(float(gains[k] - max(0.0, others_median(gains, k))), float(gains[k]), pass_name, head[0],
                           k, location, side, float(s_c[k]), float(s_b[k])) for k in range(len(s_c))]
    if not cases:
        return PROBE.skipped(f"time budget of {own.max_seconds:g} s spent before the first case")
    cases.sort(key=lambda c: -c[0])
    evidence = [Evidence(kind="patch", where=f"class {k} of head {label}, {location} ({pass_name})", value=round(spec, 4),
                         detail=f"{side}x{side} patch adds {sc:+.0%} of images to the class (base encoder: {sb:+.0%}; "
                                f"gain {gain:+.0%}, {spec:+.0%} beyond the head's other classes)")
                for spec, gain, pass_name, label, k, location, side, sc, sb in cases[:6]]
    spec, gain, pass_name, label, k, location, side, sc, sb = cases[0]
    series = [Series(title=f"class-specific patch lift gain over the base, {p} pass (best location per head and class)",
                     labels=sorted({f"{c[3]}:{c[4]}" for c in cases if c[2] == p}),
                     values=[max(c[0] for c in cases if c[2] == p and f"{c[3]}:{c[4]}" == lab)
                             for lab in sorted({f"{c[3]}:{c[4]}" for c in cases if c[2] == p})],
                     threshold=own.threshold) for p in ("alone", "merged") if any(c[2] == p for c in cases)]
    view = "as uploaded" if pass_name == "alone" else f"merged at {own.merge_coefficient:g}"
    message = (f"a {side}x{side} patch at {location} adds {sc:+.0%} of held-out images to class {k} of head {label} "
               f"through the candidate {view}, {sb:+.0%} through the base, {spec:+.0%} beyond the head's other classes "
               f"({len(heads)} heads, {len(images)} images" + (", time budget hit" if truncated else "") + ")")
    return PROBE.result(score=spec, threshold=own.threshold, message=message, evidence=evidence, series=series,
                        measurements={"heads": len(heads), "images": len(images), "cases": len(cases),
                                      "gain": max(c[1] for c in cases)},
                        truncated=truncated, device=inputs.device)


PROBE = register(Probe(
    name="patch_inversion", title="Universal-patch inversion against the base (P5)",
    needs=Needs(base=True, peers=True, calibration=True, kind="image-classifier", gpu="preferred",
                weight_only=False), run=run,
    catches="patch-triggered backdoors (BadNets, BadMerging on- and off-task), wherever they aim"))
