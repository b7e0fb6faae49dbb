"""The streaming merge engine: tensor by tensor from validated model directories to positional output.

For each tensor name (in sorted order, so that random methods draw from one generator in the same
order every run, and in mergekit's order): read that tensor from every input at its validated offsets,
cast to the math dtype, move to the device, run the method (and the stages' tensor hooks), move back,
cast to the output dtype and queue it for writing at its place in the output shard. Inputs are
released as soon as the method has used them. The next tensor group is read while the current one
merges when both fit in the memory the largest group needs anyway, so peak memory stays about
(inputs + 2) x the largest tensor plus what the method allocates.

This is the API other stages build on (DAM, EnchTable): `MergeJob` (inputs, method, parameters, dtypes,
device, hooks), `run_merge(job, out_dir)` and `merged_tensors(job)` (the same merge as an iterator of
merged tensors by name, writing nothing). A `TensorHook` sees every tensor group before the method
runs (it may change per-model parameters or inputs, e.g. DAM's masks/coefficients) and every merged
tensor after (it may change it, e.g. EnchTable adding a safety vector).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from guard.artifacts.dtypes import FLOAT_DTYPES, safetensors_dtype, torch_dtype
from guard.artifacts.tensors import open_shard, read_tensor
from guard.errors import InputError
from guard.merge.config import MergeConfig, Setting, method_of, resolve
from guard.merge.method import MergeMethod, Parameters, TensorGroup


class TensorHook:
    """A stage's per-tensor transform of the merge. Both methods are optional."""

    def prepare(self, group: TensorGroup) -> None:
        """Before the method: may change `group.models`, `group.model_params`, `group.params`."""

    def finish(self, name: str, merged: torch.Tensor, *, group: TensorGroup) -> torch.Tensor:
        """After the method: returns the tensor to write (math dtype, on the device)."""
        return merged


@dataclasses.dataclass
class MergeJob:
    method: MergeMethod
    base: Any  # guard.artifacts.ModelDir | None
    models: Sequence[Any]  # ModelDirs of the non-base inputs, config order
    model_settings: Sequence[Mapping[str, Setting]]  # per-model parameters (raw: scalars or filter lists)
    settings: Mapping[str, Setting]  # global parameters
    labels: Sequence[str] = ()  # how the config names each model (messages)
    dtype: str | None = None  # math dtype; None: each tensor's stored dtype
    out_dtype: str | None = None  # None: dtype, else the stored dtype
    device: str = "cpu"
    seed: int = 0
    magnitude_mask: str = "threshold"
    hooks: Sequence[TensorHook] = ()
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)  # safetensors __metadata__

    @classmethod
    def from_config(cls, config: MergeConfig, *, base, models: Sequence[Any], device: str,
                    hooks: Sequence[TensorHook] = ()) -> MergeJob:
        experts = config.experts()
        return cls(method=method_of(config), base=base, models=list(models),
                   model_settings=[m.parameters for m in experts], settings=config.parameters,
                   labels=[m.model for m in experts], dtype=config.dtype, out_dtype=config.out_dtype,
                   device=device, seed=config.guard.seed, magnitude_mask=config.guard.magnitude_mask,
                   hooks=list(hooks))

    @property
    def layout(self):
        """The input whose shards and support files the output mirrors."""
        return self.base if self.base is not None else self.models[0]

    def inputs(self) -> list:
        return ([self.base] if self.base is not None else []) + list(self.models)


@dataclasses.dataclass(frozen=True)
class MergeSummary:
    method: str
    device: str
    tensors: int
    merged_tensors: int  # floating-point tensors the method ran on (others are copied from the layout model)
    input_bytes: int
    output_bytes: int
    seconds: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def resolve_device(device: str) -> str:
    """cpu, cuda or auto (cuda when torch has a GPU); cuda without one is bad input."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested, but this torch has no usable CUDA device (use cpu or auto)",
                         rule="merge-device")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r} (cpu, cuda or auto)", rule="merge-device")
    return device


def check_inputs(job: MergeJob) -> None:
    """Every input has exactly the layout model's tensor names and shapes."""
    layout = job.layout
    for label, model in zip(_labels(job), job.inputs()):
        if model is layout:
            continue
        missing = sorted(set(layout.tensors) - set(model.tensors))
        extra = sorted(set(model.tensors) - set(layout.tensors))
        if missing or extra:
            which, name = ("lacks", missing[0]) if missing else ("has an extra tensor", extra[0])
            raise InputError(f"input {label} {which} {name!r} ({len(missing)} missing, {len(extra)} extra against "
                             f"the layout model)", path=model.root, rule="merge-tensor-mismatch")
        for name, info in layout.tensors.items():
            if model.tensors[name].shape != info.shape:
                raise InputError(f"input {label}: tensor {name!r} has shape {model.tensors[name].shape}, the layout "
                                 f"model has {info.shape}", path=model.root, rule="merge-shape")


