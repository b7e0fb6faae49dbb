"""Fetching one revision of a Hub model repo, by commit sha, into a directory of its own.

Order: list the tree at the sha (sizes, git oids, LFS sha256) -> refuse unsafe names and anything over the
limits before a byte of content moves -> `snapshot_download` into a per-download cache under `dest` ->
re-hash every file against the listing -> hard-link the blobs into `dest/model` (regular files, no
symlinks) through a staging directory renamed into place, so a half-fetched model never looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil

from guard.errors import GuardError, InputError, VerificationError
from guard.hub.refs import HubRef, check_repo_id
from guard.hub.settings import HubLimits, HubSettings
from guard.hub.transport import HubLimitExceeded, HubUnavailable, hub_session

MODEL_DIRNAME = "model"
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    git_oid: str
    sha256: str | None  # LFS files: the content's sha256 as the Hub lists it


@dataclasses.dataclass(frozen=True)
class Fetched:
    ref: HubRef
    model_dir: pathlib.Path
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def hub_errors(ref_text: str):
    """Turn huggingface_hub / httpx failures into guard's one-line errors."""
    import contextlib

    @contextlib.contextmanager
    def translate():
        import httpx2
        from huggingface_hub import errors as hf_errors

        try:
            yield
        except GuardError:
            raise
        except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:
            raise InputError(f"{ref_text}: not found on the Hub ({type(exc).__name__})", rule="hub-not-found") from None
        except hf_errors.LocalEntryNotFoundError as exc:
            raise HubUnavailable(f"{ref_text}: the Hub could not be reached ({_short(exc)})",
                                 rule="hub-unavailable") from None
        except (hf_errors.HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
            raise HubUnavailable(f"{ref_text}: Hub request failed: {_short(exc)}", rule="hub-unavailable") from None

    return translate()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _check_path(path: str, ref: HubRef) -> str:
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or c == "\x7f" for c in path) or len(path) > 1024):
        raise VerificationError(f"the Hub lists an unsafe file name {path[:200]!r}", path=str(ref), rule="hub-path")
    return path


