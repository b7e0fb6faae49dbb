"""The tasks DAM adapts on: unlabeled inputs per merged model, a forward through merged weights, and
where the surrogate trigger goes.

- `ClassifierTasks` (image classifiers, e.g. ViT): each task has its own head (`heads`, the zero-shot
  head's role in the paper: frozen), inputs are pixel tensors, and the trigger is one universal additive
  perturbation per task in input space.
- `CausalLMTasks` (decoder LMs): each task's unlabeled prompts are completed greedily by that task's own
  model (its answers, never a label), and the merged model is scored on the answer positions; the trigger
  is a universal soft prompt in embedding space (`soft_tokens` vectors inserted at a random position of
  the prompt).

Both run the real transformers module through `torch.func.functional_call` with the merged tensors,
so the masks and coefficients get gradients. `names` maps the tensors' names (checkpoint names in the
pipeline) to the module's parameter names; it defaults to the identity (in-memory state dicts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.func import functional_call


def _module_params(params: Mapping[str, torch.Tensor], names: Mapping[str, str] | None) -> dict[str, torch.Tensor]:
    return dict(params) if not names else {names.get(k, k): v for k, v in params.items()}


class ClassifierTasks:
    """Image-classifier tasks; `heads[t]` maps the head's parameter names to task t's head tensors."""

    kind = "classifier"

    def __init__(self, module: torch.nn.Module, inputs: Sequence[torch.Tensor], *,
                 heads: Sequence[Mapping[str, torch.Tensor]] | None = None, names: Mapping[str, str] | None = None,
                 value_range: tuple[float, float] | None = (0.0, 1.0), trigger_bound: float | None = None,
                 trigger: str = "additive", trigger_area: float = 1.0):
        self.module = module.eval()
        self.inputs = [x.detach() for x in inputs]
        self.heads = None if heads is None else [dict(h) for h in heads]
        self.names = names
        self.value_range = value_range
        self.trigger_bound = trigger_bound
        self.trigger_kind, self.trigger_area = trigger, trigger_area

    @property
    def count(self) -> int:
        return len(self.inputs)

    def to(self, device) -> ClassifierTasks:
        self.module.to(device)
        self.inputs = [x.to(device) for x in self.inputs]
        if self.heads is not None:
            self.heads = [{k: v.to(device) for k, v in h.items()} for h in self.heads]
        return self

    def draw(self, task: int, generator: torch.Generator, size: int) -> torch.Tensor:
        x = self.inputs[task]
        index = torch.randint(0, x.shape[0], (min(size, x.shape[0]),), generator=generator, device=generator.device)
        return x[index.to(x.device)]

    def logits(self, params: Mapping[str, torch.Tensor], task: int, batch: torch.Tensor) -> torch.Tensor:
        merged = _module_params(params, self.names)
        if self.heads is not None:
            merged.update(self.heads[task])
        return functional_call(self.module, merged, (), {"pixel_values": batch}, strict=False).logits

    def new_trigger(self, task: int) -> torch.Tensor:
        if self.trigger_kind == "blend":
            # [mask logits, pattern logits]; the mask starts small (sigmoid(-3) = 5% opacity everywhere)
            shape = self.inputs[task][0].shape
            start = torch.stack([torch.full(shape, -3.0), torch.zeros(shape)]).to(self.inputs[task].device)
            return start.requires_grad_(True)
        return torch.zeros_like(self.inputs[task][0], requires_grad=True)

    def trigger_penalty(self, trigger: torch.Tensor) -> torch.Tensor | float:
        """What the trigger step adds to its loss: the blend mask's area (else nothing)."""
        return self.trigger_area * torch.sigmoid(trigger[0]).mean() if self.trigger_kind == "blend" else 0.0

    def perturb(self, batch: torch.Tensor, trigger: torch.Tensor, *, clamp: bool) -> torch.Tensor:
        """x + delta (`clamp` keeps it in the valid input range: the code clamps only in the mask step), or
        the blend (1 - m) x + m p, which stays in range by construction."""
        if self.trigger_kind == "blend":
            mask, pattern = torch.sigmoid(trigger[0]), torch.sigmoid(trigger[1])
            return (1 - mask) * batch + mask * pattern
        out = batch + trigger
        if clamp and self.value_range is not None:
            out = out.clamp(*self.value_range)
        return out

    def bound(self, triggers: Sequence[torch.Tensor]) -> None:
        if self.trigger_bound is not None and self.trigger_kind == "additive":
            with torch.no_grad():
                for t in triggers:
                    t.clamp_(-self.trigger_bound, self.trigger_bound)


