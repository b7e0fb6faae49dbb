"""Embedding-row and rare-token outliers: a trigger moves its own row.

A BadNets-style trigger token never occurs in clean data, so an honest fine-tune leaves its input
embedding row where the base had it (no gradient reaches it), while the attacker's fine-tune trains it;
a patch trigger in a fixed corner does the same to that position's embedding. Every model's row
movements are first put in units of its own typical row movement s (the median over the rows it moved),
then per embedding-like tensor (token or position rows) and row i the score is

    (||tau_i|| / s) / (max over peers of their ||tau_i|| / s_peer + floor)

i.e. how far out of proportion the candidate moved the row, compared with the most any peer moved it out
of proportion. Rows a peer moved as much are not outliers, whatever their size; an expert that moved
every row further (trained longer, at a higher learning rate) scores what it would have scored had it
trained less: the score depends on the shape of the movement, not its amount. (The earlier score, raw
movement over the peers' largest raw movement plus a floor, grew with the amount of training; it is kept
as the `unscaled` measurement.) The highest-scoring token rows are handed to the insertion probe as trigger candidates.
"""

from __future__ import annotations

import json

import numpy as np

from guard.probes.framework import Evidence, Needs, Probe, Series, register
from guard.probes.weights import shared_pass


def unscaled_row_scores(inputs, settings) -> dict[str, np.ndarray]:
    """The earlier score: ||tau_i|| / (max over peers of ||tau_i|| + floor x the candidate's median
    ||tau_j||); it grows with the amount of training (reported as a measurement, not scored)."""
    wp = shared_pass(inputs, settings)
    floor = settings.embedding.floor
    out = {}
    for name in wp.row_tensors:
        rows = wp.candidate.stats[name].rows
        peer_rows = [p.stats[name].rows for p in wp.peers if name in p.stats]
        furthest = np.max(np.stack(peer_rows), axis=0) if peer_rows else np.zeros_like(rows)
        unit = floor * float(np.median(rows))
        out[name] = rows / (furthest + unit) if unit > 0 else np.zeros_like(rows)
    return out


def own_scale(rows: np.ndarray) -> float:
    """A model's typical row movement: the median over the rows it moved at all (most rows of a large
    vocabulary never move in a fine-tune, so a plain median would be 0)."""
    moved = rows[rows > 0]
    return float(np.median(moved)) if len(moved) else 0.0


def row_scores(inputs, settings) -> dict[str, np.ndarray]:
    """tensor name -> per-row outlier score (see the module docstring)."""
    wp = shared_pass(inputs, settings)
    floor = settings.embedding.floor
    out = {}
    for name in wp.row_tensors:
        rows = wp.candidate.stats[name].rows
        scale = own_scale(rows)
        if scale <= 0:
            out[name] = np.zeros_like(rows)
            continue
        peer_scaled = [(p.stats[name].rows, own_scale(p.stats[name].rows)) for p in wp.peers if name in p.stats]
        peer_rows = [peer / peer_scale for peer, peer_scale in peer_scaled if peer_scale > 0]
        furthest = np.max(np.stack(peer_rows), axis=0) if peer_rows else np.zeros_like(rows)
        out[name] = (rows / scale) / (furthest + floor)
    return out


def token_rows(inputs, settings) -> list[str]:
    """Row tensors indexed by token id (input embeddings first, then output embeddings)."""
    wp = shared_pass(inputs, settings)
    rows = [n for n in wp.row_tensors if wp.vocab_size is not None
            and wp.candidate.stats[n].rows is not None and len(wp.candidate.stats[n].rows) == wp.vocab_size]
    return sorted(rows, key=lambda n: ("lm_head" in n or "output" in n, n))


def nominated_tokens(inputs, settings) -> list[int]:
    """Token ids whose input-embedding rows stand out most (trigger candidates for the insertion probe)."""
    names = token_rows(inputs, settings)
    if not names:
        return []
    scores = row_scores(inputs, settings)[names[0]]
    return [int(i) for i in np.argsort(-scores)[: settings.embedding.nominate]]


def token_texts(model_dir) -> dict[int, str]:
    """id -> token text from the model's vocab.json (guard's zoo) or tokenizer.json, when present."""
    kinds = {f.relpath: f.kind for f in model_dir.files}
    for rel in ("vocab.json", "tokenizer.json"):
        if kinds.get(rel) != "json":
            continue
        try:
            data = json.loads((model_dir.root / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("tokens"), list):
            return {i: str(t) for i, t in enumerate(data["tokens"])}
        vocab = data.get("model", {}).get("vocab") if isinstance(data, dict) else None
        if isinstance(vocab, dict):
            return {int(i): str(t) for t, i in vocab.items() if isinstance(i, int)}
    return {}


def run(inputs, settings):
    own = settings.embedding
    wp = shared_pass(inputs, settings)
    if not wp.row_tensors:
        return PROBE.skipped("no embedding-like tensor (token or position rows) shared with the base")
    scores = row_scores(inputs, settings)
    texts = token_texts(inputs.candidate)
    tokens = set(token_rows(inputs, settings))
    rows, series = [], []
    for name, values in scores.items():
        kind = "token" if name in tokens else "position"
        rows += [(float(values[i]), name, int(i), kind) for i in np.argsort(-values)[:3]]
        series.append(Series(title=f"row outlier score, {name}", labels=[str(i) for i in range(len(values))],
                             values=[float(v) for v in values], threshold=own.threshold))
    rows.sort(key=lambda r: -r[0])
    evidence = []
    for value, name, i, kind in rows[:6]:
        label = f"{kind} {i}" + (f" {texts[i]!r}" if kind == "token" and i in texts else "")
        evidence.append(Evidence(kind=kind, where=f"{name}[{i}]", value=round(value, 3),
                                 detail=f"{label}: moved {wp.candidate.stats[name].rows[i]:.3g}"))
    best = rows[0][:3]
    score, name, row = best
    text = f" ({texts[row]!r})" if name in tokens and row in texts else ""
    message = (f"row {row}{text} of {name}, in units of each model's typical row movement, moved {score:.3g} x what "
               f"any of {len(wp.peers)} peers moved it" if wp.peers else
               f"row {row}{text} of {name} moved {score:.3g} x the floor, in units of its typical row movement "
               "(no peers to compare)")
    return PROBE.result(score=score, threshold=own.threshold, message=message, evidence=evidence, series=series,
                        measurements={"row": row, "tensor": name,
                                      "unscaled": max(float(v.max()) for v in unscaled_row_scores(inputs, settings).values())})


PROBE = register(Probe(
    name="embedding", title="Embedding-row and rare-token outliers", needs=Needs(base=True, peers=True), run=run,
    catches="trigger tokens and trigger positions trained by one contributor only"))
