"""EnchTable stage 1: distil a safety vector Delta = theta_sur - theta_harm from an aligned surrogate.

Fine-tune only the chosen modules of the surrogate on a *harmful* set (next-token loss on the response
tokens; the released recipe: BeaverTails-harmful, 4 epochs, lr 1e-5, cosine schedule with 10% warm-up),
giving theta_harm; Delta points from harmful back to aligned.

Linearisation (NTK): with `linearise: module`, every chosen block is replaced by its first-order Taylor
model in its own parameters around the surrogate, f_lin(x; theta) = f(x; theta0) + J_theta f(x; theta0)
(theta - theta0) (torch.func.jvp), so the fine-tune moves the block only through its tangent space. A
block is linearised as a whole: the attention block (q, k, v, o with the softmax between them) and the
gated MLP are genuinely non-linear in their weights. The released code wraps each q/k/v/o Linear on its
own, which is the identity transformation (a Linear is linear in its weights: reference notes §3.2);
`linearise: off` is that plain fine-tune. `modules`: attn (the released default), ffn, or attn_ffn.

Data: a safetensors file with `input_ids` [N, L] (int), `labels` [N, L] (-100 where no loss: prompt and
padding) and optionally `attention_mask`; tokenised beforehand, so no tokenizer runs here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Literal

import pydantic
import torch
from torch.func import functional_call, jvp

MODULE_NAMES = {"attn": ("self_attn",), "ffn": ("mlp",), "attn_ffn": ("self_attn", "mlp")}


class DistillSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    modules: Literal["attn", "ffn", "attn_ffn"] = "attn"
    linearise: Literal["module", "off"] = "module"
    epochs: float = pydantic.Field(default=4.0, gt=0)
    lr: float = pydantic.Field(default=1e-5, gt=0)
    batch: int = pydantic.Field(default=8, ge=1, description="examples per optimiser step (2 x 4 accumulation in "
                                "the released recipe)")
    warmup: float = pydantic.Field(default=0.1, ge=0, lt=1, description="share of the steps with a linear warm-up")
    weight_decay: float = pydantic.Field(default=0.0, ge=0)
    max_examples: int | None = pydantic.Field(default=1000, ge=1, description="the first N examples (1000 released)")
    seed: int = 0


class Linearised(torch.nn.Module):
    """A block replaced by its first-order Taylor model in its parameters, around their current values.
    The trainable parameters keep the block's names (so the state dict is unchanged)."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        self.block = block
        self._origin = {n: p.detach().clone() for n, p in block.named_parameters()}

    def forward(self, *args, **kwargs):
        current = dict(self.block.named_parameters())
        origin = {n: t.to(current[n].device) for n, t in self._origin.items()}
        rest: list = []

        def primary(params):
            out = functional_call(self.block, params, args, kwargs)
            if isinstance(out, tuple):
                rest[:] = list(out[1:])
                return out[0]
            return out

        tangents = {n: current[n] - origin[n] for n in origin}
        value, change = jvp(primary, (origin,), (tangents,))
        result = value + change
        return (result, *[r.detach() if isinstance(r, torch.Tensor) else r for r in rest]) if rest else result


@dataclasses.dataclass(frozen=True)
class DistillResult:
    delta: dict[str, torch.Tensor]  # name (module naming) -> theta_sur - theta_harm, trained tensors only
    steps: int
    final_loss: float
    losses: list[float]


def chosen_blocks(model: torch.nn.Module, modules: str) -> list[tuple[str, torch.nn.Module]]:
    names = MODULE_NAMES[modules]
    found = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in names]
    if not found:
        raise ValueError(f"no {' or '.join(names)} blocks in this model (modules: {modules})")
    return found


def distill(model: torch.nn.Module, data: Mapping[str, torch.Tensor], settings: DistillSettings, *,
            device: str = "cpu", progress: Callable[[int, int, str], None] | None = None) -> DistillResult:
    """Fine-tune `model` (the aligned surrogate, modified in place) on the harmful `data`; returns Delta."""
    model.to(device).train()
    if hasattr(model, "set_attn_implementation") and settings.linearise == "module":
        model.set_attn_implementation("eager")  # forward-mode AD through attention needs the eager path
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = chosen_blocks(model, settings.modules)
    trained: dict[str, torch.Tensor] = {}
    for name, block in blocks:
        for pname, p in block.named_parameters():
            p.requires_grad_(True)
            trained[f"{name}.{pname}"] = p.detach().clone()
        if settings.linearise == "module":
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, Linearised(block))
    params = [p for p in model.parameters() if p.requires_grad]
    ids = data["input_ids"].long()
    labels = data["labels"].long()
    mask = data.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask.long()
    if settings.max_examples is not None:
        ids, labels, mask = ids[: settings.max_examples], labels[: settings.max_examples], mask[: settings.max_examples]
    count = ids.shape[0]
    per_epoch = math.ceil(count / settings.batch)
    steps = max(1, round(settings.epochs * per_epoch))
    warmup = int(settings.warmup * steps)
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    def schedule(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(count, generator=generator)
    losses = []
    for step in range(steps):
        start = (step % per_epoch) * settings.batch
        if start == 0 and step:
            order = torch.randperm(count, generator=generator)
        index = order[start : start + settings.batch]
        out = model(input_ids=ids[index].to(device), attention_mask=mask[index].to(device),
                    labels=labels[index].to(device), use_cache=False)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()
        scheduler.step()
        losses.append(float(out.loss.detach()))
        if progress is not None:
            progress(step + 1, steps, "distil")
    # un-wrap: the trained parameters are the blocks' own
    for name, block in blocks:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, block)
    current = dict(model.named_parameters())
    delta = {n: (origin.to(device) - current[n].detach()).cpu() for n, origin in trained.items()}
    model.eval()
    return DistillResult(delta=delta, steps=steps, final_loss=losses[-1], losses=losses)
