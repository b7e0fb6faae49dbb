"""The audit of one downloaded Hub revision: the checks a consumer runs, one record per check.

The checks are `guard safe-merge`'s per-input sequence, `guard.pipeline.checks.check_input` (one audit
sequence in the codebase), under a policy built from the repo's trust entry, plus the repo binding:

    artifacts   strict reading of every file (guard.artifacts, the policy's default severities): a refused
                finding fails, and stops the sequence (later checks say "skip")
    signature   OMS signature at model.sig against the signers the trust file binds to this repo (required
                or not as the entry says), then the signed model name bound to the repo name
                (guard.service.trust); everything after it reads the verified bytes
    mergelock   lock.detect against the base model named in the model card (or base-free); never fails
    weights     per-layer RMS of the (verified) weights (context for the plots, never a verdict)
    probes      the pipeline's probe stage (guard.pipeline.probe_stage) against the base alone, inside
                check_input after MergeLock detection: one row per probe with its score and threshold, the
                probes' per-layer plots; a flag warns (or fails, as the trust entry's `probes.action` says); a
                probe that errors or runs past `probes.max_seconds` fails the check, naming the probe; no
                usable base -> skip with the reason

`Auditor` is the narrow interface the worker calls; `StageAuditor` is the real one. The verdict is `fail`
when any check fails, else `pass`; every check says why, with its numbers.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import pathlib
import re
import signal
import statistics
import threading
import time
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
    probe_seconds: float | None = None  # the probe stage's budget here (trust entry's, capped by the sandbox)
    peers: tuple[tuple[str, pathlib.Path | None, str | None], ...] = ()  # probe peers: (ref, dir, why no dir)


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
        from guard.pipeline.checks import check_input

        checks: list[dict] = []
        with contextlib.ExitStack() as stack:
            base, base_note = _checked_base(stack, request)
            trusted, unusable = _trusted_signers(request.trust)
            probes = AuditProbes(request, stack)
            stages = [(probes, {})] if request.trust.probes.action != "off" else []
            try:
                subject = stack.enter_context(check_input(request.model_dir, policy=audit_policy(request.trust),
                                                          trusted=trusted, label=request.repo, base=base,
                                                          stages=stages))
            except GuardError as exc:  # not a model directory at all, or unreadable
                checks += [check("artifacts", "Artifact checks", "fail", exc.one_line(), details={"rule": exc.rule}),
                           check("probes", PROBES_TITLE, "skip", "not run: the upload could not be read")]
                return {"verdict": verdict_of(checks), "checks": checks, "model": {},
                        "base": {"ref": None, "note": base_note}}
            from guard.artifacts.report import inspect_report

            report = inspect_report(subject.model)
            base_used = base is not None and subject.detection is not None
            if base is not None and not base_used:
                base_note = f"base {request.base_ref} not used: " + _step(subject, "mergelock")[0].message
            checks.append(_artifacts_check(subject, report))
            checks.append(_signature_check(subject, request, unusable))
            checks.append(_mergelock_check(subject, request.base_ref if base_used else None, base_note))
            checks.append(_weights_check(subject))
            checks.append(probes.result(subject, base_note))
        model_info = {k: report[k] for k in ("architecture", "model_type", "parameter_count", "tensor_count",
                                             "tensor_bytes", "total_bytes")}
        model_info["files"] = len(report["files"])
        return {"verdict": verdict_of(checks), "checks": checks, "model": model_info,
                "base": {"ref": request.base_ref if base_used else None, "note": base_note}}


def audit_policy(trust: RepoTrust, *, probe_settings: dict | None = None):
    """The safe-merge policy the audit applies to a repo with this trust entry: strict reading with the reader's
    default severities, a signature required where the entry requires one, MergeLock reported (warn), the
    entry's probe settings (or `probe_settings`)."""
    from guard.policy.load import LoadedPolicy
    from guard.policy.model import MergeLockPolicy, Policy, SignaturePolicy

    policy = Policy(name="hub-audit", description=f"guard serve, trust entry {trust.match!r}",
                    required_checks=["artifacts", "signature"] if trust.require_signature else ["artifacts"],
                    signatures=SignaturePolicy(required=trust.require_signature),
                    mergelock=MergeLockPolicy(action="warn"),
                    probes=dict(trust.probes.settings if probe_settings is None else probe_settings))
    raw = policy.model_dump_json().encode()
    # No policy file: the signers come from the trust file (already absolute), so nothing is resolved against path.
    return LoadedPolicy(policy=policy, path=pathlib.Path("hub-audit.yaml"), sha256=hashlib.sha256(raw).hexdigest())


