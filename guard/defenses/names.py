"""Checkpoint tensor names <-> a live transformers module's parameter names.

transformers 5 renames some architectures' tensors on load (the vision zoo's ViT is stored as
`vit.encoder.layer.N.attention.attention.query.weight` and held as `vit.layers.N.attention.q_proj.weight`),
and writes the legacy names back on save. The defenses run the module (torch.func.functional_call, by
module names) but the merge engine streams checkpoint names, so they need the map between the two. It is
taken from transformers itself: every parameter of a copy of the module is filled with its own index, the
copy is saved with `save_pretrained`, and each saved tensor's value names its parameter. No guess about
naming schemes; tied parameters (saved once) map from the one name that was written.
"""

from __future__ import annotations

import copy
import pathlib
import tempfile

import torch


def checkpoint_names(module: torch.nn.Module) -> dict[str, str]:
    """checkpoint tensor name -> module parameter name, for every parameter `save_pretrained` writes."""
    from safetensors import safe_open

    clone = copy.deepcopy(module).float()
    names = [name for name, _ in clone.named_parameters()]
    if len(names) >= 1 << 24:
        raise ValueError("too many parameters to tell apart by a float32 index")
    with torch.no_grad():
        for index, (_, param) in enumerate(clone.named_parameters()):
            param.fill_(float(index + 1))
    out: dict[str, str] = {}
    from transformers.utils import logging as hf_logging

    with tempfile.TemporaryDirectory(prefix="guard-names-") as tmp:
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            clone.save_pretrained(tmp, safe_serialization=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        for path in sorted(pathlib.Path(tmp).glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as handle:  # our own file, just written
                for key in handle.keys():
                    tensor = handle.get_tensor(key)
                    if not tensor.is_floating_point() or tensor.numel() == 0:
                        continue
                    value = float(tensor.reshape(-1)[0])
                    index = int(value) - 1
                    if value == index + 1 and 0 <= index < len(names) and bool((tensor == value).all()):
                        out[key] = names[index]
    return out
