"""One audit job (download by sha + audit) in a child process, so a hostile upload costs bounded time and
memory and never takes a worker down.

Parent (`run_sandboxed`): starts `python -m guard.service.sandbox` in its own session with a clean
environment, sends the job spec on stdin (the Hub token travels there, never in argv or the
environment), waits at most `wall_s`, then kills the whole process group. A finished child reports its
own peak RSS and CPU time with its result.

Child (`main`): sets its rlimits first (address space, CPU, file size, open files, no core dumps),
before it reads a byte of the spec or imports anything heavy; then downloads into its own work
directory, resolves the base model from the model card, audits, and prints one JSON line.

Outcomes: `result` (an audit report: pass or fail), `retry` (the Hub was unavailable: back off and
try again), `limit` (killed by a limit: the audit fails closed, naming the limit), `crash` (anything
else: retried, then recorded as an error).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

EXIT_RETRY = 75  # EX_TEMPFAIL
EXIT_MEMORY = 99
_SIGNAL_LIMITS = {signal.SIGXCPU: "CPU-time limit", signal.SIGXFSZ: "file-size limit"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: str  # result | retry | limit | crash
    result: dict | None = None
    message: str = ""
    resources: dict = dataclasses.field(default_factory=dict)


# ---- parent side -------------------------------------------------------------------------------------------
def run_sandboxed(spec: dict[str, Any], *, limits: dict[str, Any], work_root: str | os.PathLike) -> Outcome:
    """Run one job spec in a limited child; never raises for anything the child does."""
    work_root = pathlib.Path(work_root)
    work_root.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(_mkdtemp(work_root))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(work),
           "TMPDIR": str(work), "HF_HOME": str(work / "hf-home"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
           "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per arena: keep RLIMIT_AS honest
           "OMP_NUM_THREADS": str(limits.get("threads", 1))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the child imports what the parent can
    for name in ("ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            env[name] = os.environ[name]
    started = time.monotonic()
    payload = json.dumps({**spec, "work_dir": str(work)}).encode()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "guard.service.sandbox", json.dumps(limits), str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=work, start_new_session=True)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        return Outcome("crash", message=f"cannot start the audit process: {exc}")
    timed_out = False
    try:
        out, err = proc.communicate(payload, timeout=float(limits["wall_s"]))
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        _kill_group(proc.pid)  # nothing the child started outlives it
        shutil.rmtree(work, ignore_errors=True)
    used = {"wall_s": round(time.monotonic() - started, 3)}
    return _decode(proc.returncode, out, err, timed_out=timed_out, limits=limits, used=used)


def _mkdtemp(root: pathlib.Path) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="audit-", dir=root)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _decode(code: int, out: bytes, err: bytes, *, timed_out: bool, limits: dict, used: dict) -> Outcome:
    tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
    if timed_out:
        return Outcome("limit", message=f"wall-clock limit: killed after {limits['wall_s']:g} s", resources=used)
    if code == EXIT_MEMORY:
        return Outcome("limit", message=f"memory limit: the audit needed more than {limits['memory_bytes']:,} bytes "
                                        "of address space", resources=used)
    if code < 0 and -code in _SIGNAL_LIMITS:
        return Outcome("limit", message=f"{_SIGNAL_LIMITS[-code]}: killed by {signal.Signals(-code).name}",
                       resources=used)
    if code == -signal.SIGKILL:  # the kernel's OOM killer, or the hard CPU limit
        return Outcome("limit", message="killed (SIGKILL): out of memory or past the CPU limit", resources=used)
    try:
        message = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else None
    except (ValueError, IndexError):
        message = None
    if code == 0 and isinstance(message, dict) and "result" in message:
        return Outcome("result", result=message["result"], resources={**used, **message.get("resources", {})})
    if code == EXIT_RETRY and isinstance(message, dict):
        return Outcome("retry", message=str(message.get("error", "Hub unavailable")), resources=used)
    return Outcome("crash", message=f"audit process exited {code}: {' | '.join(tail)[-1000:]}", resources=used)


# ---- child side --------------------------------------------------------------------------------------------
def _set_limits(limits: dict) -> None:
    def cap(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else
                                   (value + 5 if hard == resource.RLIM_INFINITY else hard)))

    cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    cap(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    cap(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    cap(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    cap(resource.RLIMIT_CORE, 0)


def run_job(spec: dict, *, sandbox_limits: dict | None = None) -> dict:
    """Download, resolve the base, audit: the child's whole job. Returns the audit result. `sandbox_limits`
    cap the probe stage's budget, so that the probes stop before the sandbox kills the audit."""
    from guard.hub import HubLimits, HubRef, HubSettings, download_revision
    from guard.service.trust import RepoTrust

    started = time.monotonic()
    settings = HubSettings.model_validate(spec["hub"])
    limits = HubLimits.model_validate(spec["download"])
    work = pathlib.Path(spec["work_dir"])
    ref = HubRef(repo_id=spec["repo"], sha=spec["sha"])
    from guard.errors import GuardError
    from guard.hub.transport import HubUnavailable
    from guard.service.audit import AuditRequest, check

    try:
        fetched = download_revision(ref, dest=work / "candidate", settings=settings, limits=limits)
    except HubUnavailable:
        raise
    except GuardError as exc:  # over a limit, unsafe names, digests that do not match, not found
        return {"verdict": "fail", "checks": [check("download", "Download from the Hub", "fail", exc.one_line(),
                                                    details={"rule": exc.rule})], "model": {}, "base": {}}
    download_s = time.monotonic() - started
    base_dir, base_ref, base_note = _fetch_base(fetched.model_dir, spec["repo"], work, settings, limits)
    trust = RepoTrust.model_validate(spec["trust"])
    peers = _fetch_peers(trust, spec["repo"], work, settings, limits) if base_dir is not None else ()
    request = AuditRequest(repo=spec["repo"], ref=spec["ref"], sha=spec["sha"], model_dir=fetched.model_dir,
                           trust=trust, base_dir=base_dir, base_ref=base_ref, base_note=base_note, peers=peers,
                           probe_seconds=probe_budget(trust.probes.max_seconds, limits=sandbox_limits,
                                                      started=started))
    auditor = _load_auditor(spec.get("audit", "guard.service.audit:StageAuditor"))
    audit_started = time.monotonic()
    result = auditor.audit(request)
    result["checks"].insert(0, check("download", "Download from the Hub", "pass",
                                     f"{len(fetched.files)} files, {fetched.total_bytes:,} bytes, digests match the "
                                     "Hub's listing", details={"files": len(fetched.files),
                                                               "bytes": fetched.total_bytes}))
    result["timing"] = {"download_s": round(download_s, 3), "audit_s": round(time.monotonic() - audit_started, 3)}
    return result