def _trusted_signers(trust: RepoTrust) -> tuple[list, list[str]]:
    """The repo's signers as guard.pipeline.trust.TrustedVerifier, and why any could not be loaded."""
    trusted, unusable = [], []
    for signer in trust.signers:
        try:
            trusted.append(signer.trusted())
        except GuardError as exc:
            unusable.append(f"{signer.describe()}: {exc.one_line()}")
    return trusted, unusable


def _checked_base(stack: contextlib.ExitStack, request: AuditRequest):
    """(the base through check_input as a base, or None; why none). The base is another repo: not signed-checked
    here, only read strictly; one that cannot be read is left out, and the report says so."""
    if request.base_dir is None:
        return None, request.base_note
    checked, why = _checked_reference(stack, request.base_dir, request.base_ref)
    return checked, None if why is None else f"base {why}"


def _checked_reference(stack: contextlib.ExitStack, path: pathlib.Path, ref: str | None):
    """Another repo the audit compares with (the base, a probe peer) through check_input as a base: read
    strictly, not signature-checked. (CheckedInput or None, why none)."""
    from guard.pipeline.checks import check_input

    try:
        checked = stack.enter_context(check_input(path, policy=audit_policy(RepoTrust()), trusted=(), label=ref,
                                                  role="base"))
    except GuardError as exc:
        return None, f"{ref} not used: {exc.one_line()}"
    refused = [c for c in checked.checks if c.verdict == "refuse"]
    if refused:
        return None, f"{ref} not used: {refused[0].one_line()}"
    return checked, None


_STATUS = {"refuse": "fail", "warn": "warn", "pass": "pass", "skip": "skip"}


def _step(subject, name: str) -> list:
    return [c for c in subject.checks if c.check == name]


def _status(checks: list) -> str:
    verdicts = {c.verdict for c in checks}
    return next((_STATUS[v] for v in ("refuse", "warn", "pass") if v in verdicts), "skip")


def _artifacts_check(subject, report: dict) -> dict:
    step = _step(subject, "artifacts")
    refused = [c for c in step if c.verdict == "refuse"]
    warned = [c for c in step if c.verdict == "warn"]
    details = {"findings": report["findings"], "files": [{"path": f["path"], "kind": f["kind"], "size": f["size"]}
                                                         for f in report["files"]]}
    if refused:
        first = refused[0]
        return check("artifacts", "Artifact checks", "fail",
                     f"{len(refused)} refused finding(s); first: {first.file or '.'} [{first.rule}] {first.message}",
                     details=details)
    return check("artifacts", "Artifact checks", _status(step),
                 f"{len(report['files'])} files read strictly ({report['tensor_count']} tensors, "
                 f"{report['parameter_count']:,} parameters); {len(warned)} warning(s), nothing refused",
                 details=details)


def _signature_check(subject, request: AuditRequest, unusable: list[str]) -> dict:
    title = "Signature bound to this repo"
    trust = request.trust
    details: dict[str, Any] = {"policy": {"match": trust.match, "require_signature": trust.require_signature,
                                          "bind": trust.bind, "signers": [s.describe() for s in trust.signers]}}
    if unusable:
        details["unusable_signers"] = unusable
    step = _step(subject, "signature")
    found, status = step[0], _status(step)
    optional = "" if trust.require_signature else " (the trust policy does not require a signature here)"
    if found.rule == "signature-missing":
        return check("signature", title, status, f"no {SIGNATURE_NAME}: the revision is unsigned{optional}",
                     details=details)
    if found.rule == "signature-no-trusted-signers":
        why = "; its signers could not be loaded: " + " | ".join(unusable) if unusable else ""
        return check("signature", title, status, f"{SIGNATURE_NAME} present, but the trust policy names no usable "
                     f"signer for {request.repo} (entry {trust.match!r}): nobody it could be checked against{why}"
                     f"{optional}", details=details)
    result = subject.verification
    if result is None:  # untrusted, a digest mismatch, or not run (artifacts refused)
        message = found.message
        if found.rule == "signature-untrusted":
            message = f"not signed by a signer trusted for {request.repo}: {found.message}{optional}"
        return check("signature", title, status, message, details={**details, "rule": found.rule})
    details.update(verification=result.to_json(), signed_name=result.model_name)
    allowed = {request.repo, request.repo.split("/", 1)[1]}
    if trust.bind == "name" and result.model_name not in allowed:
        return check("signature", title, "fail",
                     f"signed by {result.signer}, but the signature names model {result.model_name!r}, not "
                     f"{request.repo!r}: a signature made for another repo", details=details)
    return check("signature", title, "pass", f"signed by {result.signer} (trusted for {trust.match!r}); "
                 f"{len(result.files)} files, {result.total_bytes:,} bytes match", details=details)


