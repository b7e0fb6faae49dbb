"""Where the Hub is and what one download may cost (frozen pydantic models, keyword-only)."""

from __future__ import annotations

import os
import urllib.parse

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_ENDPOINT = "https://huggingface.co"
# The real Hub redirects LFS downloads to its CDN; these hosts serve nothing but Hub blobs.
DEFAULT_HUB_HOSTS = ("huggingface.co", "*.huggingface.co", "*.hf.co")
GiB = 1 << 30


def _env_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _env_token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


class HubSettings(BaseModel):
    """The Hub to talk to. `endpoint` honours HF_ENDPOINT; `token` HF_TOKEN (never logged)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = Field(default_factory=_env_endpoint)
    token: str | None = Field(default_factory=_env_token, repr=False)
    # Hosts a download may reach besides the endpoint's own (fnmatch patterns). Defaults to the Hub's CDN
    # when the endpoint is the public Hub, and to nothing else for any other endpoint.
    extra_hosts: tuple[str, ...] | None = None

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HF endpoint must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.endpoint).hostname or ""

    def allowed_hosts(self) -> tuple[str, ...]:
        if self.extra_hosts is not None:
            return (self.host, *self.extra_hosts)
        if self.endpoint == DEFAULT_ENDPOINT:
            return (self.host, *DEFAULT_HUB_HOSTS)
        return (self.host,)


class HubLimits(BaseModel):
    """Caps on one download, checked against the Hub's listing before a byte is fetched and enforced on the
    wire while fetching (a server that sends more than it listed, or too slowly, is cut off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_files: int = Field(default=1_000, gt=0)
    max_file_bytes: int = Field(default=64 * GiB, gt=0)
    max_total_bytes: int = Field(default=128 * GiB, gt=0)
    timeout_s: float = Field(default=3_600.0, gt=0)  # the whole download, listing included
    read_timeout_s: float = Field(default=60.0, gt=0)  # silence on one connection