def probe_budget(seconds: float, *, limits: dict | None, started: float) -> float:
    """The probe stage's budget: the trust entry's, but never past what is left of the sandbox's wall clock or
    CPU time (less a reserve for the rest of the audit), so a large model fails the probes check with its
    numbers instead of getting the whole audit killed."""
    if not limits:
        return seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    left_wall = float(limits["wall_s"]) - (time.monotonic() - started)
    left_cpu = float(limits["cpu_s"]) - (usage.ru_utime + usage.ru_stime)
    left = min(left_wall - min(60.0, 0.1 * float(limits["wall_s"])), left_cpu - min(60.0, 0.1 * float(limits["cpu_s"])))
    return max(1.0, min(seconds, left))


def _fetch_base(model_dir: pathlib.Path, repo: str, work: pathlib.Path, settings, limits):
    """The base model the upload names (`named_base`), pinned to its current sha and fetched like the model."""
    from guard.errors import GuardError

    base, why = named_base(model_dir, repo=repo)
    if base is None:
        return None, None, why
    try:
        base_ref, base_dir = _fetch_pinned(base, work / "base", settings, limits)
    except GuardError as exc:
        return None, None, f"base model {base[:200]!r} ({why}) not fetched: {exc.one_line()}"
    return base_dir, base_ref, None


def _fetch_pinned(repo_id: str, dest: pathlib.Path, settings, limits) -> tuple[str, pathlib.Path]:
    """(hf:repo@sha, its directory): another repo the audit compares with, pinned to its current sha and
    downloaded like the upload (same limits). GuardError when it cannot be."""
    from guard.hub import download_revision, resolve_revision

    ref = resolve_revision(repo_id, settings=settings, limits=limits)
    return str(ref), download_revision(ref, dest=dest, settings=settings, limits=limits).model_dir