def _mergelock_check(subject, base_ref: str | None, note: str | None) -> dict:
    title = "MergeLock detection" + (f" against {base_ref}" if base_ref else " (base-free)")
    step = _step(subject, "mergelock")
    detection = subject.detection
    if detection is None:  # skipped, or could not run
        return check("mergelock", title, _status(step), step[0].message if step else "not checked",
                     details={"base_note": note, "rule": step[0].rule if step else None})
    measurements = detection.measurements
    plots = []
    rows = measurements.get("per_layer") or []
    if rows:
        plots.append({"title": "Relative distance from the base, per layer", "labels": [r["layer"] for r in rows],
                      "series": {k: [r.get(k) for r in rows] for k in ("attention", "mlp")},
                      "threshold": measurements.get("thresholds", {}).get("attention_far")})
    # The policy's action is warn: a locked model is a publisher's choice, not an attack.
    message = detection.message + (f" ({note})" if note else "")
    return check("mergelock", title, _status(step), message, details={"measurements": _scalars(measurements),
                                                                        "base_note": note}, plots=plots)


def _weights_check(subject) -> dict:
    """Per-layer RMS of the floating-point weights that passed the checks (the verified bytes when signed),
    streamed one tensor at a time."""
    model = subject.model
    if _refused_before_probes(subject):  # only bytes that passed (and were verified, where signed) are read
        return check("weights", "Weights per layer", "skip", "not read: an earlier check refused this revision")
    if not model.tensors:
        return check("weights", "Weights per layer", "skip", "no readable tensors")
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


PROBES_TITLE = "Backdoor and safety probes"


def _refused_before_probes(subject) -> bool:
    return any(c.verdict == "refuse" and not c.check.startswith("probe") for c in subject.checks)


class ProbeBudgetExceeded(BaseException):  # not an Exception: no probe's own `except Exception` swallows it
    pass


