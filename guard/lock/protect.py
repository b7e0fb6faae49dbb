"""Streaming MergeLock over model directories: `protect_model` and `unlock_model`.

Each output shard mirrors its input shard (guard.lock.output): tensors outside attention and MLP are
copied file to file by the kernel, never read; an attention (or MLP) tensor is read and waits only
until the rest of its block has arrived, then the block is transformed (or its hidden units permuted)
and written at its place. The output is staged in a hidden directory next to OUT, self-checked
(original and result run on a probe batch, module by module), fsynced, optionally signed, and only
then renamed to OUT: partial or failed work never looks complete.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import os
import pathlib
import shutil
import time
from typing import Any

from guard.errors import InputError, PolicyRefusal
from guard.lock.keys import LockKey, RunKey
from guard.lock.lockfile import LOCK_FILE, VERSION, open_lock, read_lock_file, seal, write_lock_file
from guard.lock.mlp import lock_mlp_block
from guard.lock.modeling import model_class, outputs_residual_stream, transformers_config
from guard.lock.plan import LockPlan, plan_lock
from guard.lock.selfcheck import SelfCheck, probe_pair, require_pass, self_check
from guard.lock.residual import FORMS
from guard.lock.state import DEFAULT_RESIDUAL, default_bound, lock_block, residual_applier

_SIGNATURE = "model.sig"
_INDEX = "model.safetensors.index.json"
# Kinds that are copied verbatim; anything else that can carry weights (another safetensors file, GGUF,
# numpy, archives) would ship an unprotected copy, so it is refused.
_COPYABLE = ("json", "text", "python", "empty")


@dataclasses.dataclass(frozen=True)
class LockResult:
    out_dir: pathlib.Path
    metadata: dict[str, Any]
    selfcheck: SelfCheck
    signature: pathlib.Path | None
    seconds: dict[str, float]  # wall time of each phase: transform (stream + write), selfcheck, sign, sync


def protect_model(src: str | os.PathLike, out: str | os.PathLike, *, key: LockKey, bound: float | None = None,
                  signer=None, mlp_permute: bool = True, residual: str = DEFAULT_RESIDUAL) -> LockResult:
    """Write a MergeLock-protected copy of the model at `src` to `out` (which must not exist).
    bound: the transforms' singular values lie in [1/bound, bound]; None: 8, or 4 for 16-bit weights.
    mlp_permute: also permute every MLP's hidden units with a key-derived permutation (exact).
    residual: "rotation", "permutation" or "none": the residual-stream transform (guard.lock.residual)."""
    if bound is not None and (not bound > 1.0 or bound > 64.0):
        raise InputError(f"bound must be in (1, 64], got {bound}", rule="lock-bound")
    if residual not in FORMS:
        raise InputError(f"residual must be one of {', '.join(FORMS)}, got {residual!r}", rule="lock-residual")
    model, config, plan = _open(src, mlp=mlp_permute, residual=residual)
    bound = default_bound(model.dtype_counts()) if bound is None else bound
    if LOCK_FILE in {f.relpath for f in model.files}:
        raise InputError(f"already MergeLock-protected ({LOCK_FILE} present); unlock it first", path=src,
                         rule="lock-already-protected")
    run = key.fresh_run()  # a new nonce: this output shares no key-derived value with any other
    metadata = {"bound": bound, **plan.describe(), "dtypes": model.dtype_counts(), "mlp_permute": mlp_permute,
                "mlp": _describe_mlp(plan, model)}
    # The residual form actually used (a rotation is not exact everywhere), which unlock must regenerate.
    metadata["residual_form"] = "none" if plan.residual is None else plan.residual.form
    if plan.residual is not None:
        metadata["residual"] = plan.residual.describe()
    elif residual == "none":
        metadata["residual"] = "unchanged (--residual none)"
    else:
        metadata["residual"] = ("unchanged: this model's output is its residual stream (a base model's "
                                "last_hidden_state), which the transform would change")
    return _rewrite(model, out, plan=plan, key=run, bound=bound, inverse=False, metadata=metadata, signer=signer)


def unlock_model(src: str | os.PathLike, out: str | os.PathLike, *, key: LockKey, signer=None,
                 allow_legacy: bool = False, verifier=None, signature: str | os.PathLike | None = None) -> LockResult:
    """Restore the original weights of a protected model with its lock key. The lock file must carry the
    key's id for its nonce and an intact MAC (format v1, which has none, only with allow_legacy).
    With a `verifier` (guard.signing), the protected model's signature is checked first and every byte
    unlock reads, guard_lock.json included, comes from the verified copy (guard.signing.open_verified_model)."""
    if verifier is None:
        return _unlock(src, out, key=key, signer=signer, allow_legacy=allow_legacy)
    from guard.signing.verified_model import open_verified_model

    with open_verified_model(src, signature=signature, verifier=verifier) as verified:
        return _unlock(verified, out, key=key, signer=signer, allow_legacy=allow_legacy)


def _unlock(src, out, *, key: LockKey, signer, allow_legacy: bool) -> LockResult:
    model, config, _ = _open(src)
    src = model.root
    metadata = read_lock_file(model)
    run = open_lock(metadata, key, path=model.root, allow_legacy=allow_legacy)
    form = metadata.get("residual_form", "none")  # v1 files predate the residual transform
    plan = plan_lock(model.tensors.keys(), config, path=src, mlp=metadata["mlp_permute"],
                     residual={"none": "none", "rotation": "rotation"}.get(form, "permutation"))
    if (plan.residual.form if plan.residual is not None else "none") != form:
        raise InputError(f"{LOCK_FILE} records the residual form {form!r}, which this model's config does not "
                         "admit (was config.json changed?)", path=model.root, rule="lock-metadata")
    return _rewrite(model, out, plan=plan, key=run, bound=float(metadata["bound"]), inverse=True, metadata=None,
                    signer=signer)


def _describe_mlp(plan: LockPlan, model) -> str:
    if plan.mlp is None:
        return "unchanged (--no-mlp-permute)"
    return plan.mlp.describe({name: model.tensors[name].shape for name in plan.mlp.block_of()})


def _open(src, *, mlp: bool = False, residual: str = "none"):
    """(ModelDir, transformers config, LockPlan) for a path or an already validated ModelDir."""
    from guard.artifacts import open_model_dir

    model = src if hasattr(src, "tensors") else open_model_dir(src)
    src = model.root
    refused = model.refused()
    if refused:
        first = refused[0]
        raise PolicyRefusal(f"input refused: {first.path} [{first.rule}] {first.message}", path=src,
                            rule="lock-input-refused")
    if not model.tensors:
        raise InputError("no safetensors weights to protect", path=src, rule="lock-no-weights")
    config = transformers_config(model.config, path=src)
    model_class(config, path=src)  # an architecture the self-check could not build is refused before writing
    if residual != "none" and outputs_residual_stream(config, path=src):
        residual = "none"  # the output would come out transformed too: not the same function
    plan = plan_lock(model.tensors.keys(), config, path=src, mlp=mlp, residual=residual)
    if plan.residual is not None:
        from guard.lock.residual import check_residual_shapes

        check_residual_shapes(plan.residual, {name: info.shape for name, info in model.tensors.items()}, path=src)
    return model, config, plan


def _rewrite(model, out, *, plan: LockPlan, key: RunKey, bound: float, inverse: bool, metadata: dict | None,
             signer) -> LockResult:
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import wait as futures_wait

    from guard.artifacts.atomic import atomic_directory, fsync_tree
    from guard.lock.output import LockedShards

    out = pathlib.Path(out)
    copies = _files_to_copy(model, inverse=inverse)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    signature = None
    # The output is built in a private staging directory that already carries OUT's name (so a signature
    # made there names the final directory), fsynced and renamed into place only once it has passed the
    # self-check (guard.artifacts.atomic: the one atomic-write helper).
    with atomic_directory(out) as staged:
        # Both halves of the self-check run while the shards are written: the original's forward reads the
        # input, the candidate's reads each output tensor as soon as it is written (LockedShards.read_back).
        background = ThreadPoolExecutor(max_workers=3, thread_name_prefix="guard-lock")
        threads = torch_threads(1)  # the transform workers and both forwards share the cores
        # The imports (transformers) leave millions of objects that every cyclic collection would walk again
        # (7.7% of protect's samples on a 1.3 GB model); the stream makes no cycles worth collecting.
        gc.freeze()
        gc.disable()
        try:
            shard_metadata = {} if inverse else {"guard.mergelock": str(VERSION), "guard.lock_key_id": key.key_id}
            with LockedShards(model, staged, transformed=_unit_of(plan), metadata=shard_metadata) as shards:
                from guard.lock.streamed import TensorLoader

                # The candidate has the original's names, dtypes and shapes (the output mirrors them); its
                # bytes are read from the output as each tensor is written.
                reference, candidate = probe_pair(model, TensorLoader(model, read_bytes=shards.read_back),
                                                  background)
                try:
                    _stream(model, shards, plan=plan, key=key, bound=bound, inverse=inverse)
                    shards.finish(model.index)
                except BaseException:
                    _wait_quietly(candidate, shards)
                    raise
                for rel in copies:
                    (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(model.root / rel, staged / rel, follow_symlinks=False)
                seconds["transform"] = time.perf_counter() - started
                # Flush the written bytes to disk while the candidate's forward finishes reading them.
                syncing = background.submit(fsync_tree, staged)
                futures_wait([candidate])  # it reads through the output's descriptors, closed on leaving
            written = _open_staged(staged)
            _same_layout(model, written)
            check = self_check(model, written, reference=reference, candidate=candidate)
            seconds["selfcheck"] = time.perf_counter() - started - seconds["transform"]
            require_pass(check, path=model.root)
            if metadata is not None:
                metadata = seal({**metadata, "selfcheck": check.as_metadata()}, key)
                write_lock_file(staged, metadata)
            if signer is not None:
                from guard.signing import sign_model

                signature = sign_model(staged, signer=signer).name
            seconds["sign"] = time.perf_counter() - started - seconds["transform"] - seconds["selfcheck"]
            syncing.result()  # re-raises a failed fsync here
        finally:
            background.shutdown(wait=True)  # no thread outlives the call (nor writes into a removed staging)
            gc.enable()
            gc.unfreeze()
            torch_threads(threads)
        # Leaving the block fsyncs the small files written since (lock metadata, signature; the shards are
        # clean by now) and renames the staging directory to OUT.
    seconds["sync"] = time.perf_counter() - started - sum(seconds.values())
    return LockResult(out, metadata or {}, check, None if signature is None else out / signature, seconds)


def torch_threads(count: int) -> int:
    """Set torch's intra-op thread count; returns the previous one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    return previous


