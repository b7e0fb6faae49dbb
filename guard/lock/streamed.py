"""A transformers model whose parameters stay on disk until the module that owns them runs.

The self-check must run the real transformers forward of the original and of the protected model,
but loading either whole costs a model's worth of memory. So the model is built the way
`from_pretrained` builds it (same class, same config, same dtype resolution, same checkpoint-key
renaming and keep-in-fp32 plan), except that parameters are created on the meta device; buffers are
real (rotary `inv_freq` and other non-persistent buffers are computed by the model's own __init__;
persistent buffers stored in the checkpoint are loaded). A forward pre-hook on every module that owns
parameters reads them from the validated safetensors offsets just before its forward, and a forward
hook puts the meta placeholders back right after: peak memory is about the largest module plus the
activations of the probe batch. Tied weights (lm_head and the embeddings) are read once per use.

Anything this cannot map one to one (a checkpoint converter that merges tensors, a parameter with no
stored source) raises NotStreamable; the caller then falls back to a full `from_pretrained` load.
"""

from __future__ import annotations

import contextlib
import os
import weakref

import torch


class NotStreamable(Exception):
    """The model cannot be run module by module; load it whole instead."""


class TensorLoader:
    """Reads single tensors of a validated ModelDir from their validated offsets, and keeps count of how
    many of the tensors it returned are still alive (tracked on the buffers themselves, so a tensor
    still referenced anywhere counts). `read_bytes(name)`, if given, supplies each tensor's bytes instead
    (protect reads the output it is writing, tensor by tensor as each is written)."""

    def __init__(self, model_dir, read_bytes=None):
        self.model = model_dir
        self._read_bytes = read_bytes
        self._fds: dict[str, int] = {}
        self.live_tensors = 0
        self.live_bytes = 0
        self.peak_tensors = 0
        self.peak_bytes = 0
        self.reads = 0

    def read(self, name: str) -> torch.Tensor:
        from guard.artifacts.tensors import as_tensor, open_shard, read_buffer

        info = self.model.tensors[name]
        self.reads += 1
        if self._read_bytes is not None:
            buf = self._read_bytes(name)
        else:
            if info.shard not in self._fds:
                self._fds[info.shard] = open_shard(self.model, info.shard)
            buf = read_buffer(self._fds[info.shard], info, self.model.root / info.shard)
        if info.nbytes:
            self.live_tensors += 1
            self.live_bytes += info.nbytes
            self.peak_tensors = max(self.peak_tensors, self.live_tensors)
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            weakref.finalize(buf, self._released, info.nbytes)  # fires when the last tensor viewing buf is gone
        return as_tensor(buf, info)

    def _released(self, nbytes: int) -> None:
        self.live_tensors -= 1
        self.live_bytes -= nbytes

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter registered inside goes to the meta device (buffers stay real): the
    include_buffers=False mode of accelerate's init_empty_weights."""
    import threading

    original = torch.nn.Module.register_parameter
    owner = threading.get_ident()  # the patch is process-wide; act only for the thread building the model

    def register(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta" and threading.get_ident() == owner:
            kwargs = dict(param.__dict__)
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)
            module._parameters[name].__dict__.update(kwargs)

    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def _resolve_dtype(config, model_dir) -> torch.dtype:
    """What from_pretrained(dtype="auto") picks: the config's dtype, else the first floating tensor's."""
    from guard.artifacts.dtypes import torch_dtype

    dtype = getattr(config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if isinstance(dtype, torch.dtype):
        return dtype
    for info in model_dir.tensors.values():
        candidate = torch_dtype(info.dtype)
        if candidate.is_floating_point:
            return candidate
    return torch.get_default_dtype()


class StreamedModel:
    """Context manager: `with StreamedModel(model_dir, loader) as model: model(**inputs)`."""

    def __init__(self, model_dir, loader: TensorLoader):
        self.model_dir = model_dir
        self.loader = loader
        self._handles: list = []
        self.model: torch.nn.Module | None = None

    def __enter__(self) -> torch.nn.Module:
        self.model = self._build()
        return self.model

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.model = None
        self.loader.close()

    def _build(self) -> torch.nn.Module:
        from transformers.core_model_loading import WeightConverter, WeightRenaming, build_glob_alternation
        from transformers.core_model_loading import rename_source_key
        from transformers.conversion_mapping import get_model_conversion_mapping

        from guard.lock.modeling import model_class, transformers_config

        root = self.model_dir.root
        config = transformers_config(self.model_dir.config, path=root)  # the validated copy, not the file
        cls = model_class(config, path=root)
        dtype = _resolve_dtype(config, self.model_dir)
        with _parameters_on_meta():
            model = cls._from_config(config, dtype=dtype)
        model.eval()

        # Checkpoint key -> model key, exactly as from_pretrained renames them.
        mapping = get_model_conversion_mapping(model)
        renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
        converters = [m for m in mapping if isinstance(m, WeightConverter)]
        meta_state = model.state_dict()
        prefix = getattr(model, "base_model_prefix", None) or None
        source_of: dict[str, str] = {}
        for key in self.model_dir.tensors:
            renamed, converter = rename_source_key(key, renamings, converters, prefix, meta_state)
            if renamed not in meta_state and key in meta_state:
                renamed, converter = rename_source_key(key, [], [], prefix, meta_state)
            if converter is not None:
                raise NotStreamable(f"checkpoint tensor {key!r} needs a weight converter")
            if renamed in meta_state:
                source_of.setdefault(renamed, key)

        dtype_plan = model._get_dtype_plan(dtype)
        plan_search = build_glob_alternation(list(dtype_plan))[:2] if dtype_plan else None

        def target_dtype(name: str, param: torch.Tensor) -> torch.dtype:
            if plan_search is not None:
                alternation, by_group = plan_search
                found = alternation.search(name)
                if found is not None:
                    return dtype_plan[by_group[found.lastgroup]]
            return param.dtype

        tied = dict(getattr(model, "all_tied_weights_keys", None) or {})
        # Persistent buffers stored in the checkpoint are loaded now (they are small and always needed).
        for name, buffer in model.named_buffers():
            if name in source_of:
                module_name, _, attr = name.rpartition(".")
                module = model.get_submodule(module_name)
                module._buffers[attr] = self.loader.read(source_of[name]).to(buffer.dtype).clone()

        for module_name, module in model.named_modules(remove_duplicate=False):
            own = []
            for pname, param in module.named_parameters(recurse=False):
                full = f"{module_name}.{pname}" if module_name else pname
                key = source_of.get(full)
                if key is None and full in tied:
                    key = source_of.get(tied[full])
                if key is None:
                    raise NotStreamable(f"parameter {full!r} has no tensor in the checkpoint")
                dtype = target_dtype(full, param)
                if dtype != param.dtype:  # keep-in-fp32 modules: parents read the child's dtype before calling it
                    param = torch.nn.Parameter(torch.empty(param.shape, dtype=dtype, device="meta"),
                                               requires_grad=False)
                    module._parameters[pname] = param
                own.append((pname, key, dtype, param))
            if own:
                self._hook(module, own)
        return model

    def _hook(self, module: torch.nn.Module, own: list) -> None:
        loader, depth = self.loader, [0]

        def materialise(mod, args):
            depth[0] += 1
            if depth[0] == 1:
                for pname, key, dtype, _ in own:
                    tensor = loader.read(key)
                    mod._parameters[pname] = torch.nn.Parameter(tensor.to(dtype), requires_grad=False)

        def release(mod, args, output):
            depth[0] -= 1
            if depth[0] == 0:
                for pname, _, _, placeholder in own:
                    mod._parameters[pname] = placeholder

        self._handles.append(module.register_forward_pre_hook(materialise))
        self._handles.append(module.register_forward_hook(release, always_call=True))
