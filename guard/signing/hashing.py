"""Parallel hashing of model files: sha256 (OMS default), blake3, and blake2b (verify only).

Two serializations, as in OMS:
  files   one digest per file (resource name = the relative path). One sha256 cannot be split, so
          parallelism comes from hashing several files at once (largest first).
  shards  each file is cut into fixed-size byte ranges, each its own resource `path:start:end` with
          algorithm `<hash>-sharded-<size>`; ranges of all files are hashed by one thread pool, so
          one big file keeps every core busy.

Every byte is read once, with positional reads into a small buffer per task (1 MiB; 16 MiB for a
blake3 hasher running its own threads, which want larger inputs): hashlib, blake3 and the reads release the GIL, and the
resident set stays at the buffers, whatever the model's size (mapping whole files made every hashed
page resident: a 2 GiB model peaked at 1.8 GB; a file truncated under a mapping also kills the
process with SIGBUS, where a short read is a clean error). When a `copy_to` directory is given, the
same buffer is written to the copy, so the copy holds exactly the bytes that were hashed (see
verified_model.py). A model may be a single file: its one resource is "." (the root itself).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import stat
import threading
from collections.abc import Sequence

from guard.errors import InputError

HASH_TYPES = ("sha256", "blake3")  # what guard signs with
VERIFY_HASH_TYPES = ("sha256", "blake3", "blake2b")  # what guard accepts in a signature
METHODS = ("files", "shards")
DEFAULT_SHARD_SIZE = 256 * 1024 * 1024
MIN_SHARD_SIZE = 64 * 1024  # a signature may not make us schedule millions of tiny ranges
READ_CHUNK = 128 << 10  # per task: stays in L2 between the read and the hash (measured: 3% less CPU than 1 MiB)
BLAKE3_READ_CHUNK = 16 << 20  # blake3 splits each update over its threads; give them room


@dataclasses.dataclass(frozen=True)
class HashPlan:
    """How to hash: the part of an OMS `serialization` record that changes digests."""

    method: str = "files"
    hash_type: str = "sha256"
    shard_size: int | None = None

    def algorithm_name(self) -> str:
        """The `algorithm` string of each resource, exactly as OMS writes it."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type


@dataclasses.dataclass(frozen=True)
class HashedModel:
    """Resource name -> hex digest, plus the byte size of each file read and the identity of the file that was
    read (guard.artifacts.identity.file_identity), the same before and after every read of it; None if it
    changed while it was hashed (written, renamed or touched): what a reader of the file in place checks."""

    digests: dict[str, str]
    sizes: dict[str, int]
    identities: dict[str, tuple[int, ...] | None] = dataclasses.field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


@dataclasses.dataclass(frozen=True)
class _Task:
    relpath: str
    start: int
    end: int | None  # None: read the whole file to EOF (files method)

    def resource_name(self) -> str:
        return self.relpath if self.end is None else f"{self.relpath}:{self.start}:{self.end}"


def hash_model(root: str | os.PathLike, relpaths: Sequence[str], *, plan: HashPlan,
               max_workers: int | None = None, copy_to: pathlib.Path | None = None) -> HashedModel:
    """Hash `relpaths` under `root` as `plan` says; optionally copy the hashed bytes to `copy_to`."""
    return HashJob(root, relpaths, plan=plan, max_workers=max_workers, copy_to=copy_to).result()


class HashJob:
    """Hashing that runs in background threads from construction until `result()`.

    Lets callers overlap hashing with other work (importing cryptography, loading keys, checking the
    signature). Workers are daemon threads, so an error elsewhere can `cancel()` and exit at once.
    """

    def __init__(self, root: str | os.PathLike, relpaths: Sequence[str], *, plan: HashPlan,
                 max_workers: int | None = None, copy_to: pathlib.Path | None = None) -> None:
        _check_plan(plan)
        self.root, self.relpaths, self.plan = pathlib.Path(root), list(relpaths), plan
        self._copy_to = copy_to
        sizes = {rel: _regular_size(self.root, rel) for rel in self.relpaths}
        tasks = _plan_tasks(self.relpaths, sizes, plan)
        if copy_to is not None:
            _precreate(copy_to, self.root, self.relpaths)
        # The standard library's default pool size (as ThreadPoolExecutor and model_signing use): a few more
        # threads than cores keeps the cores busy while a thread waits on a page fault or a shared CPU.
        workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._blake3_threads = 1
        cores = os.cpu_count() or 1
        if plan.hash_type == "blake3" and plan.method == "files" and len(tasks) < cores:
            # Fewer files than cores: blake3 splits each input over its own threads, one file at a time.
            # With at least as many files as cores, the pool below keeps every core busy with one-thread
            # hashers instead, which overlaps the reads with hashing.
            self._blake3_threads, workers = cores, 1
        # Longest tasks first keeps all workers busy until the end (LPT scheduling).
        tasks.sort(key=lambda t: -((t.end if t.end is not None else sizes[t.relpath]) - t.start))
        self._tasks = tasks
        self._next = 0
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._errors: list[BaseException] = []
        self._digests: dict[str, str] = {}
        self._sizes: dict[str, int] = {rel: 0 for rel in self.relpaths}
        self._identities: dict[str, tuple[int, ...] | None] = {}
        self._threads = [threading.Thread(target=self._work, name=f"guard-hash-{i}", daemon=True)
                         for i in range(max(1, min(workers, len(tasks))))]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while not self._cancelled.is_set():
            with self._lock:
                if self._next >= len(self._tasks):
                    return
                task = self._tasks[self._next]
                self._next += 1
            try:
                digest, n, identity = _hash_task(self.root, task, self.plan.hash_type, self._blake3_threads,
                                                 self._copy_to)
            except BaseException as exc:  # reported by result(); stop the other workers early
                with self._lock:
                    self._errors.append(exc)
                self._cancelled.set()
                return
            with self._lock:
                self._digests[task.resource_name()] = digest
                self._sizes[task.relpath] += n
                if self._identities.setdefault(task.relpath, identity) != identity:  # byte ranges of one file
                    self._identities[task.relpath] = None

    def cancel(self) -> None:
        self._cancelled.set()

    def result(self) -> HashedModel:
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        if self._cancelled.is_set():
            raise RuntimeError("hashing was cancelled")
        if self._copy_to is not None:
            for rel in self.relpaths:
                os.chmod(copy_path(self._copy_to, self.root, rel), 0o400)
        return HashedModel(digests=dict(self._digests), sizes=dict(self._sizes), identities=dict(self._identities))


