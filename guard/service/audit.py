"""The audit of one downloaded Hub revision: the checks a consumer runs, one record per check.

    artifacts   strict reading of every file (pipeline.inspect -> artifacts): refused findings fail
    signature   OMS signature at model.sig, against the signers the trust policy binds to this repo, and
                the signed model name bound to the repo name (guard.service.trust)
    mergelock   lock.detect against the base model named in the model card (or base-free)
    weights     per-layer RMS of the weights (context for the plots, never a verdict)
    probes      the probe stage, once guard.probes exists in this build

`Auditor` is the narrow interface the worker calls; `StageAuditor` composes today's stage APIs. The
verdict is `fail` when any check fails, else `pass`; every check says why, with its numbers.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
import pathlib
import re
import statistics
from typing import Any

from guard.errors import GuardError
from guard.service.trust import RepoTrust

SIGNATURE_NAME = "model.sig"
STATUSES = ("pass", "warn", "fail", "skip")
_LAYER = re.compile(r"^(.*?\.(\d+))\.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditRequest:
    repo: str
    ref: str
    sha: str
    model_dir: pathlib.Path
    trust: RepoTrust
    base_dir: pathlib.Path | None = None
    base_ref: str | None = None  # "hf:owner/name@sha" of base_dir
    base_note: str | None = None  # why there is no base, when there is none


def check(check_id: str, title: str, status: str, message: str, *, details: dict | None = None,
          plots: list[dict] | None = None) -> dict[str, Any]:
    assert status in STATUSES, status
    return {"id": check_id, "title": title, "status": status, "message": message, "details": details or {},
            "plots": plots or []}


def verdict_of(checks: list[dict]) -> str:
    return "fail" if any(c["status"] == "fail" for c in checks) else "pass"


class Auditor(abc.ABC):
    @abc.abstractmethod
    def audit(self, request: AuditRequest) -> dict[str, Any]:
        """Return {"verdict", "checks": [...], "model": {...}}; raise only for guard's own bugs."""


class StageAuditor(Auditor):
    def audit(self, request: AuditRequest) -> dict[str, Any]:
        from guard.pipeline.inspect import inspect_model

        checks: list[dict] = []
        model_info: dict[str, Any] = {}
        report, base_used, base_note = None, False, request.base_note
        try:
            report, base_used, base_note = self._inspect(inspect_model, request)
        except GuardError as exc:
            checks.append(check("artifacts", "Artifact checks", "fail", exc.one_line(), details={"rule": exc.rule}))
        if report is not None:
            model_info = {k: report[k] for k in ("architecture", "model_type", "parameter_count", "tensor_count",
                                                 "tensor_bytes", "total_bytes")}
            model_info["files"] = len(report["files"])
            checks.append(_artifacts_check(report))
        checks.append(_signature_check(request))
        if report is not None:
            checks.append(_mergelock_check(report, request.base_ref if base_used else None, base_note))
            checks.append(_weights_check(request.model_dir, report))
        checks.append(_probes_check())
        return {"verdict": verdict_of(checks), "checks": checks, "model": model_info,
                "base": {"ref": request.base_ref if base_used else None, "note": base_note}}

    @staticmethod
    def _inspect(inspect_model, request: AuditRequest) -> tuple[dict, bool, str | None]:
        """(inspect report, whether the base was used, why not)."""
        if request.base_dir is None:
            return inspect_model(request.model_dir), False, request.base_note
        try:
            return inspect_model(request.model_dir, base=request.base_dir), True, None
        except GuardError as exc:
            if exc.path and pathlib.Path(exc.path).is_relative_to(request.base_dir):
                # The base is unusable (another architecture, malformed): audit the model alone, and say so.
                return inspect_model(request.model_dir), False, f"base {request.base_ref} not used: {exc.one_line()}"
            raise


def _artifacts_check(report: dict) -> dict:
    refused = [f for f in report["findings"] if f["severity"] == "refuse"]
    warned = [f for f in report["findings"] if f["severity"] == "warn" and f["rule"] != report["mergelock"].get("rule")]
    details = {"findings": report["findings"], "files": [{"path": f["path"], "kind": f["kind"], "size": f["size"]}
                                                         for f in report["files"]]}
    if refused:
        first = refused[0]
        return check("artifacts", "Artifact checks", "fail",
                     f"{len(refused)} refused finding(s); first: {first['path']} [{first['rule']}] {first['message']}",
                     details=details)
    status = "warn" if warned else "pass"
    return check("artifacts", "Artifact checks", status,
                 f"{len(report['files'])} files read strictly ({report['tensor_count']} tensors, "
                 f"{report['parameter_count']:,} parameters); {len(warned)} warning(s), nothing refused",
                 details=details)


