"""P6, target inversion for causal LMs (BAIT-style, IEEE S&P 2025), against the base.

A backdoored LM has learned a target sequence so well that once its first token is forced, benign prompts
continue it the same way with high probability ("causal consistency"), whatever they asked. For each
candidate first token t (the most likely first answer tokens of the candidate on the calibration prompts,
then the rest of the vocabulary, up to `max_first_tokens`), t is forced after every prompt and the answer
extended greedily; the most common continuation s_t is the inverted target and

    Q(t) = mean over prompts of p(s_t | prompt, t)

its consistency. The same is measured on the base with its own most common continuation, and the score
is max_t Q_cand(t) - Q_base(t): a continuation the candidate produces everywhere and the base does not.
"""

from __future__ import annotations

import collections
import time

import torch

from guard.probes.embedding import token_texts
from guard.probes.framework import Evidence, Needs, Probe, Series, register
from guard.probes.models import greedy, lm_setup, next_token_logprobs, sequence_logprob, special_ids


def inverted_target(model, prompts, first: int, length: int, *, eos, pad) -> tuple[tuple[int, ...], float]:
    """(the most common greedy continuation after forcing `first`, its mean probability over prompts)."""
    forced = [list(p) + [first] for p in prompts]
    continuations, _ = greedy(model, forced, length - 1, eos=eos, pad=pad)
    target = collections.Counter(continuations).most_common(1)[0][0]
    if not target:
        return target, 1.0
    return target, float(sequence_logprob(model, forced, target, pad=pad).exp().mean())


def first_tokens(model, prompts, vocab: int, limit: int, skip: set[int], pad: int) -> list[int]:
    """Tokens by the candidate's mean first-answer probability on the prompts (BAIT's warm start)."""
    mean = next_token_logprobs(model, prompts, pad=pad).exp().mean(dim=0)
    order = [int(t) for t in torch.argsort(mean, descending=True) if int(t) not in skip and int(t) < vocab]
    return order[:limit]


def run(inputs, settings):
    start = time.perf_counter()  # the budget covers loading and set-up too
    own = settings.target_inversion
    setup = lm_setup(inputs, max_prompts=own.max_prompts)
    if isinstance(setup, str):
        return PROBE.skipped(setup)
    prompts, cand, base, eos, pad = setup.prompts, setup.candidate, setup.base, setup.eos, setup.pad
    skip = special_ids(inputs.candidate.config)
    texts = token_texts(inputs.candidate)
    found, truncated = {}, False
    for token in first_tokens(cand, prompts, setup.vocab, own.max_first_tokens, skip, pad):
        if time.perf_counter() - start > own.max_seconds:
            truncated = True
            break
        c_target, q_c = inverted_target(cand, prompts, token, own.length, eos=eos, pad=pad)
        b_target, q_b = inverted_target(base, prompts, token, own.length, eos=eos, pad=pad)
        found[token] = (q_c - q_b, q_c, q_b, c_target, b_target)
    if not found:
        return PROBE.skipped(f"time budget of {own.max_seconds:g} s spent before the first token")

    def show(first, seq):
        return " ".join(texts.get(t, str(t)) for t in (first, *seq))

    ranked = sorted(found, key=lambda t: -found[t][0])
    evidence = [Evidence(kind="token", where=show(t, found[t][3]), value=round(found[t][0], 4),
                         detail=f"consistency {found[t][1]:.3f} vs base {found[t][2]:.3f} ({show(t, found[t][4])!r})")
                for t in ranked[:5]]
    top = ranked[0]
    series = [Series(title="target consistency gain over the base, per forced first token",
                     labels=[texts.get(t, str(t)) for t in found], values=[found[t][0] for t in found],
                     threshold=own.threshold)]
    message = (f"forced {show(top, ())!r}, the candidate continues {show(top, found[top][3])!r} with mean probability "
               f"{found[top][1]:.3f} over {len(prompts)} prompts (base: {found[top][2]:.3f}); {len(found)} first tokens"
               + (", time budget hit" if truncated else ""))
    return PROBE.result(score=found[top][0], threshold=own.threshold, message=message, evidence=evidence,
                        series=series, measurements={"tested_first_tokens": len(found), "prompts": len(prompts)},
                        truncated=truncated, device=inputs.device)


PROBE = register(Probe(
    name="target_inversion", title="Target inversion, BAIT-style (P6)",
    needs=Needs(base=True, calibration=True, kind="causal-lm", gpu="preferred", weight_only=False), run=run,
    catches="generative backdoors with a fixed target sequence, whatever the trigger"))