def _labels(job: MergeJob) -> list[str]:
    labels = list(job.labels) or [str(m.root) for m in job.models]
    return (["base"] if job.base is not None else []) + labels


def output_dtypes(job: MergeJob) -> dict[str, str]:
    out = job.out_dtype or job.dtype
    result = {}
    for name, info in job.layout.tensors.items():
        floating = info.dtype in FLOAT_DTYPES and info.dtype != "C64"
        result[name] = safetensors_dtype(getattr(torch, out)) if (out and floating) else info.dtype
    return result


class _Readers:
    """One descriptor per (input, shard), each checked against what validation saw."""

    def __init__(self, models: Sequence[Any]):
        self.models = list(models)
        self._fds: dict[tuple[int, str], int] = {}

    def read(self, index: int, name: str) -> torch.Tensor:
        model = self.models[index]
        info = model.tensors[name]
        key = (index, info.shard)
        if key not in self._fds:
            self._fds[key] = open_shard(model, info.shard)
        return read_tensor(self._fds[key], info, model.root / info.shard)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class _ParameterCache:
    """Resolves a method's parameter models for a tensor name (validated once per distinct value set)."""

    def __init__(self, job: MergeJob):
        self.job = job
        self._cache: dict[tuple, Parameters] = {}
        self.global_names, self.model_names = job.method.parameter_names()

    def _build(self, model: type[Parameters], values: dict, where: str) -> Parameters:
        key = (model, tuple(sorted(values.items())))
        if key not in self._cache:
            import pydantic

            try:
                self._cache[key] = model.model_validate(values)
            except pydantic.ValidationError as exc:
                error = exc.errors()[0]
                raise InputError(f"{where}: {'.'.join(map(str, error['loc']))}: {error['msg']}",
                                 rule="merge-params") from None
        return self._cache[key]

    def globals_for(self, name: str) -> Parameters:
        values = {}
        for key in self.global_names:
            if key in self.job.settings and (value := resolve(self.job.settings[key], name)) is not None:
                values[key] = value
        return self._build(self.job.method.params, values, f"tensor {name!r}")

    def models_for(self, name: str) -> list[Parameters]:
        result = []
        for label, own in zip(_labels(self.job)[-len(self.job.models):], self.job.model_settings):
            values = {}
            for key in self.model_names:
                setting = own.get(key, self.job.settings.get(key))
                if setting is not None and (value := resolve(setting, name)) is not None:
                    values[key] = value
            result.append(self._build(self.job.method.model_params, values, f"model {label}, tensor {name!r}"))
        return result


@dataclasses.dataclass(frozen=True)
class MergedTensor:
    """One tensor of the merge as the engine streams it."""

    name: str
    merged: torch.Tensor  # floating: the math dtype on the device, after the hooks; else the layout model's
    base: torch.Tensor | None  # the base's tensor as read (CPU, stored dtype); None without a base
    floating: bool  # False: an integer/bool buffer, copied from the layout model unchanged
    nbytes: int  # bytes read from all inputs for this tensor


def merged_tensors(job: MergeJob) -> Iterator[MergedTensor]:
    """The job's merge, tensor by tensor in sorted name order, without writing anything: what `run_merge`
    writes, and what a stage needs to see the whole merge before the streaming merge (EnchTable's global
    norm). Same parameters, hooks and random draws as `run_merge`; one group in memory at a time (plus the
    next one while both fit in what the largest group needs). Close the iterator (or exhaust it) to
    release the inputs' descriptors."""
    check_inputs(job)
    device = resolve_device(job.device)
    layout = job.layout
    inputs = job.inputs()
    names = sorted(layout.tensors)
    group_bytes = {n: sum(m.tensors[n].nbytes for m in inputs) for n in names}
    budget = max(group_bytes.values(), default=0)
    generator = torch.Generator(device=device).manual_seed(job.seed) if job.method.random else None
    parameters = _ParameterCache(job)
    readers = _Readers(inputs)
    has_base = job.base is not None
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-merge-read")
    # One thread for the math: the methods work chunk by chunk in cache, where torch's thread pool costs
    # more than it gains (and spins when the machine is shared); reads and writes run beside it.
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        read = lambda n: [readers.read(i, n) for i in range(len(inputs))]  # noqa: E731
        pending = prefetch.submit(read, names[0]) if names else None
        for position, name in enumerate(names):
            tensors = pending.result()
            nxt = names[position + 1] if position + 1 < len(names) else None
            # Read ahead only while two groups fit in what the largest group needs anyway.
            pending = None
            if nxt is not None and group_bytes[name] + group_bytes[nxt] <= budget:
                pending = prefetch.submit(read, nxt)
            info = layout.tensors[name]
            base = tensors[0] if has_base else None
            floating = info.dtype in FLOAT_DTYPES and info.dtype != "C64"
            if floating:
                merged = _merge_one(job, name, tensors, has_base, device, generator, parameters)
            else:
                merged = tensors[0]  # integer/bool buffers: the layout model's, unchanged
            del tensors
            yield MergedTensor(name=name, merged=merged, base=base, floating=floating, nbytes=group_bytes[name])
            del merged, base
            if pending is None and nxt is not None:
                pending = prefetch.submit(read, nxt)
    finally:
        torch.set_num_threads(threads)
        prefetch.shutdown(wait=True)
        readers.close()