@contextlib.contextmanager
def _time_budget(seconds: float | None):
    """Raise ProbeBudgetExceeded in this (main) thread after `seconds` of wall time. Python delivers the alarm
    between bytecodes, so a long native call finishes first; the sandbox's own limits stay the hard bound."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise ProbeBudgetExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class AuditProbes:
    """The probe stage as the audit runs it: a check_input stage (so it sees the verified bytes, after
    MergeLock detection, and is skipped when an earlier check refused) that keeps the ScanReport for the
    audit's record and turns an error or an exhausted budget into a failed check instead of a dead audit."""

    name = "probes"

    def __init__(self, request: AuditRequest, stack: contextlib.ExitStack) -> None:
        self.request, self._stack = request, stack
        self.report = None
        self.error: str | None = None
        self.unusable_base: str | None = None
        self.ran = False
        self.peers: list[str] = []  # the peers the probes compared with
        self.notes: list[str] = []  # what the probes did not use, and why

    def check_input(self, subject, context) -> list:
        from guard.errors import InputError
        from guard.pipeline.probe_stage import probe_checks, scan_input

        if context.base is None:
            return []  # result() says why: no base named, or it could not be used
        self.ran = True
        trust = self.request.trust
        peers = self._usable_peers(subject)
        settings = dict(trust.probes.settings)
        if not peers and "embedding" not in settings:
            # Against the base alone the embedding score is a row's movement over a quarter of the median row's:
            # every clean expert of the LM zoo moves its task tokens' rows that far (docs/service.md).
            settings["embedding"] = {"enabled": False}
            self.notes.append("embedding off: it needs peers in an audit (no `probes.peers` usable here)")
        section = {"calibration": trust.probes.calibration} if trust.probes.calibration else {}
        context = dataclasses.replace(context, section=section, policy=audit_policy(trust, probe_settings=settings))
        current: list[str] = []
        started = time.monotonic()
        try:
            with _time_budget(self.request.probe_seconds):
                self.report = scan_input(subject, base=context.base, peers=peers, context=context, device="cpu",
                                         progress=current.append)
        except InputError as exc:
            if exc.rule == "scan-architecture-mismatch":
                self.unusable_base = exc.message
                return []
            self.error = f"probe {current[-1]!r}: {exc.one_line()}" if current else exc.one_line()
        except ProbeBudgetExceeded:
            self.error = (f"probe {current[-1]!r} still running when the probe budget of "
                          f"{self.request.probe_seconds:g} s ran out (after {time.monotonic() - started:.0f} s)")
        except Exception as exc:  # noqa: BLE001 - a probe's own failure fails this check, not the audit
            where = f"probe {current[-1]!r}" if current else "the probe stage"
            self.error = f"{where} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if self.report is None:
            return []
        checks = probe_checks(self.report, subject)
        warn = self.request.trust.probes.action == "warn"
        for c in checks:  # a flag is the trust entry's action, not a refusal of the later checks
            if c.verdict == "refuse" and (warn or c.rule == "probes-not-run"):
                c.verdict = "warn"
        return checks

    def _usable_peers(self, subject) -> list:
        peers = []
        for ref, path, why in self.request.peers:
            checked, why = (None, why) if path is None else _checked_reference(self._stack, path, ref)
            if checked is not None and checked.model.model_type != subject.model.model_type:
                checked, why = None, (f"{ref} not used: a {checked.model.model_type} model, the upload a "
                                      f"{subject.model.model_type} one")
            if checked is None:
                self.notes.append(f"peer {why}")
            else:
                peers.append(checked)
                self.peers.append(ref)
        return peers

    def result(self, subject, base_note: str | None) -> dict:
        """The audit's probes check (see the module docstring)."""
        config = self.request.trust.probes
        if config.action == "off":
            return check("probes", PROBES_TITLE, "skip",
                         f"off for this repo (trust entry {self.request.trust.match!r})")
        if _refused_before_probes(subject):
            return check("probes", PROBES_TITLE, "skip", "not run: an earlier check refused this revision")
        if not self.ran or self.unusable_base:
            why = self.unusable_base or base_note or "no base model"
            return check("probes", PROBES_TITLE, "skip", f"not run: every probe compares with the base model, and "
                         f"there is none to use ({why})", details={"base_note": why})
        details: dict[str, Any] = {"action": config.action, "base": self.request.base_ref, "peers": self.peers,
                                   "notes": self.notes, "budget_s": self.request.probe_seconds}
        if self.error is not None:
            return check("probes", PROBES_TITLE, "fail", f"{self.error}; the probes cannot vouch for this revision",
                         details={**details, "error": self.error})
        report = self.report
        rows = [{"probe": r.probe, "title": r.title, "status": r.status, "score": r.score, "threshold": r.threshold,
                 "flagged": r.flagged, "message": r.message, "seconds": r.seconds, "truncated": r.truncated,
                 "evidence": [e.model_dump(mode="json") for e in r.evidence[:5]]} for r in report.results]
        details.update(probes=rows, seconds=report.seconds, ran=report.decision.ran, skipped=report.decision.skipped)
        plots = [_bounded_plot(f"{r.probe}: {s.title}", s.labels,
                               {"this revision": s.values, **({s.reference_label: s.reference} if s.reference else {})},
                               s.threshold) for r in report.results for s in r.series]
        skipped = f"; skipped: {', '.join(report.decision.skipped)}" if report.decision.skipped else ""
        skipped += "".join(f"; {note}" for note in self.notes)
        base = self.request.base_ref
        against = f"{base} and {len(self.peers)} peers" if self.peers else f"{base} alone"
        if not report.decision.ran:
            return check("probes", PROBES_TITLE, "skip", f"no probe could run{skipped} (see details)",
                         details=details, plots=plots)
        flagged = [r for r in report.results if r.status == "ran" and r.flagged]
        if flagged:
            status = "fail" if config.action == "fail" else "warn"
            reasons = "; ".join(f"{r.probe}: {r.message} (score {r.score:.3g} >= threshold {r.threshold:.3g})"
                                for r in flagged)
            return check("probes", PROBES_TITLE, status, f"{len(flagged)} of {len(report.decision.ran)} probes "
                         f"flagged against {against}: {reasons}{skipped}", details=details, plots=plots)
        top = max((r for r in report.results if r.ratio is not None), key=lambda r: r.ratio, default=None)
        closest = f"; closest: {top.probe} {top.score:.3g} vs threshold {top.threshold:.3g}" if top else ""
        return check("probes", PROBES_TITLE, "pass", f"{len(report.decision.ran)} probes ran against {against}, "
                     f"none flagged{closest}{skipped}", details=details, plots=plots)


PLOT_POINTS = 256


def _bounded_plot(title: str, labels: list[str], series: dict[str, list], threshold) -> dict:
    """A plot of at most PLOT_POINTS points: longer series (an embedding's score per vocabulary row) are cut
    into that many consecutive groups, each shown by its largest value, so a spike stays visible."""
    if len(labels) <= PLOT_POINTS:
        return {"title": title, "labels": labels, "series": series, "threshold": threshold}
    size = -(-len(labels) // PLOT_POINTS)
    groups = [range(i, min(i + size, len(labels))) for i in range(0, len(labels), size)]

    def peak(values: list, group: range):
        finite = [values[i] for i in group if isinstance(values[i], (int, float)) and values[i] == values[i]]
        return max(finite) if finite else None

    return {"title": f"{title} (max per {size} consecutive)",
            "labels": [f"{labels[g[0]]}-{labels[g[-1]]}" for g in groups],
            "series": {k: [peak(v, g) for g in groups] for k, v in series.items()}, "threshold": threshold}


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
