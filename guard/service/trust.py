"""Which signers a repo may be signed by: the binding between a Hub repo and publisher identities.

A signature proves who signed some bytes, not where they were meant to be published, so a valid
signature copied onto another repo would otherwise pass. guard binds the two ways, both checked:

1. Signers per repo. The trust file maps repo patterns (first match wins) to the only signers trusted
   there. A copy onto a repo whose entry names other signers (or none) fails.
2. The signed name. OMS statements carry the model's name (the signed directory's name); with
   `bind: name` (the default) it must equal the repo's name (`owner/name` or `name`), so one org key
   trusted for `acme/*` cannot carry `acme/a`'s signature over to `acme/b`.

    # trust.yaml
    default: {require_signature: false}
    repos:
      - match: "acme/*"
        require_signature: true
        signers:
          - key: keys/acme.pub
          - certificate_chain: [ca/root.pem]
          - {identity: release@acme.example, issuer: https://accounts.example}
        probes:                         # the audit's probe stage (all optional; defaults shown)
          action: warn                  # what a flagging probe makes the probes check: warn | fail | off
          max_seconds: 1200             # the probe stage's budget inside the audit sandbox
          peers: [acme/expert-a, acme/expert-b]  # other fine-tunes of the same base (Hub repos): the
                                        # weight probes' z-scores compare with them
          calibration: prompts.safetensors  # unlabeled inputs: enables the data-driven probes
          settings: {embedding: {threshold: 8.0}}  # per-probe settings, as a policy's `probes:` section
"""

from __future__ import annotations

import fnmatch
import os
import pathlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guard.errors import InputError


class Signer(BaseModel):
    """Exactly one verification method, as `guard verify` takes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str | None = None
    certificate_chain: tuple[str, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    trust_config: str | None = None

    @model_validator(mode="after")
    def _one_method(self) -> Signer:
        from guard.signing.verify import check_verifier_options

        try:
            check_verifier_options(public_key=self.key, certificate_chain=self.certificate_chain,
                                   identity=self.identity, issuer=self.issuer, trust_config=self.trust_config)
        except InputError as exc:
            raise ValueError(exc.message) from None
        return self

    def trusted(self):
        """This signer as the safe-merge pipeline's guard.pipeline.trust.TrustedVerifier (reads the key files)."""
        from guard.pipeline.trust import trusted_verifier

        def path(p: str | None) -> pathlib.Path | None:
            return None if p is None else pathlib.Path(p)

        return trusted_verifier(name=self.describe(), public_key=path(self.key),
                                certificate_chain=[pathlib.Path(p) for p in self.certificate_chain],
                                identity=self.identity, issuer=self.issuer, trust_config=path(self.trust_config))

    def describe(self) -> str:
        if self.key:
            return f"key {self.key}"
        if self.certificate_chain:
            return f"certificate chain {', '.join(self.certificate_chain)}"
        return f"sigstore {self.identity} ({self.issuer})"


class ProbeAudit(BaseModel):
    """How the audit runs the probe stage for a repo (docs/service.md, "Probes"). A flag is a warning by
    default: the probes' measured false-positive rate against a base alone is not low enough to fail uploads
    on (docs/probes.md); an entry that wants it sets `action: fail`. A probe that errors or runs out of
    budget fails the check whatever the action (it could not vouch for the upload)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["warn", "fail", "off"] = "warn"
    max_seconds: float = Field(default=1_200.0, gt=0)
    peers: tuple[str, ...] = Field(default=(), max_length=16)  # Hub repo ids, fetched at their current sha
    calibration: str | None = None
    settings: dict[str, dict] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_settings(self) -> ProbeAudit:
        from guard.probes.settings import ProbeSettings  # pydantic only: no torch

        unknown = sorted(set(self.settings) - set(ProbeSettings.probe_names()))
        if unknown:
            raise ValueError(f"probes.settings: unknown probe {unknown[0]!r}; known: "
                             f"{', '.join(ProbeSettings.probe_names())}")
        try:
            ProbeSettings.model_validate(self.settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"probes.settings.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
        return self


class RepoTrust(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str = "*"
    require_signature: bool = False
    signers: tuple[Signer, ...] = ()
    bind: Literal["name", "signer"] = "name"  # "signer": only the per-repo signer list binds
    probes: ProbeAudit = Field(default_factory=ProbeAudit)

    @model_validator(mode="after")
    def _signers_if_required(self) -> RepoTrust:
        if self.require_signature and not self.signers:
            raise ValueError(f"{self.match!r} requires a signature but names no signers")
        return self


class TrustPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default: RepoTrust = Field(default_factory=RepoTrust)
    repos: tuple[RepoTrust, ...] = ()

    def for_repo(self, repo_id: str) -> RepoTrust:
        for entry in self.repos:
            if fnmatch.fnmatchcase(repo_id, entry.match):
                return entry
        return self.default


def load_trust(path: str | os.PathLike) -> TrustPolicy:
    """Read a trust file (YAML); relative key/certificate paths are relative to the file. Errors exit 2."""
    import yaml

    path = pathlib.Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the trust file: {exc.strerror}", path=path, rule="serve-trust") from None
    except yaml.YAMLError as exc:
        raise InputError(f"not YAML: {' '.join(str(exc).split())[:300]}", path=path, rule="serve-trust") from None
    try:
        policy = TrustPolicy.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{where}: {first['msg']}", path=path, rule="serve-trust") from None
    return _rebase(policy, path.parent)


def _rebase(policy: TrustPolicy, base: pathlib.Path) -> TrustPolicy:
    def fix(signer: Signer) -> Signer:
        def absolute(p: str | None) -> str | None:
            return None if p is None else str(base / p)

        return signer.model_copy(update={"key": absolute(signer.key), "trust_config": absolute(signer.trust_config),
                                         "certificate_chain": tuple(str(base / c) for c in signer.certificate_chain)})

    def entry(e: RepoTrust) -> RepoTrust:
        probes = e.probes
        if probes.calibration is not None:
            probes = probes.model_copy(update={"calibration": str(base / probes.calibration)})
        return e.model_copy(update={"signers": tuple(fix(s) for s in e.signers), "probes": probes})

    return policy.model_copy(update={"default": entry(policy.default), "repos": tuple(entry(e) for e in policy.repos)})
