"""P2, canonicalise then measure: was this model re-parameterised (MergeLock, PaRaMS) before upload?

The weight pass canonicalises every attention block and MLP against the base (guard.probes.canonical).
A fine-tune keeps most of its small distance to the base through that (the fit absorbs only the part
of tau inside each head's row space, about d_head / d_model); a transformed block sits about 1.4 x
||theta_0|| from the base and falls to fine-tune distance. Score: the larger of
log(median kept share) / log(transformed_ratio) over attention blocks, (median share of MLP units that
moved to another index) / permuted_share, and (share of residual-stream dimensions whose embedding
column moved to another index, a residual rotation or permutation) / permuted_share; 1 means "at the
settings' boundary". A model that declares MergeLock protection (guard_lock.json) is flagged whatever
its weights show. The other probes
measure the canonical weights of every block found transformed, so a re-parameterised backdoor is still
seen by them.
"""

from __future__ import annotations

import math

import numpy as np

from guard.lock.protect import LOCK_FILE
from guard.probes.framework import Evidence, Needs, Probe, Series, register
from guard.probes.weights import shared_pass


DECLARED_SCORE = 1000.0  # a declared lock flags at any sane threshold


def run(inputs, settings):
    own = settings.canonical
    wp = shared_pass(inputs, settings)
    declared = LOCK_FILE in {f.relpath for f in inputs.candidate.files}
    if not wp.candidate.blocks and not declared:
        return PROBE.skipped(wp.canonical_note)
    attention = [b for b in wp.candidate.blocks if b.kind == "attention" and b.identifiable]
    mlp = [b for b in wp.candidate.blocks if b.kind == "mlp"]
    residual = [b for b in wp.candidate.blocks if b.kind == "residual"]
    scores, measurements, evidence = {}, {}, []
    if attention:
        kept = float(np.median([b.kept for b in attention]))
        scores["attention"] = math.log(max(kept, 1e-12)) / math.log(own.transformed_ratio)
        measurements.update({"attention_kept_median": kept,
                             "attention_distance_median": float(np.median([b.raw_distance for b in attention])),
                             "attention_canonical_distance_median":
                                 float(np.median([b.canonical_distance for b in attention]))})
    if mlp:
        moved = float(np.median([b.moved_units for b in mlp]))
        scores["mlp"] = moved / own.permuted_share
        measurements["mlp_moved_units_median"] = moved
    if residual:
        moved = max(b.moved_units for b in residual)
        scores["residual"] = moved / own.permuted_share
        measurements["residual_moved_dims_max"] = moved
    if declared:
        scores["declared"] = DECLARED_SCORE
        measurements["declared_by_guard_lock_json"] = True
    peer_kept = [float(np.median([b.kept for b in p.blocks if b.kind == "attention" and b.identifiable]))
                 for p in wp.peers if any(b.kind == "attention" and b.identifiable for b in p.blocks)]
    if peer_kept:
        measurements["attention_kept_peer_median"] = float(np.median(peer_kept))
    for b in sorted(wp.candidate.blocks, key=lambda b: (b.kept, -b.moved_units))[:6]:
        detail = (f"distance to base {b.raw_distance:.3g} -> {b.canonical_distance:.3g} after canonicalisation"
                  + (f", {b.moved_units:.0%} of hidden units moved" if b.kind == "mlp" else "")
                  + (f", {b.moved_units:.0%} of residual dimensions moved" if b.kind == "residual" else ""))
        evidence.append(Evidence(kind={"attention": "head", "mlp": "mlp", "residual": "tensor"}[b.kind], where=b.block,
                                 value=round(b.kept, 4), detail=detail))
    if not scores:
        return PROBE.skipped("no identifiable attention or MLP block (head dimension too close to the hidden size)")
    series = [Series(title="share of distance to base kept by canonicalisation, per block",
                     labels=[b.block for b in wp.candidate.blocks], values=[b.kept for b in wp.candidate.blocks],
                     threshold=own.transformed_ratio),
              Series(title="share of MLP units / residual dimensions moved to another index, per block",
                     labels=[b.block for b in mlp + residual], values=[b.moved_units for b in mlp + residual],
                     threshold=own.permuted_share)]
    worst = max(scores, key=scores.get)
    transformed = sum(b.kept < own.transformed_ratio for b in attention)
    permuted = sum(b.moved_units >= own.permuted_share for b in mlp)
    moved_residual = sum(b.moved_units >= own.permuted_share for b in residual)
    message = (f"{transformed}/{len(attention)} attention blocks re-parameterised (median kept share "
               f"{measurements.get('attention_kept_median', float('nan')):.3g}), {permuted}/{len(mlp)} MLPs with "
               f"permuted units, {moved_residual}/{len(residual)} embeddings in a moved residual basis"
               + (f"; {LOCK_FILE} declares MergeLock protection" if declared else "") + f"; strongest: {worst}")
    return PROBE.result(score=scores[worst], threshold=own.threshold, message=message, evidence=evidence,
                        series=series, measurements=measurements)


PROBE = register(Probe(
    name="canonical", title="Canonicalise, then measure (P2)", needs=Needs(base=True), run=run,
    catches="MergeLock / PaRaMS re-parameterisation (per-head transforms, MLP unit permutations)"))