def _check_plan(plan: HashPlan) -> None:
    if plan.hash_type not in VERIFY_HASH_TYPES:
        raise InputError(f"unknown hash algorithm {plan.hash_type!r} (known: {', '.join(VERIFY_HASH_TYPES)})",
                         rule="sign-hash-type")
    if plan.method not in METHODS:
        raise InputError(f"unknown serialization {plan.method!r} (known: files, shards)", rule="sign-serialization")
    if plan.method == "shards" and (not isinstance(plan.shard_size, int) or plan.shard_size < MIN_SHARD_SIZE):
        raise InputError(f"shard size {plan.shard_size!r} is below the minimum {MIN_SHARD_SIZE}",
                         rule="sign-shard-size")


def _regular_size(root: pathlib.Path, rel: str) -> int:
    try:
        st = os.lstat(root if rel == "." else root / rel)
    except OSError as exc:
        raise InputError(f"cannot stat: {exc.strerror}", path=root / rel, rule="path-unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError("not a regular file", path=root / rel, rule="path-special-file")
    return st.st_size


def _plan_tasks(relpaths: Sequence[str], sizes: dict[str, int], plan: HashPlan) -> list[_Task]:
    if plan.method == "files":
        return [_Task(rel, 0, None) for rel in relpaths]
    tasks = []
    step = plan.shard_size
    for rel in relpaths:
        size = sizes[rel]
        if size == 0:
            # guard covers empty files too (OMS emits no shard for them; see docs/signing.md).
            tasks.append(_Task(rel, 0, 0))
        for start in range(0, size, step):
            tasks.append(_Task(rel, start, min(start + step, size)))
    return tasks


def new_hasher(hash_type: str, *, threads: int = 1):
    if hash_type == "sha256":
        return hashlib.sha256()
    if hash_type == "blake2b":
        return hashlib.blake2b()
    import blake3  # lazy: only blake3 signatures pay for it

    return blake3.blake3(max_threads=blake3.blake3.AUTO if threads > 1 else 1)


def _hash_task(root: pathlib.Path, task: _Task, hash_type: str, threads: int,
               copy_to: pathlib.Path | None) -> tuple[str, int, tuple[int, ...] | None]:
    """(digest, bytes read, identity of the file read: None if it changed while it was read)."""
    from guard.artifacts.identity import file_identity, open_fd

    path = root if task.relpath == "." else root / task.relpath
    try:
        fd = open_fd(root, task.relpath)
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path, rule="path-unreadable") from None
    out = None
    try:
        identity = file_identity(os.fstat(fd))
        hasher = new_hasher(hash_type, threads=threads)
        if copy_to is not None:
            out = os.open(copy_path(copy_to, root, task.relpath), os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        chunk = BLAKE3_READ_CHUNK if hash_type == "blake3" and threads > 1 else READ_CHUNK
        n = _hash_range(fd, hasher, task, chunk, out)
        if file_identity(os.fstat(fd)) != identity:
            identity = None
    except OSError as exc:
        raise InputError(f"read failed: {exc.strerror}", path=path, rule="path-unreadable") from None
    finally:
        os.close(fd)
        if out is not None:
            os.close(out)
    return hasher.hexdigest(), n, identity


def _hash_range(fd: int, hasher, task: _Task, chunk: int, out: int | None) -> int:
    """Hash the task's byte range through one reusable buffer (and write it to `out` at the same offset)."""
    buf = bytearray(chunk)
    view = memoryview(buf)
    offset, total = task.start, 0
    while task.end is None or offset < task.end:
        want = chunk if task.end is None else min(chunk, task.end - offset)
        n = os.preadv(fd, [view[:want]], offset)
        if n == 0:
            break
        data = view[:n]
        hasher.update(data)
        if out is not None:
            written = 0
            while written < n:
                written += os.pwrite(out, data[written:], offset + written)
        offset += n
        total += n
    return total


def copy_path(copy_to: pathlib.Path, root: pathlib.Path, rel: str) -> pathlib.Path:
    """Where the hashed copy of `rel` goes; a single-file model keeps its own name."""
    return copy_to / (root.name if rel == "." else rel)


def _precreate(copy_to: pathlib.Path, root: pathlib.Path, relpaths: Sequence[str]) -> None:
    for rel in relpaths:
        dest = copy_path(copy_to, root, rel)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        os.close(fd)
