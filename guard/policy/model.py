"""The safe-merge policy: what every input must pass before guard merges anything.

A policy is a YAML file validated by `Policy` (pydantic, frozen, unknown keys refused). The JSON
Schema in docs/policy.schema.json is generated from this model (`python -m guard.policy.schema`).
Paths inside a policy (trusted keys, certificate chains, trust configs) are relative to the policy
file. Shipped: policies/strict.yaml (the default) and policies/research.yaml; see docs/policies.md.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

Action = Literal["refuse", "warn"]
CHECKS = ("artifacts", "signature", "mergelock", "probes")


class _Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class TrustedSigner(_Frozen):
    """One signer whose OMS signatures are accepted: exactly one of a public key, a certificate chain
    (trust anchors), or a Sigstore identity with its OIDC issuer."""

    name: str | None = pydantic.Field(default=None, description="a label for reports")
    key: str | None = pydantic.Field(default=None, description="EC public key (PEM) file")
    certificate_chain: list[str] | None = pydantic.Field(default=None, description="trust anchor PEM files")
    identity: str | None = pydantic.Field(default=None, description="Sigstore certificate identity (SAN)")
    issuer: str | None = pydantic.Field(default=None, description="Sigstore OIDC issuer URL")
    trust_config: str | None = pydantic.Field(default=None, description="Sigstore ClientTrustConfig JSON (offline)")

    @pydantic.model_validator(mode="after")
    def _one_method(self) -> TrustedSigner:
        methods = [m for m, on in (("key", self.key), ("certificate_chain", self.certificate_chain),
                                   ("identity", self.identity or self.issuer)) if on]
        if len(methods) != 1:
            raise ValueError(f"a trusted signer needs exactly one of key, certificate_chain, identity+issuer "
                             f"(got {', '.join(methods) or 'none'})")
        if (self.identity or self.issuer) and not (self.identity and self.issuer):
            raise ValueError("a Sigstore signer needs both identity and issuer")
        if self.trust_config and not self.identity:
            raise ValueError("trust_config only applies to a Sigstore identity")
        return self


class SignaturePolicy(_Frozen):
    required: bool = pydantic.Field(default=True, description="unsigned or untrusted inputs are refused (else warned)")
    trusted_signers: list[TrustedSigner] = pydantic.Field(
        default=[], description="accepted signers; the command line's verifier options add to them")


class ArtifactPolicy(_Frozen):
    """Severities of the strict-reading findings (rule ids: docs/artifacts.md). Pickles are never
    unpickled whatever the severity: guard reads safetensors only."""

    rules: dict[str, Literal["refuse", "warn", "info"]] = pydantic.Field(
        default={}, description="rule id -> severity, overriding the reader's default for that rule")
    refusals: Literal["refuse", "warn"] = pydantic.Field(
        default="refuse", description="what becomes of every other finding the reader would refuse")
    scan_nan_inf: bool = pydantic.Field(default=False, description="read every tensor; NaN/Inf are findings")

    def severities(self) -> tuple[tuple[str, str], ...]:
        pairs = tuple(sorted(self.rules.items()))
        return pairs + ((("*", "warn"),) if self.refusals == "warn" else ())


class MergeLockPolicy(_Frozen):
    action: Literal["refuse", "warn", "off"] = pydantic.Field(
        default="refuse", description="a MergeLock-protected input without its key in the config")


class MergePolicy(_Frozen):
    allowed_methods: list[str] | None = pydantic.Field(default=None, description="merge methods allowed (null: all)")
    allowed_devices: list[Literal["cpu", "cuda"]] = pydantic.Field(default=["cpu", "cuda"])

    @pydantic.field_validator("allowed_methods")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        from guard.merge.methods import REGISTRY

        unknown = [m for m in value if m not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown merge method(s) {unknown}; known: {', '.join(REGISTRY.names())}")
        return value


class SafetyPolicy(_Frozen):
    require_safety_vector: bool = pydantic.Field(
        default=False, description="refuse merges whose config adds no safety vector (EnchTable stage)")


def known_probes() -> dict[str, Any]:
    """Probe name -> its settings model, from guard.probes when that stage exists; empty until then."""
    try:
        import guard.probes as probes  # noqa: F401
    except ImportError:
        return {}
    return dict(getattr(probes, "PROBE_SETTINGS", {}))


class Policy(_Frozen):
    version: Literal[1] = 1
    name: str
    description: str = ""
    required_checks: list[Literal["artifacts", "signature", "mergelock", "probes"]] = pydantic.Field(
        default=list(CHECKS[:3]), description="checks that must run and pass for every input: one that cannot "
                                              "run (e.g. MergeLock detection on an unsupported architecture) refuses")
    signatures: SignaturePolicy = SignaturePolicy()
    artifacts: ArtifactPolicy = ArtifactPolicy()
    mergelock: MergeLockPolicy = MergeLockPolicy()
    merge: MergePolicy = MergePolicy()
    safety: SafetyPolicy = SafetyPolicy()
    probes: dict[str, dict[str, Any]] = pydantic.Field(
        default={}, description="probe name -> thresholds; validated by the probe stage's settings models")

    @pydantic.field_validator("probes")
    @classmethod
    def _known_probes(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        known = known_probes()
        for name, settings in value.items():
            if name not in known:
                raise ValueError(f"unknown probe {name!r}: " + (f"known: {', '.join(sorted(known))}" if known else
                                                              "this build has no probe stage"))
            known[name].model_validate(settings)
        return value