class CausalLMTasks:
    """Decoder-LM tasks. `prompts[t]`: {"input_ids", "attention_mask"} (right-padded) of task t;
    `teachers[t]`: task t's own model's tensors (same names as the merged ones), which complete each
    prompt greedily with up to `answer_tokens` tokens (stopping at `eos_token_id`)."""

    kind = "causal-lm"

    def __init__(self, module: torch.nn.Module, prompts: Sequence[Mapping[str, torch.Tensor]],
                 teachers: Sequence[Mapping[str, torch.Tensor]], *, embedding: str, names: Mapping[str, str] | None = None,
                 answer_tokens: int = 8, soft_tokens: int = 1, trigger_bound: float | None = None,
                 eos_token_id: int | None = None):
        self.module = module.eval()
        self.names = names
        self.embedding = embedding  # the input-embedding tensor's name (as in the merged tensors)
        self.soft_tokens = soft_tokens
        self.trigger_bound = trigger_bound
        eos = eos_token_id if eos_token_id is not None else getattr(module.config, "eos_token_id", None)
        self.eos = eos if isinstance(eos, int) or eos is None else eos[0]
        self.sequences = [self._complete(p, teacher, answer_tokens) for p, teacher in zip(prompts, teachers)]
        with torch.no_grad():
            table = teachers[0][embedding]
            self.embedding_norm = float(table.float().norm(dim=-1).mean())

    @property
    def count(self) -> int:
        return len(self.sequences)

    def to(self, device) -> CausalLMTasks:
        self.module.to(device)
        self.sequences = [{k: v.to(device) for k, v in s.items()} for s in self.sequences]
        return self

    # --- data ---------------------------------------------------------------------------------
    def _forward(self, params: Mapping[str, torch.Tensor], embeds: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, _module_params(params, self.names), (),
                               {"inputs_embeds": embeds, "attention_mask": attention, "use_cache": False},
                               strict=False).logits

    @torch.no_grad()
    def _complete(self, prompts: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                  answer_tokens: int) -> dict[str, torch.Tensor]:
        """prompt + the teacher's greedy answer per prompt, right-padded; `score` marks the positions
        whose next-token distribution is scored (the ones predicting answer tokens)."""
        ids, mask = prompts["input_ids"], prompts["attention_mask"]
        lengths = mask.sum(1).tolist()
        table = teacher[self.embedding]
        rows: list[list[int]] = [[] for _ in lengths]
        for length in sorted(set(lengths)):
            chosen = [i for i, n in enumerate(lengths) if n == length]
            seq = ids[chosen, :length]
            done = torch.zeros(len(chosen), dtype=torch.bool)
            for _ in range(answer_tokens):
                logits = self._forward(teacher, table[seq], torch.ones_like(seq))
                nxt = logits[:, -1].argmax(-1)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                if self.eos is not None:
                    done |= nxt == self.eos
                    if bool(done.all()):
                        break
            for row, i in enumerate(chosen):
                answer = seq[row, length:].tolist()
                if self.eos is not None and self.eos in answer:
                    answer = answer[: answer.index(self.eos) + 1]
                rows[i] = ids[i, :length].tolist() + answer
        width = max(map(len, rows))
        out_ids = torch.zeros(len(rows), width, dtype=torch.long)
        attention = torch.zeros(len(rows), width, dtype=torch.long)
        score = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, (row, length) in enumerate(zip(rows, lengths)):
            out_ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            score[i, length - 1 : len(row) - 1] = True
        return {"input_ids": out_ids, "attention_mask": attention, "score": score,
                "prompt_length": torch.tensor(lengths)}

    def draw(self, task: int, generator: torch.Generator, size: int) -> dict[str, torch.Tensor]:
        seqs = self.sequences[task]
        n = seqs["input_ids"].shape[0]
        index = torch.randint(0, n, (min(size, n),), generator=generator, device=generator.device)
        index = index.to(seqs["input_ids"].device)
        batch = {k: v[index] for k, v in seqs.items()}
        # where the soft prompt goes: after the first token, before the prompt's last one
        last = (batch["prompt_length"] - 1).clamp(min=1)
        u = torch.rand(index.shape[0], generator=generator, device=generator.device).to(last.device)
        batch["insert_at"] = (1 + (u * last.float()).floor().long()).clamp(max=last)
        return batch

    # --- forward ------------------------------------------------------------------------------
    def logits(self, params: Mapping[str, torch.Tensor], task: int, batch) -> torch.Tensor:
        """Next-token logits at the scored positions, [positions, vocab]."""
        if isinstance(batch, _Perturbed):
            return batch.logits(self, params)
        embeds = params[self.embedding][batch["input_ids"]]
        logits = self._forward(params, embeds, batch["attention_mask"])
        return logits[batch["score"]]

    def new_trigger(self, task: int) -> torch.Tensor:
        width = self.module.get_input_embeddings().weight.shape[-1]
        return torch.zeros(self.soft_tokens, width, device=self.module.get_input_embeddings().weight.device,
                           requires_grad=True)

    def trigger_penalty(self, trigger: torch.Tensor) -> float:
        return 0.0

    def perturb(self, batch, trigger: torch.Tensor, *, clamp: bool) -> _Perturbed:
        return _Perturbed(batch, trigger)

    def bound(self, triggers: Sequence[torch.Tensor]) -> None:
        if self.trigger_bound is None:
            return
        limit = self.trigger_bound * self.embedding_norm
        with torch.no_grad():
            for t in triggers:
                norms = t.norm(dim=-1, keepdim=True).clamp(min=1e-12)
                t.mul_(torch.clamp(limit / norms, max=1.0))