def _wait_quietly(candidate, shards) -> None:
    """The stream failed: stop the candidate's forward (it waits for tensors that will not come)."""
    shards.close()
    try:
        candidate.result()
    except Exception:  # noqa: BLE001 - the stream's own error is the one to report
        pass


def _same_layout(model, written) -> None:
    """The staged output's validated tensor table mirrors the input's (what read_back assumed)."""
    ours = [(i.name, i.dtype, i.shape, i.shard, i.nbytes) for i in model.tensors.values()]
    theirs = [(i.name, i.dtype, i.shape, i.shard, i.nbytes) for i in written.tensors.values()]
    if ours != theirs:
        raise RuntimeError("the written shards do not mirror the input's tensors")


def _open_staged(staged: pathlib.Path):
    from guard.artifacts import open_model_dir

    return open_model_dir(staged)


def _files_to_copy(model, *, inverse: bool) -> list[str]:
    weights = set(model.shards) | ({model.index} if model.index else set())
    copies = []
    for report in model.files:
        rel = report.relpath
        if rel in weights or rel in (_SIGNATURE, _INDEX) or (inverse and rel == LOCK_FILE):
            continue  # rewritten, superseded (the old signature no longer matches), or dropped on unlock
        if report.kind not in _COPYABLE:
            raise PolicyRefusal(
                f"{rel} is a {report.kind} file outside the main weights; copying it could ship unprotected "
                f"weights. Remove it from the input first", path=model.root, rule="lock-extra-weights")
        copies.append(rel)
    return copies


