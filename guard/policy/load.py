"""Loading a policy file: by path or by the name of a shipped policy (strict, research)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

import pydantic

from guard.errors import InputError
from guard.policy.model import Policy

DEFAULT_POLICY = "strict"
MAX_POLICY_BYTES = 1 << 20


def policies_dir() -> pathlib.Path:
    """policies/ at the repository root (next to the guard package in a checkout)."""
    return pathlib.Path(__file__).resolve().parents[2] / "policies"


@dataclasses.dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: pathlib.Path
    sha256: str  # of the file's bytes: what provenance records

    def resolve(self, value: str) -> pathlib.Path:
        """A path named in the policy, relative to the policy file."""
        path = pathlib.Path(value)
        return path if path.is_absolute() else self.path.parent / path

    def to_json(self) -> dict:
        return {"name": self.policy.name, "path": str(self.path), "digest": {"sha256": self.sha256}}


def load_policy(ref: str | os.PathLike | None = None) -> LoadedPolicy:
    """`ref`: a policy file, or the name of a shipped policy; None is the default (strict)."""
    import yaml

    ref = DEFAULT_POLICY if ref is None else ref
    path = pathlib.Path(ref)
    if not path.suffix and os.sep not in str(ref):
        path = policies_dir() / f"{ref}.yaml"
        if not path.is_file():
            raise InputError(f"no shipped policy named {str(ref)!r} in {policies_dir()} (pass a policy file)",
                             rule="policy-not-found")
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise InputError(f"policy larger than {MAX_POLICY_BYTES} bytes", path=path, rule="policy")
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such policy file", path=path, rule="path-not-found") from None
    except OSError as exc:
        raise InputError(f"cannot read policy: {exc.strerror}", path=path, rule="path-unreadable") from None
    try:
        raw = yaml.safe_load(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"not valid YAML: {str(exc).splitlines()[0]}", path=path, rule="policy") from None
    if not isinstance(raw, dict):
        raise InputError("a policy must be a mapping", path=path, rule="policy")
    try:
        policy = Policy.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        raise InputError(f"{field}: {error['msg']}", path=path, rule="policy") from None
    return LoadedPolicy(policy=policy, path=path.resolve(), sha256=hashlib.sha256(raw_bytes).hexdigest())