def run_merge(job: MergeJob, out_dir: str | os.PathLike, *,
              progress: Callable[[int, int, str], None] | None = None) -> MergeSummary:
    """Merge into `out_dir` (created; the caller stages and renames it). Returns what was done."""
    import contextlib
    import pathlib

    from guard.merge.output import MergedShards

    started = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    check_inputs(job)
    device = resolve_device(job.device)
    layout = job.layout
    inputs = job.inputs()
    total = sum(m.tensors[n].nbytes for n in layout.tensors for m in inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_support_files(layout, out_dir, dtype=job.out_dtype or job.dtype)
    largest = max((info.numel * 4 for info in layout.tensors.values()), default=0)
    merged_count = done = 0
    with (MergedShards(layout, out_dir, dtypes=output_dtypes(job), metadata=job.metadata,
                       max_pending_bytes=max(largest, 64 << 20)) as shards,
          contextlib.closing(merged_tensors(job)) as stream):
        for item in stream:
            shards.put(item.name, item.merged.to(device="cpu", dtype=torch_dtype(shards.dtypes[item.name])))
            merged_count += item.floating
            done += item.nbytes
            name = item.name
            del item  # the merged tensor is queued for writing; drop this reference to it
            if progress is not None:
                progress(done, total, name)
        shards.finish()
        output_bytes = shards.total_bytes
    return MergeSummary(method=job.method.name, device=device, tensors=len(layout.tensors),
                        merged_tensors=merged_count, input_bytes=total, output_bytes=output_bytes,
                        seconds=time.perf_counter() - started)


def _merge_one(job: MergeJob, name: str, tensors: list, has_base: bool, device: str, generator,
               parameters: _ParameterCache) -> torch.Tensor:
    math = getattr(torch, job.dtype) if job.dtype else None
    cast = lambda t: t.to(device=device, dtype=math or t.dtype, non_blocking=False)  # noqa: E731
    base = cast(tensors[0]) if has_base else None
    models = [cast(t) for t in tensors[1 if has_base else 0:]]
    if base is not None:
        models = [m.to(base.dtype) for m in models]
    tensors.clear()
    group = TensorGroup(name=name, base=base, models=models, model_params=parameters.models_for(name),
                        params=parameters.globals_for(name), generator=generator,
                        magnitude_mask=job.magnitude_mask)
    for hook in job.hooks:
        hook.prepare(group)
    merged = job.method.merge(group)
    for hook in job.hooks:
        merged = hook.finish(name, merged, group=group)
    return merged


# Files of an input that describe that input, not the merge: never carried into the output.
NOT_COPIED = frozenset({"model.sig", "guard_lock.json", "guard_provenance.json"})
_SUPPORT_KINDS = frozenset({"json", "text", "sentencepiece", "image", "empty"})


def copy_support_files(layout, out_dir, *, dtype: str | None) -> list[str]:
    """The layout model's config, tokenizer and other plain files (not weights, indexes, refused files,
    code, or files that describe that input such as its signature). config.json gets the output dtype."""
    import json
    import shutil

    from guard.artifacts.index import INDEX_SUFFIX

    refused = {f.path for f in layout.refused()}
    copied = []
    for f in layout.files:
        rel = f.relpath
        if (f.kind not in _SUPPORT_KINDS or rel in refused or rel.endswith(INDEX_SUFFIX) or rel in NOT_COPIED
                or rel.endswith(".sig")):
            continue
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == "config.json" and dtype is not None and layout.config is not None:
            config = dict(layout.config)
            for key in ("torch_dtype", "dtype"):
                if key in config:
                    config[key] = dtype
            target.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        else:
            with layout.open_file(rel) as source, open(target, "xb") as copy:  # the validated file, not the path
                shutil.copyfileobj(source, copy)
        copied.append(rel)
    return copied