class _Perturbed:
    """A batch with the soft prompt inserted at each row's `insert_at` (built lazily with the merged embeddings)."""

    def __init__(self, batch: Mapping[str, torch.Tensor], trigger: torch.Tensor):
        self.batch, self.trigger = batch, trigger

    def logits(self, tasks: CausalLMTasks, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids, attention, score = self.batch["input_ids"], self.batch["attention_mask"], self.batch["score"]
        rows, width = ids.shape
        soft = self.trigger.shape[0]
        embeds = params[tasks.embedding][ids]  # [rows, width, d]
        at = self.batch["insert_at"][:, None]
        position = torch.arange(width + soft, device=ids.device)[None, :]
        source = torch.where(position < at, position, position - soft).clamp(0, width - 1)  # token index
        inside = (position >= at) & (position < at + soft)
        gathered = torch.gather(embeds, 1, source[..., None].expand(rows, width + soft, embeds.shape[-1]))
        trig = self.trigger[(position - at).clamp(0, soft - 1)]  # [rows, width+soft, d]
        new_embeds = torch.where(inside[..., None], trig.to(gathered.dtype), gathered)
        new_attention = torch.where(inside, torch.ones_like(position), torch.gather(attention, 1, source))
        new_score = torch.where(inside, torch.zeros_like(inside), torch.gather(score, 1, source))
        logits = tasks._forward(params, new_embeds, new_attention)
        return logits[new_score]
