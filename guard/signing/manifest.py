"""The signed description of a model: resources, root digest, serialization record, and diffs.

The root digest is OMS's: sha256 over the raw per-resource digests concatenated in name order. It does
not bind names, so guard never trusts it alone: verification always compares name -> digest exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib

from guard.errors import VerificationError
from guard.signing.hashing import HashPlan

# OMS ignores these by default and records them in the predicate; guard does the same so that a
# Hugging Face checkout (.gitattributes) signs and verifies the same way with both tools.
DEFAULT_IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore")


@dataclasses.dataclass(frozen=True)
class Resource:
    name: str  # POSIX relative path, or `path:start:end` for shards
    algorithm: str
    digest: str  # lowercase hex


@dataclasses.dataclass(frozen=True)
class Serialization:
    """The predicate's `serialization` record: what a verifier needs to hash the same way again."""

    method: str
    hash_type: str
    allow_symlinks: bool = False
    shard_size: int | None = None
    ignore_paths: tuple[str, ...] = ()

    @property
    def plan(self) -> HashPlan:
        return HashPlan(method=self.method, hash_type=self.hash_type, shard_size=self.shard_size)

    def to_json(self) -> dict:
        record: dict = {"method": self.method, "hash_type": self.hash_type, "allow_symlinks": self.allow_symlinks}
        if self.method == "shards":
            record["shard_size"] = self.shard_size
        if self.ignore_paths:
            record["ignore_paths"] = list(self.ignore_paths)
        return record


@dataclasses.dataclass(frozen=True)
class Manifest:
    model_name: str
    resources: tuple[Resource, ...]  # sorted by name
    serialization: Serialization
    legacy: bool = False  # parsed from the v0.2 predicate (no serialization record, no root digest)

    def root_digest(self) -> str:
        hasher = hashlib.sha256()
        for resource in self.resources:
            hasher.update(bytes.fromhex(resource.digest))
        return hasher.hexdigest()

    def as_dict(self) -> dict[str, str]:
        return {r.name: r.digest for r in self.resources}

    def relpaths(self) -> list[str]:
        if self.serialization.method == "shards":
            return sorted({r.name.rsplit(":", 2)[0] for r in self.resources})
        return sorted({r.name for r in self.resources})


def build_manifest(model_name: str, digests: dict[str, str], serialization: Serialization) -> Manifest:
    algorithm = serialization.plan.algorithm_name()
    resources = tuple(Resource(name, algorithm, digests[name]) for name in sorted(digests))
    return Manifest(model_name=model_name, resources=resources, serialization=serialization)


@dataclasses.dataclass(frozen=True)
class ManifestDiff:
    mismatched: tuple[tuple[str, str, str], ...]  # (name, signed hex, found hex)
    missing: tuple[tuple[str, str], ...]  # (name, signed hex)
    extra: tuple[tuple[str, str], ...]  # (name, found hex)

    def __bool__(self) -> bool:
        return bool(self.mismatched or self.missing or self.extra)

    def describe(self, hash_type: str) -> str:
        parts = [f"digest mismatch {n} (signed {hash_type}:{s}, found {hash_type}:{f})" for n, s, f in self.mismatched]
        parts += [f"missing file {n} (signed {hash_type}:{s})" for n, s in self.missing]
        parts += [f"extra file {n} (found {hash_type}:{f})" for n, f in self.extra]
        return "; ".join(parts)


def diff_manifests(expected: dict[str, str], actual: dict[str, str]) -> ManifestDiff:
    mismatched = tuple((n, expected[n], actual[n]) for n in sorted(expected.keys() & actual.keys())
                       if expected[n] != actual[n])
    missing = tuple((n, expected[n]) for n in sorted(expected.keys() - actual.keys()))
    extra = tuple((n, actual[n]) for n in sorted(actual.keys() - expected.keys()))
    return ManifestDiff(mismatched=mismatched, missing=missing, extra=extra)


def require_match(expected: Manifest, actual: dict[str, str]) -> None:
    """Raise VerificationError naming every differing file with both hex digests."""
    diff = diff_manifests(expected.as_dict(), actual)
    if diff:
        count = len(diff.mismatched) + len(diff.missing) + len(diff.extra)
        raise VerificationError(f"verification failed: {count} difference(s) between the model and its signature: "
                                f"{diff.describe(expected.serialization.hash_type)}", rule="verify-files")
