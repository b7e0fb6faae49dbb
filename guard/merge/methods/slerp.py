"""Spherical linear interpolation (Shoemake 1985) between the base and one other model, treating each
tensor as one vector: interpolate along the great circle by `t` (0 = base, 1 = the other model), and
fall back to linear interpolation when the two are (anti)parallel. Computed in float32."""

from __future__ import annotations

import math

import pydantic
import torch

from guard.merge.method import MergeMethod, Parameters, TensorGroup

DOT_THRESHOLD = 0.9995
EPS = 1e-8


class SlerpParams(Parameters):
    t: float = pydantic.Field(ge=0.0, le=1.0, description="interpolation factor: 0 is the base, 1 the other model")


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    work = torch.float64 if v0.dtype == torch.float64 else torch.float32
    a, b = v0.to(work).reshape(-1), v1.to(work).reshape(-1)
    norm_a, norm_b = float(a.norm()), float(b.norm())
    dot = float((a / (norm_a if norm_a > EPS else 1.0)).dot(b / (norm_b if norm_b > EPS else 1.0)))
    dot = max(-1.0, min(1.0, dot))
    if abs(dot) > DOT_THRESHOLD:
        out = torch.lerp(a, b, t)
    else:
        theta = math.acos(dot)
        sin_theta = math.sin(theta)
        out = (math.sin((1 - t) * theta) / sin_theta) * a + (math.sin(t * theta) / sin_theta) * b
    return out.reshape(v0.shape).to(v0.dtype)


def merge(group: TensorGroup) -> torch.Tensor:
    return slerp(group.params.t, group.base, group.models[0])


METHOD = MergeMethod(
    name="slerp",
    description="spherical interpolation between the base and one model",
    reference="https://en.wikipedia.org/wiki/Slerp",
    merge=merge,
    params=SlerpParams,
    min_models=1,
    max_models=1,
)