def _signature_check(request: AuditRequest) -> dict:
    title = "Signature bound to this repo"
    trust = request.trust
    sig = request.model_dir / SIGNATURE_NAME
    policy = {"match": trust.match, "require_signature": trust.require_signature, "bind": trust.bind,
              "signers": [s.describe() for s in trust.signers]}
    missing = "fail" if trust.require_signature else "warn"
    if not sig.is_file():
        return check("signature", title, missing, f"no {SIGNATURE_NAME}: the revision is unsigned"
                     + ("" if trust.require_signature else " (the trust policy does not require a signature here)"),
                     details={"policy": policy})
    if not trust.signers:
        return check("signature", title, missing, f"{SIGNATURE_NAME} present, but the trust policy names no signer "
                     f"for {request.repo} (entry {trust.match!r}): nobody it could be checked against",
                     details={"policy": policy})
    from guard.signing import verify_model

    failures = []
    for signer in trust.signers:
        try:
            result = verify_model(request.model_dir, signature=sig, verifier=signer.verifier())
        except GuardError as exc:
            failures.append(f"{signer.describe()}: {exc.one_line()}")
            continue
        details = {"policy": policy, "verification": result.to_json()}
        name = _signed_name(sig)
        details["signed_name"] = name
        allowed = {request.repo, request.repo.split("/", 1)[1]}
        if trust.bind == "name" and name not in allowed:
            return check("signature", title, "fail",
                         f"signed by {result.signer}, but the signature names model {name!r}, not {request.repo!r}: "
                         "a signature made for another repo", details=details)
        return check("signature", title, "pass", f"signed by {result.signer} (trusted for {trust.match!r}); "
                     f"{len(result.files)} files, {result.total_bytes:,} bytes match", details=details)
    return check("signature", title, "fail", f"not signed by a signer trusted for {request.repo}: "
                 + " | ".join(failures), details={"policy": policy, "failures": failures})


def _signed_name(sig: pathlib.Path) -> str:
    """The model name in the (already verified) statement."""
    from guard.signing.bundle import read_bundle
    from guard.signing.statement import parse_statement

    return parse_statement(read_bundle(sig).envelope.payload).model_name


def _mergelock_check(report: dict, base_ref: str | None, note: str | None) -> dict:
    lock = report["mergelock"]
    title = "MergeLock detection" + (f" against {base_ref}" if base_ref else " (base-free)")
    if not lock.get("checked"):
        return check("mergelock", title, "skip", lock.get("reason", "not checked"), details={"base_note": note})
    measurements = lock.get("measurements", {})
    plots = []
    rows = measurements.get("per_layer") or []
    if rows:
        plots.append({"title": "Relative distance from the base, per layer", "labels": [r["layer"] for r in rows],
                      "series": {k: [r.get(k) for r in rows] for k in ("attention", "mlp")},
                      "threshold": measurements.get("thresholds", {}).get("attention_far")})
    status = "warn" if lock.get("flagged") else "pass"  # a locked model is a publisher's choice, not an attack
    message = lock["message"] + (f" ({note})" if note else "")
    return check("mergelock", title, status, message, details={"measurements": _scalars(measurements),
                                                               "base_note": note}, plots=plots)


def _weights_check(model_dir: pathlib.Path, report: dict) -> dict:
    """Per-layer RMS of the floating-point weights, streamed one tensor at a time."""
    if report["refused"] or not report["tensor_count"]:
        return check("weights", "Weights per layer", "skip", "no readable tensors")
    from guard.artifacts import open_model_dir

    model = open_model_dir(model_dir)
    sums: dict[str, list[float]] = {}
    for name, tensor in model.iter_tensors():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        m = _LAYER.match(name)
        layer = m.group(1) if m else "other"
        acc = sums.setdefault(layer, [0.0, 0.0])
        acc[0] += float(tensor.double().pow(2).sum())
        acc[1] += tensor.numel()
    layers = sorted((k for k in sums if k != "other"), key=lambda k: (k.rsplit(".", 1)[0], int(k.rsplit(".", 1)[1])))
    rms = [(acc[0] / acc[1]) ** 0.5 for acc in (sums[k] for k in layers)]
    if not rms:
        return check("weights", "Weights per layer", "skip", "no numbered layers found")
    median = statistics.median(rms)
    spread = max(rms) / median if median else float("inf")
    return check("weights", "Weights per layer", "pass",
                 f"{len(layers)} layers; RMS median {median:.4g}, max/median {spread:.3g} (context, not a verdict)",
                 details={"rms_median": median, "max_over_median": spread},
                 plots=[{"title": "Weight RMS per layer", "labels": layers, "series": {"rms": rms}, "threshold": None}])


def _probes_check() -> dict:
    if importlib.util.find_spec("guard.probes") is None:
        return check("probes", "Backdoor and safety probes", "skip", "the probe stage is not part of this build")
    return check("probes", "Backdoor and safety probes", "skip",
                 "the probe stage exists but the service does not call it yet")


def _scalars(measurements: dict) -> dict:
    return {k: v for k, v in measurements.items() if not isinstance(v, (list, dict))}


def summary_markdown(result: dict, *, repo: str, ref: str, sha: str) -> str:
    """The discussion comment: verdict, then one row per check."""
    verdict = result.get("verdict", "error").upper()
    lines = [f"### guard audit: **{verdict}**", "",
             f"`{repo}` at `{ref}` @ `{sha}`", "",
             "| check | result | details |", "|---|---|---|"]
    for c in result.get("checks", []):
        message = c["message"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c['title']} | {c['status'].upper()} | {message[:500]} |")
    if result.get("error"):
        lines += ["", f"Audit error: {result['error']}"]
    lines += ["", "_guard audits every upload with the checks a consumer runs before merging. A failed check "
                  "names the file, the number and the threshold._"]
    return "\n".join(lines)