def _unit_of(plan: LockPlan) -> dict[str, tuple[str, str]]:
    """tensor name -> ("attention" | "mlp", block) for every tensor the lock rewrites."""
    unit_of = {name: ("attention", block) for name, block in plan.block_of().items()}
    if plan.mlp is not None:
        unit_of.update({name: ("mlp", block) for name, block in plan.mlp.block_of().items()})
    if plan.residual is not None:  # residual-only tensors (embeddings, norms, heads, output biases): one each
        unit_of.update({name: ("residual", name) for name in plan.residual.names() if name not in unit_of})
    return unit_of


WORKERS = 2  # transform threads (torch and numpy release the GIL in their kernels)


def _stream(model, shards, *, plan: LockPlan, key: RunKey, bound: float, inverse: bool) -> None:
    """Read the tensors the lock rewrites in file order; once a block is complete, transform it on a worker
    thread and write it at its place. (LockedShards copied the other tensors without reading them.)
    At most WORKERS blocks are transformed at once; results are handed to the writer as they finish."""
    from concurrent.futures import ThreadPoolExecutor

    unit_of = _unit_of(plan)
    residual_names = plan.residual.names() if plan.residual is not None else set()
    # The norm gains (d floats each) come first: every reader of the stream needs its norm's.
    norms = {name: shards.read(name) for name in plan.residual.norm_names()} if plan.residual is not None else {}
    residual = residual_applier(plan, norms, key=key, inverse=inverse, path=model.root)

    def transform(kind: str, block: str, held: dict[str, Any]) -> dict[str, Any]:
        if residual is not None and inverse:  # unlock undoes the steps in reverse order
            held = {n: residual(n, t) if n in residual_names else t for n, t in held.items()}
        if kind == "mlp":
            held = lock_mlp_block(plan.mlp, block, held, key=key, inverse=inverse, path=model.root)
        elif kind == "attention":
            held = lock_block(plan, block, held, key=key, bound=bound, inverse=inverse, path=model.root)
        if residual is not None and not inverse:
            held = {n: residual(n, t) if n in residual_names else t for n, t in held.items()}
        return held

    def hand_over(future) -> None:
        for locked_name, tensor in future.result().items():
            shards.put(locked_name, tensor)

    waiting: dict[tuple[str, str], dict[str, Any]] = {}
    running: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="guard-lock-transform") as workers:
        for name in model.tensors:  # shard, then offset order: sequential reads
            unit = unit_of.get(name)
            if unit is None:
                continue
            held = waiting.setdefault(unit, {})
            held[name] = norms[name] if name in norms else shards.read(name)
            kind, block = unit
            if kind == "mlp" and len(held) < len(plan.mlp.blocks[block]):
                continue
            if kind == "attention" and len(held) < len(plan.blocks[block]):
                continue
            del waiting[unit]
            running.append(workers.submit(transform, kind, block, held))
            while running and (len(running) > WORKERS or running[0].done()):
                hand_over(running.popleft())
        while running:
            hand_over(running.popleft())

