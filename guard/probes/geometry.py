"""P1, task-vector geometry against the peers: is this task vector shaped like its peers' task vectors?

Per tensor the weight pass gives ||tau|| / ||theta_0||, the kurtosis of tau's entries and the share of
||tau||^2 in its largest 1% of entries. Summarised per model (medians over the 2-D tensors) and compared
with the peers by robust z-scores:

- heavy tails (kurtosis, top-1% energy): amplified or sparsified backdoor vectors (Merge Hijacking,
  LoBAM) concentrate their change in few entries; a gradient fine-tune spreads it.
- the per-tensor profile: log(||tau_t|| / ||theta_0,t||) minus the peers' median for that tensor, less
  its median over tensors (so a model that simply trained longer, moving every tensor further, scores
  0), maximised over tensors: one tensor or layer moved far out of proportion to the rest (surgical edits,
  re-parameterised blocks the canonicaliser could not undo).

The global scale (how far the model moved in all) is reported but not scored: clean experts legitimately
move much further than their peers (longer training, higher learning rates).
"""

from __future__ import annotations

import math

import numpy as np

from guard.probes.framework import Evidence, Needs, Probe, Series, register
from guard.probes.weights import ModelPass, robust_z, shared_pass

MIN_ELEMENTS = 1024  # smaller tensors (norm gains, biases) give noisy tail statistics
# Without peers: a Gaussian task vector's log-kurtosis (log 3) and top-1% energy share (0.085).
REFERENCE = {"kurtosis": math.log(3.0), "top_energy": 0.085}


def _eligible(model_pass: ModelPass) -> dict:
    return {n: s for n, s in model_pass.stats.items()
            if s.numel >= MIN_ELEMENTS and s.stable_rank is not None and s.tau_norm > 0 and s.base_norm > 0}


def _tails(model_pass: ModelPass) -> dict[str, float]:
    stats = _eligible(model_pass).values()
    if not stats:
        return {"kurtosis": math.nan, "top_energy": math.nan}
    return {"kurtosis": float(np.median([math.log(max(s.kurtosis, 1e-12)) for s in stats])),
            "top_energy": float(np.median([s.top_energy for s in stats]))}


def _log_relative(model_pass: ModelPass) -> dict[str, float]:
    return {n: math.log(s.relative) for n, s in _eligible(model_pass).items()}


def profile_deviation(mine: dict[str, float], others: list[dict[str, float]]) -> tuple[float, dict[str, float]]:
    """max over tensors of (log relative norm - the others' median there), centred by its median over
    tensors; also every tensor's centred deviation."""
    shared = [n for n in mine if sum(n in o for o in others) >= max(1, len(others) // 2)]
    if not shared:
        return math.nan, {}
    diffs = {n: mine[n] - float(np.median([o[n] for o in others if n in o])) for n in shared}
    centre = float(np.median(list(diffs.values())))
    centred = {n: d - centre for n, d in diffs.items()}
    return max(centred.values()), centred


def run(inputs, settings) -> object:
    own = settings.geometry
    wp = shared_pass(inputs, settings)
    cand, peers = wp.candidate, wp.peers
    tails = _tails(cand)
    peer_tails = [_tails(p) for p in peers]
    zs, measurements, evidence = {}, {}, []
    for feature, floor in (("kurtosis", own.min_spread_kurtosis), ("top_energy", own.min_spread_top_energy)):
        values = [t[feature] for t in peer_tails] if peers else [REFERENCE[feature]]
        z, median, spread = robust_z(tails[feature], values, min_spread=floor)
        zs[feature] = z
        measurements.update({f"{feature}": tails[feature], f"{feature}_peer_median": median, f"{feature}_z": z})
    series = []
    rel = _log_relative(cand)
    peer_rel = [_log_relative(p) for p in peers]
    if len(peers) >= 2:
        profile, centred = profile_deviation(rel, peer_rel)
        peer_profiles = [profile_deviation(peer_rel[i], peer_rel[:i] + peer_rel[i + 1:])[0] for i in range(len(peers))]
        z, median, _ = robust_z(profile, peer_profiles, min_spread=own.min_spread_profile)
        zs["profile"] = z
        measurements.update({"profile": profile, "profile_peer_median": median, "profile_z": z})
        for name, dev in sorted(centred.items(), key=lambda kv: -kv[1])[:5]:
            evidence.append(Evidence(kind="tensor", where=name, value=round(dev, 4),
                                     detail=f"log relative norm {rel[name]:.3f}, {dev:+.3f} beyond the peers' profile"))
    else:
        measurements["profile"] = None
    peer_scales = [math.log(p.total_relative()) for p in peers]
    measurements["relative_distance"] = cand.total_relative()
    measurements["relative_distance_peer_median"] = float(np.exp(np.median(peer_scales))) if peers else None
    kurt = {n: math.log(max(s.kurtosis, 1e-12)) for n, s in _eligible(cand).items()}
    for name in sorted(kurt, key=lambda n: -kurt[n])[:3]:
        evidence.append(Evidence(kind="tensor", where=name, value=round(math.exp(kurt[name]), 3),
                                 detail="kurtosis of the task vector's entries"))
    names = list(rel)
    reference = [float(np.median([p[n] for p in peer_rel if n in p])) if any(n in p for p in peer_rel) else math.nan
                 for n in names] if peers else None
    series.append(Series(title="log(||tau|| / ||theta_0||) per tensor", labels=names, values=[rel[n] for n in names],
                         reference=reference))
    peer_kurt = [{n: math.log(max(s.kurtosis, 1e-12)) for n, s in _eligible(p).items()} for p in peers]
    series.append(Series(title="log kurtosis of tau per tensor", labels=names, values=[kurt[n] for n in names],
                         reference=[float(np.median([p[n] for p in peer_kurt if n in p])) if any(n in p for p in peer_kurt)
                                    else math.nan for n in names] if peers else None))
    finite = {k: v for k, v in zs.items() if math.isfinite(v)}
    if not finite:
        return PROBE.skipped("no 2-D tensor with a non-zero task vector to measure")
    worst = max(finite, key=finite.get)
    score = finite[worst]
    against = f"{len(peers)} peers" if peers else "reference values (no peers)"
    message = (f"largest z against {against}: {worst} {score:.2f} (kurtosis z {zs['kurtosis']:.2f}, top-1% energy z "
               f"{zs['top_energy']:.2f}" + (f", profile z {zs['profile']:.2f}" if "profile" in zs else "") +
               f"); moved {cand.total_relative():.3g} x ||theta_0|| in all (not scored)")
    return PROBE.result(score=score, threshold=own.threshold, message=message, evidence=evidence, series=series,
                        measurements=measurements)


PROBE = register(Probe(
    name="geometry", title="Task-vector geometry (P1)", needs=Needs(base=True, peers=True), run=run,
    catches="amplified or sparsified backdoor vectors, surgical edits, tensors moved out of proportion"))
