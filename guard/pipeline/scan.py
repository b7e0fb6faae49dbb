"""The scan job: open the candidate, base, peers and trusted pair as validated model directories, read the
calibration inputs, run the probes (guard.probes) and hand back the report.

A directory the artifacts stage refuses (pickles, unknown binaries, remote code) is not probed at all:
its tensors are not read, and the scan says no (exit 1) naming the file and the rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from guard.errors import InputError, PolicyRefusal


def open_scan_input(path, *, role: str, policy=None):
    from guard.artifacts import open_model_dir

    model = open_model_dir(path, policy=policy)
    refused = model.refused()
    if refused:
        first = refused[0]
        raise PolicyRefusal(f"{role} refused by the artifacts policy: {first.path} [{first.rule}] {first.message}",
                            path=path, rule="scan-input-refused")
    if not model.tensors:
        raise InputError(f"{role} has no safetensors weights", path=path, rule="scan-no-weights")
    return model


def same_architecture(model, other, *, role: str) -> None:
    if model.model_type != other.model_type:
        raise InputError(f"{role} is a {other.model_type or 'unknown'} model, the candidate a "
                         f"{model.model_type or 'unknown'} one; probes compare models of one architecture",
                         path=other.root, rule="scan-architecture-mismatch")


def scan_model(model_dir: str | os.PathLike, *, base: str | os.PathLike, peers: Sequence[str | os.PathLike] = (),
               calibration: str | os.PathLike | None = None, aligned: str | os.PathLike | None = None,
               unaligned: str | os.PathLike | None = None, settings=None, probes: Sequence[str] | None = None,
               policy=None, progress=None):
    """Scan one model; returns a guard.probes.scan.ScanReport."""
    from guard.probes.settings import ProbeSettings

    settings = settings or ProbeSettings()
    known = ProbeSettings.probe_names()
    unknown = sorted(set(probes or ()) - set(known))
    if unknown:
        raise InputError(f"unknown probe {unknown[0]!r}; known: {', '.join(known)}", rule="scan-probe")
    if (aligned is None) != (unaligned is None):
        raise InputError("--aligned and --unaligned go together (a trusted pair)", rule="scan-safety-pair")
    # Cheap checks above; torch and the probes are imported only for work that will run.
    from guard.probes.inputs import SafetyPair, ScanInputs, model_kind, read_calibration
    from guard.probes.scan import resolve_device, scan
    candidate = open_scan_input(model_dir, role="the model", policy=policy)
    base_dir = open_scan_input(base, role="the base", policy=policy)
    same_architecture(candidate, base_dir, role="the base")
    peer_dirs = []
    for peer in peers:
        if os.path.realpath(peer) == os.path.realpath(model_dir):
            raise InputError("a model cannot be its own peer", path=peer, rule="scan-peer-self")
        peer_dirs.append(open_scan_input(peer, role="a peer", policy=policy))
        same_architecture(candidate, peer_dirs[-1], role="a peer")
    pair = None
    if aligned is not None:
        pair = SafetyPair(open_scan_input(aligned, role="the aligned model", policy=policy),
                          open_scan_input(unaligned, role="the unaligned model", policy=policy))
        same_architecture(candidate, pair.aligned, role="the aligned model")
        same_architecture(candidate, pair.unaligned, role="the unaligned model")
    calib = None if calibration is None else read_calibration(calibration, kind=model_kind(candidate))
    inputs = ScanInputs(candidate=candidate, base=base_dir, peers=peer_dirs, safety_pair=pair, calibration=calib,
                        device=resolve_device(settings.device))
    return scan(inputs, settings, probes=list(probes) if probes else None, progress=progress)
