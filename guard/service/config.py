"""`guard serve` settings: one frozen pydantic model, every field with a safe embedded default."""

from __future__ import annotations

import os
import pathlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from guard.hub.settings import HubLimits, HubSettings
from guard.service.trust import TrustPolicy

GiB = 1 << 30


class SandboxLimits(BaseModel):
    """What one audit (download + checks, in a child process) may cost. Past any of them the audit fails
    closed with the limit named; the worker that ran it carries on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_bytes: int = Field(default=8 * GiB, gt=0)  # RLIMIT_AS of the audit process
    cpu_s: int = Field(default=3_600, gt=0)  # RLIMIT_CPU
    wall_s: float = Field(default=3_600.0, gt=0)  # killed after this, whatever it is doing
    file_bytes: int = Field(default=64 * GiB, gt=0)  # RLIMIT_FSIZE: no single file written larger
    open_files: int = Field(default=1_024, gt=16)


class ServiceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database: str = "guard-serve.db"  # a SQLite file, or postgresql://...
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    webhook_secret: SecretStr
    secret_in_query: bool = False  # also accept ?secret= (the Hub's URL option); off by default
    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    bot_user_ids: tuple[str, ...] = ()  # guard's own Hub account(s): their events are ignored
    ignore_refs: tuple[str, ...] = ("refs/convert/*",)  # fnmatch; add the refs guard itself writes, if any
    hub: HubSettings = Field(default_factory=HubSettings)
    download: HubLimits = Field(default_factory=HubLimits)
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits)
    trust: TrustPolicy = Field(default_factory=TrustPolicy)
    workers: int = Field(default=1, ge=0)  # in-process worker threads (0: this process only takes webhooks)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # None: start or join a local Ray instance
    lease_s: float = Field(default=120.0, gt=0)  # renewed every lease_s / 4 while an audit runs
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=30.0, ge=0)
    backoff_max_s: float = Field(default=3_600.0, ge=0)
    poll_s: float = Field(default=1.0, gt=0)  # an idle worker looks for due jobs this often
    report: bool = True  # post a discussion comment with the summary
    work_dir: pathlib.Path = Field(default_factory=lambda: pathlib.Path(os.environ.get("TMPDIR", "/tmp")))
    audit: str = "guard.service.audit:StageAuditor"  # module:attribute of the auditor (tests swap in fakes)
