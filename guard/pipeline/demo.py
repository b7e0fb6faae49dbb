"""The demo job: publish a protected, signed expert; consume it; show what MergeLock does to a merge.

Everything runs on tiny generated models (nothing is downloaded). Each step is a real call into the
stages, and every number reported is measured in this run.
"""

from __future__ import annotations

import dataclasses
import pathlib
import secrets
import shutil
from collections.abc import Callable
from typing import Any

from guard.errors import InputError, VerificationError

FAMILY = "llama"
# Synthetic fine-tunes: task vectors of this size relative to each weight (real fine-tunes are
# 2-3 orders of magnitude below the base; see docs/threat-model.md).
TASK_VECTOR_SCALE = 0.02


@dataclasses.dataclass
class DemoStep:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_demo(workdir: pathlib.Path, *, on_step: Callable[[DemoStep], None] = lambda step: None) -> list[DemoStep]:
    """Run every step in `workdir` (created; must not exist or be empty). Raises if a step misbehaves."""
    import torch

    workdir = pathlib.Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise InputError("demo work directory is not empty", path=workdir, rule="demo-workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    steps: list[DemoStep] = []

    def record(step: DemoStep) -> None:
        steps.append(step)
        on_step(step)

    base_dir, expert_dirs = _make_models(workdir)
    record(DemoStep("build", True, f"tiny {FAMILY} base + 2 synthetic fine-tunes in {workdir}",
                    {"base": str(base_dir), "experts": [str(d) for d in expert_dirs]}))

    from guard.pipeline.inspect import inspect_model

    report = inspect_model(expert_dirs[0])
    record(DemoStep("inspect", not report["refused"],
                    f"{expert_dirs[0].name}: {report['architecture']}, {report['parameter_count']:,} parameters, "
                    f"{len(report['findings'])} findings", {"report": report}))

    private_key, public_key, passphrase = _keygen(workdir)
    record(DemoStep("keygen", True, f"EC P-256 signing key {private_key.name} (encrypted), {public_key.name}"))

    from guard.lock.keys import generate_lock_key, write_lock_key
    from guard.lock.protect import protect_model
    from guard.signing import load_signer, load_verifier, verify_model

    lock_key = generate_lock_key()
    write_lock_key(lock_key, workdir / "expert-a.lockkey")
    protected_dir = workdir / "expert-a-protected"
    signer = load_signer(key=private_key, key_passphrase=passphrase)
    result = protect_model(expert_dirs[0], protected_dir, key=lock_key, signer=signer)
    record(DemoStep("protect", True,
                    f"MergeLock + signature -> {protected_dir.name}; self-check max relative logit error "
                    f"{result.selfcheck.max_relative_error:.2e} (bound {result.selfcheck.bound:g})",
                    {"metadata": result.metadata, "signature": str(result.signature)}))

    verified = verify_model(protected_dir, signature=result.signature, verifier=load_verifier(public_key=public_key))
    record(DemoStep("verify", True, f"signature OK: {len(verified.files)} files, root digest "
                    f"sha256:{verified.root_digest[:16]}...", {"result": verified.to_json()}))

    tampered = workdir / "expert-a-tampered"
    shutil.copytree(protected_dir, tampered)
    _flip_one_byte(next(tampered.glob("*.safetensors")))
    try:
        verify_model(tampered, signature=tampered / "model.sig", verifier=load_verifier(public_key=public_key))
        raise AssertionError("a tampered model verified")
    except VerificationError as exc:
        record(DemoStep("tamper", True, f"tampered copy refused: {exc.one_line()}"))

    from guard.pipeline.inspect import inspect_model

    lock = inspect_model(protected_dir, base=base_dir)["mergelock"]
    clean_lock = inspect_model(expert_dirs[1], base=base_dir)["mergelock"]
    record(DemoStep("detect", lock["flagged"] and not clean_lock["flagged"],
                    f"inspect --base flags the protected expert: {lock['flagged']} ({lock['message']}); "
                    f"clean expert flagged: {clean_lock['flagged']}",
                    {"protected": lock["measurements"], "clean": clean_lock["measurements"]}))

    damage = _merge_damage(base_dir, expert_dirs, protected_dir)
    record(DemoStep("merge", damage["protected_vs_clean"] > 10 * damage["clean_vs_base"],
                    f"task-arithmetic merge of base + both experts: clean merge moves logits "
                    f"{damage['clean_vs_base']:.3f} (relative) from the base; with the protected expert the merge "
                    f"lands {damage['protected_vs_clean']:.3f} away from the clean merge", damage))

    from guard.lock.protect import unlock_model

    unlocked = workdir / "expert-a-unlocked"
    unlock_model(protected_dir, unlocked, key=lock_key)
    restored = _max_weight_difference(expert_dirs[0], unlocked)
    record(DemoStep("unlock", restored < 1e-4, f"unlocked with the lock key: max |weight difference| "
                    f"{restored:.2e} from the original expert", {"max_abs_difference": restored}))

    wrong = generate_lock_key()
    try:
        unlock_model(protected_dir, workdir / "expert-a-wrong-key", key=wrong)
        raise AssertionError("unlock with a wrong key succeeded")
    except VerificationError as exc:
        record(DemoStep("wrong-key", True, f"unlock with another key refused: {exc.one_line()}"))

    _consumer_steps(workdir, base_dir, expert_dirs, protected_dir, tampered, lock_key, signer, public_key, record)
    return steps


def _consumer_steps(workdir, base_dir, expert_dirs, protected_dir, tampered, lock_key, signer, public_key,
                    record) -> None:
    """The consumer's side: `guard safe-merge` merges what the strict policy lets through, signed, with provenance."""
    import yaml

    from guard.lock.keys import write_lock_key
    from guard.pipeline.provenance import verify_provenance
    from guard.pipeline.safe_merge import safe_merge
    from guard.signing import load_verifier, sign_model

    for d in (base_dir, *expert_dirs):
        sign_model(d, signer=signer)
    write_lock_key(lock_key, workdir / "expert-a-protected.lockkey")

    def config(name: str, experts, **guard_section) -> pathlib.Path:
        raw = {"merge_method": "ties", "base_model": str(base_dir), "dtype": "float32",
               "models": [{"model": str(e), "parameters": {"weight": 0.5, "density": 0.5}} for e in experts]}
        if guard_section:
            raw["guard"] = guard_section
        path = workdir / name
        path.write_text(yaml.safe_dump(raw))
        return path

    def gate(name: str, experts, **guard_section):
        return safe_merge(config(f"{name}.yml", experts, **guard_section), workdir / name,
                          verifier_options={"public_key": public_key}, signer=signer)

    merged = gate("merged", expert_dirs)
    passed = sum(c.verdict == "pass" for c in merged.checks)
    record(DemoStep("safe-merge", merged.verdict == "merged",
                    f"strict policy: {passed} of {len(merged.checks)} checks passed for base + 2 signed experts; "
                    f"ties merge -> merged/ with guard_provenance.json and model.sig",
                    {"record": merged.to_json()}))
    report = verify_provenance(workdir / "merged", verifier=load_verifier(public_key=public_key))
    record(DemoStep("provenance", all(i["reverified"] for i in report["inputs"]),
                    f"verify --provenance: {report['files']} files signed by {report['signer']}; "
                    f"{len(report['inputs'])} inputs re-verified against their recorded signers", report))
    for name, experts, expected in (("refused-tampered", [tampered, expert_dirs[1]], "signature"),
                                    ("refused-locked", [protected_dir, expert_dirs[1]], "mergelock")):
        refused = gate(name, experts)
        first = refused.refusals()[0] if refused.refusals() else None
        record(DemoStep(name, refused.verdict == "refused" and first is not None and first.check == expected
                        and not (workdir / name).exists(),
                        f"gate refused, nothing written: {first.one_line() if first else 'no refusal'}"))
    unlocked = gate("merged-unlocked", [protected_dir, expert_dirs[1]],
                    lock_keys={str(protected_dir): str(workdir / "expert-a-protected.lockkey")})
    record(DemoStep("gate-unlock", unlocked.verdict == "merged",
                    "with the lock key in the config the gate unlocks the protected expert and merges it"))


def _make_models(workdir: pathlib.Path) -> tuple[pathlib.Path, list[pathlib.Path]]:
    import torch

    from guard.testing import factory

    base = factory.build_model(FAMILY, seed=0)
    base_dir = factory.save_model(base, workdir / "base")
    experts = []
    for i, name in enumerate(("expert-a", "expert-b")):
        expert = factory.build_model(FAMILY, seed=0)
        gen = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for param in expert.parameters():
                noise = torch.randn(param.shape, generator=gen)
                param.add_(TASK_VECTOR_SCALE * param.abs().mean() * noise)
        experts.append(factory.save_model(expert, workdir / name))
    return base_dir, experts


def _keygen(workdir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, bytes]:
    from guard.signing import keys
    from guard.artifacts.atomic import write_atomically

    passphrase = secrets.token_hex(16).encode()  # lives in memory only, for this demo
    key = keys.generate_private_key("p256")
    private_key, public_key = workdir / "publisher.key", workdir / "publisher.pub"
    write_atomically(private_key, keys.private_key_pem(key, passphrase).decode("ascii"), mode=0o600)
    write_atomically(public_key, keys.public_key_pem(key.public_key()).decode("ascii"))
    return private_key, public_key, passphrase


def _flip_one_byte(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _state(model_dir: pathlib.Path) -> dict:
    from guard.artifacts import open_model_dir

    return dict(open_model_dir(model_dir).iter_tensors())


def _logits(state: dict):
    import torch

    from guard.testing import factory

    model = factory.build_model(FAMILY)
    model.load_state_dict(state)  # strict: a name mismatch must fail, not merge nothing
    with torch.no_grad():
        return model(**factory.sample_inputs(model, batch=4, seq=16)).logits


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _merge_damage(base_dir: pathlib.Path, expert_dirs: list[pathlib.Path], protected_dir: pathlib.Path) -> dict:
    from guard.merge import merge_state_dicts

    base = _state(base_dir)
    experts = [_state(d) for d in expert_dirs]
    clean = merge_state_dicts("task_arithmetic", base, experts, scale=0.5)
    attacked = merge_state_dicts("task_arithmetic", base, [_state(protected_dir), experts[1]], scale=0.5)
    base_logits, clean_logits = _logits(base), _logits(clean)
    return {"clean_vs_base": _relative(clean_logits, base_logits),
            "protected_vs_clean": _relative(_logits(attacked), clean_logits)}


def _max_weight_difference(a: pathlib.Path, b: pathlib.Path) -> float:
    sa, sb = _state(a), _state(b)
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)