def list_revision(ref: HubRef, *, settings: HubSettings, limits: HubLimits) -> tuple[RemoteFile, ...]:
    """The files at `ref.sha`, checked against `limits` (PolicyRefusal, exit 1, naming the number and cap)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
    with hub_session(settings, limits, total_bytes=0), hub_errors(str(ref)):
        entries = list(api.list_repo_tree(ref.repo_id, revision=ref.sha, recursive=True))
    files = tuple(sorted((RemoteFile(path=_check_path(e.path, ref), size=int(e.size), git_oid=e.blob_id,
                                     sha256=e.lfs.sha256 if e.lfs is not None else None)
                          for e in entries if isinstance(e, RepoFile)), key=lambda f: f.path))
    _check_limits(ref, files, limits)
    return files


def _check_limits(ref: HubRef, files: tuple[RemoteFile, ...], limits: HubLimits) -> None:
    if len({f.path for f in files}) != len(files):
        raise VerificationError("the Hub lists a file twice", path=str(ref), rule="hub-path")
    if len(files) > limits.max_files:
        raise HubLimitExceeded(f"{len(files)} files, over the cap of {limits.max_files}", path=str(ref),
                               rule="hub-too-many-files")
    for f in files:
        if f.size < 0 or f.size > limits.max_file_bytes:
            raise HubLimitExceeded(f"{f.path}: {f.size:,} bytes, over the per-file cap of {limits.max_file_bytes:,}",
                                   path=str(ref), rule="hub-too-large")
    total = sum(f.size for f in files)
    if total > limits.max_total_bytes:
        raise HubLimitExceeded(f"{total:,} bytes in {len(files)} files, over the cap of {limits.max_total_bytes:,}",
                               path=str(ref), rule="hub-too-large")


def download_revision(ref: HubRef, *, dest: str | os.PathLike, settings: HubSettings | None = None,
                      limits: HubLimits | None = None) -> Fetched:
    """Fetch every file of `ref` into `dest/model` (created; `dest` may exist and must not hold `model`)."""
    settings = settings or HubSettings()
    limits = limits or HubLimits()
    dest = pathlib.Path(dest)
    final = dest / MODEL_DIRNAME
    if final.exists():
        raise InputError("already holds a downloaded model", path=final, rule="hub-dest-exists")
    dest.mkdir(parents=True, exist_ok=True)
    files = list_revision(ref, settings=settings, limits=limits)
    if not files:
        raise VerificationError("the revision has no files", path=str(ref), rule="hub-empty")
    cache = dest / ".hf-cache"
    staging = dest / f".{MODEL_DIRNAME}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        from huggingface_hub import snapshot_download

        with hub_session(settings, limits, total_bytes=sum(f.size for f in files)), hub_errors(str(ref)):
            snapshot = pathlib.Path(snapshot_download(
                ref.repo_id, revision=ref.sha, cache_dir=cache, endpoint=settings.endpoint,
                token=settings.token or False, max_workers=4, etag_timeout=limits.read_timeout_s,
                allow_patterns=[f.path for f in files]))
        staging.mkdir(mode=0o700)
        for f in files:
            _place(snapshot, staging, f, ref)
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return Fetched(ref=ref, model_dir=final, files=files)


def _place(snapshot: pathlib.Path, staging: pathlib.Path, f: RemoteFile, ref: HubRef) -> None:
    """Check one downloaded file against the listing and link its blob into the staging directory."""
    src = snapshot / f.path
    try:
        blob = src.resolve(strict=True)
    except OSError:
        raise VerificationError(f"{f.path}: listed by the Hub but not downloaded", path=str(ref),
                                rule="hub-incomplete") from None
    if not blob.is_file() or not blob.is_relative_to(snapshot.parents[1].resolve()):
        raise VerificationError(f"{f.path}: the download is not a regular file in the cache", path=str(ref),
                                rule="hub-path")
    size = blob.stat().st_size
    if size != f.size:
        raise VerificationError(f"{f.path}: downloaded {size:,} bytes, the Hub lists {f.size:,}", path=str(ref),
                                rule="hub-digest")
    sha256, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(blob, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            sha256.update(chunk)
            git.update(chunk)
    expected, actual = (f.sha256, sha256.hexdigest()) if f.sha256 else (f.git_oid, git.hexdigest())
    if actual != expected:
        raise VerificationError(f"{f.path}: content digest {actual} does not match the Hub's listing {expected}",
                                path=str(ref), rule="hub-digest")
    target = staging / f.path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)


def resolve_revision(repo_id: str, *, revision: str = "main", settings: HubSettings | None = None,
                     limits: HubLimits | None = None) -> HubRef:
    """Pin a branch or tag to the commit sha it points at now (e.g. a base model named in a model card)."""
    from huggingface_hub import HfApi

    settings = settings or HubSettings()
    limits = limits or HubLimits()
    api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
    check_repo_id(repo_id)
    with hub_session(settings, limits, total_bytes=0), hub_errors(f"hf:{repo_id}@{revision}"):
        info = api.model_info(repo_id, revision=revision)
    from guard.hub.refs import check_sha

    return HubRef(repo_id=repo_id, sha=check_sha(info.sha or ""))


def card_data(ref: HubRef, *, settings: HubSettings | None = None, limits: HubLimits | None = None) -> dict:
    """The model card's metadata (the Hub's `cardData`) at `ref.sha`; {} when there is none."""
    from huggingface_hub import HfApi

    settings = settings or HubSettings()
    limits = limits or HubLimits()
    api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
    with hub_session(settings, limits, total_bytes=0), hub_errors(str(ref)):
        info = api.model_info(ref.repo_id, revision=ref.sha)
    data = info.card_data
    return dict(data.to_dict() if hasattr(data, "to_dict") else data or {})
