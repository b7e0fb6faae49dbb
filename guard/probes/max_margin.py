"""P4, maximum-margin statistic for image classifiers (MM-BD, IEEE S&P 2024), against the base.

For each class k of a head, gradient ascent from random inputs (inside the calibration images' value
range) finds the largest margin logit_k - max_{j != k} logit_j the model can produce. A backdoor target
class is reachable with an abnormally large margin: the trigger is a shortcut. MM-BD flags a class whose
maximum margin is an outlier among the classes; here each class's maximum margin through the candidate
is first divided by the same quantity through the base encoder under the same head (the base's own
inherent easy classes cancel), and the score is the robust z of the largest log-ratio among the head's
classes, over heads with at least three classes (the candidate's own and its peers').
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from guard.probes.framework import Evidence, Needs, Probe, Series, register
from guard.probes.models import classifier_heads, data_range, shared_model
from guard.probes.patch_inversion import logits_under
from guard.probes.weights import robust_z

MIN_SPREAD = 0.1  # log-ratio spread floor among classes


def max_margins(model, head, shape, low, high, *, steps: int, restarts: int, seed: int) -> torch.Tensor:
    """[K] the largest margin of each class found from `restarts` random starts."""
    k = head[1].shape[0]
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(k * restarts, *shape, generator=generator).to(low.device).requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=0.05)
    target = torch.arange(k, device=low.device).repeat_interleave(restarts)
    rows = torch.arange(k * restarts, device=low.device)

    def margins():
        logits = logits_under(model, head, low + (high - low) * torch.sigmoid(raw))
        own = logits[rows, target]
        others = logits.clone()
        others[rows, target] = -torch.inf
        return own - others.max(dim=1).values

    for _ in range(steps):
        loss = -margins().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return margins().reshape(k, restarts).max(dim=1).values.cpu()


def run(inputs, settings):
    start = time.perf_counter()  # the budget covers loading and set-up too
    own = settings.max_margin
    images = inputs.calibration.tensors["pixel_values"].to(torch.float32).to(inputs.device)
    low, high = data_range(images)
    heads = [h for h in classifier_heads(inputs) if h[1].shape[0] >= 3]
    if not heads:
        return PROBE.skipped("no classification head with at least three classes")
    cand = shared_model(inputs, "candidate", inputs.candidate)
    base = shared_model(inputs, "base", inputs.base)
    cases, series, truncated = [], [], False
    for h, head in enumerate(heads):
        if time.perf_counter() - start > own.max_seconds:
            truncated = True
            break
        seed = settings.seed + 31 * h
        m_c = max_margins(cand, head, images.shape[1:], low, high, steps=own.steps, restarts=own.restarts, seed=seed)
        m_b = max_margins(base, head, images.shape[1:], low, high, steps=own.steps, restarts=own.restarts, seed=seed)
        ratios = [math.log(max(float(c), 1e-6) / max(float(b), 1e-6)) for c, b in zip(m_c, m_b)]
        top = int(np.argmax(ratios))
        z, _, _ = robust_z(ratios[top], ratios[:top] + ratios[top + 1:], min_spread=MIN_SPREAD)
        cases.append((z, head[0], top, float(m_c[top]), float(m_b[top])))
        series.append(Series(title=f"log max-margin ratio candidate/base, head {head[0]}",
                             labels=[str(k) for k in range(len(ratios))], values=ratios))
    if not cases:
        return PROBE.skipped(f"time budget of {own.max_seconds:g} s spent before the first head")
    cases.sort(key=lambda c: -c[0])
    evidence = [Evidence(kind="class", where=f"class {k} of head {label}", value=round(z, 3),
                         detail=f"max margin {mc:.3g} through the candidate, {mb:.3g} through the base")
                for z, label, k, mc, mb in cases[:5]]
    z, label, k, mc, mb = cases[0]
    message = (f"class {k} of head {label}: max margin {mc:.3g} vs base {mb:.3g}, z {z:.2f} among its classes "
               f"({len(cases)} heads" + (", time budget hit" if truncated else "") + ")")
    return PROBE.result(score=z, threshold=own.threshold, message=message, evidence=evidence, series=series,
                        measurements={"heads": len(cases)}, truncated=truncated, device=inputs.device)


PROBE = register(Probe(
    name="max_margin", title="Maximum-margin statistic, MM-BD (P4)",
    needs=Needs(base=True, peers=True, calibration=True, kind="image-classifier", gpu="preferred",
                weight_only=False), run=run,
    catches="backdoor target classes reachable with abnormal margins, whatever the trigger's shape"))