METADATA_LIMIT = 1 << 20  # a model card or config.json larger than this is not parsed for a base name


def named_base(model_dir: pathlib.Path, *, repo: str) -> tuple[str | None, str]:
    """(the Hub id of the base model the upload names, where it is named) or (None, why none).

    The model card's `base_model` first (the Hub's own field); failing that, config.json's `_name_or_path`,
    the id the fine-tune was loaded from, which transformers 4.x wrote into saved configs (5.x leaves it
    out, so many Hub models carry it and new ones do not). Either is the uploader's text: only a valid Hub
    id other than the upload's own repo is used."""
    from guard.errors import GuardError
    from guard.hub.refs import check_repo_id

    card_base, card_why = _card_base(model_dir / "README.md")
    if card_base is not None:
        return card_base, "named by the model card's base_model"
    config = model_dir / "config.json"
    if not config.is_file():
        return None, f"{card_why}, and there is no config.json"
    if config.stat().st_size > METADATA_LIMIT:
        return None, f"{card_why}, and config.json is over 1 MiB (not parsed)"
    from guard.artifacts.json_text import parse_json

    try:
        value, duplicates = parse_json(config.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None, f"{card_why}, and config.json is not JSON"
    if duplicates or not isinstance(value, dict):
        return None, f"{card_why}, and config.json is ambiguous (duplicate keys or not an object)"
    name = value.get("_name_or_path")
    try:
        name = check_repo_id(name)
    except GuardError:
        return None, f"{card_why}, and config.json's _name_or_path is not a Hub model id"
    if name == repo:
        return None, f"{card_why}, and config.json's _name_or_path is the upload's own repo"
    return name, "named by config.json's _name_or_path (the model card names none)"


def _card_base(readme: pathlib.Path) -> tuple[str | None, str]:
    if not readme.is_file():
        return None, "no model card (README.md), so no base_model named"
    if readme.stat().st_size > METADATA_LIMIT:
        return None, "model card over 1 MiB: not parsed, so no base_model named"
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(readme) or {}
    except Exception as exc:  # noqa: BLE001 - YAML errors of many types: the card is the uploader's text
        return None, f"model card metadata unreadable ({type(exc).__name__}), so no base_model named"
    base = meta.get("base_model")
    if isinstance(base, list) and base:
        base = base[0]
    if not isinstance(base, str) or not base:
        return None, "the model card names no base_model"
    return base, ""


def _fetch_peers(trust, repo: str, work: pathlib.Path, settings, limits) -> tuple:
    """The trust entry's probe peers (other fine-tunes of the same base), each pinned to its current sha and
    fetched like the model; the upload's own repo is never its own peer. (ref, dir or None, why not) each."""
    from guard.errors import GuardError

    peers = []
    for i, peer in enumerate(p for p in trust.probes.peers if p != repo):
        try:
            peers.append((*_fetch_pinned(peer, work / f"peer-{i}", settings, limits), None))
        except GuardError as exc:
            peers.append((peer, None, f"not fetched: {exc.one_line()}"))
    return tuple(peers)


def _load_auditor(path: str):
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)()


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the worker that started it dies (Linux), so no audit outlives its worker."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


def _peak_rss_bytes(usage) -> int:
    """This process's own peak RSS. Not ru_maxrss: Linux carries it across fork and exec, so it starts at the
    spawning process's resident size (a worker inside pytest reads pytest's peak); VmHWM belongs to the
    address space exec created."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return usage.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    limits = json.loads(argv[0])
    if len(argv) > 1:
        _die_with_parent(int(argv[1]))
    _set_limits(limits)
    try:
        spec = json.loads(sys.stdin.buffer.read())
        from guard.hub.transport import HubUnavailable

        try:
            result = run_job(spec, sandbox_limits=limits)
        except HubUnavailable as exc:
            sys.stdout.write(json.dumps({"error": exc.one_line()}) + "\n")
            return EXIT_RETRY
        usage = resource.getrusage(resource.RUSAGE_SELF)
        resources = {"max_rss_bytes": _peak_rss_bytes(usage), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
        sys.stdout.write(json.dumps({"result": result, "resources": resources}, default=str) + "\n")
        sys.stdout.flush()
        return 0
    except MemoryError:
        os._exit(EXIT_MEMORY)  # no cleanup: there may be no memory for it


if __name__ == "__main__":
    sys.exit(main())
