"""Sharded safetensors: `*.safetensors.index.json` consistency with the shards on disk.

Every tensor named in the weight map must be in exactly the shard it names, every tensor of every
listed shard must be named, every listed shard must exist, and no top-level safetensors file may be
left out of the index. Shard names pass the same path-safety check as every other name.
"""

from __future__ import annotations

from collections.abc import Mapping

from guard.artifacts.paths import check_relname
from guard.artifacts.safetensors_header import SafetensorsHeader
from guard.errors import InputError

INDEX_SUFFIX = ".safetensors.index.json"
MAIN_INDEX = "model" + INDEX_SUFFIX


def parse_index(value: object, *, where: str) -> dict[str, str]:
    """The weight map (tensor name -> shard relpath) of a parsed index file."""
    if not isinstance(value, dict):
        raise InputError("index must be a JSON object", path=where, rule="index-schema")
    weight_map = value.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError("index lacks a non-empty 'weight_map' object", path=where, rule="index-schema")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InputError("index 'metadata' must be an object", path=where, rule="index-schema")
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise InputError(f"weight_map[{name[:200]!r}] is not a file name", path=where, rule="index-schema")
        check_relname(shard, where=where)
    return weight_map


def check_index(weight_map: Mapping[str, str], *, where: str, headers: Mapping[str, SafetensorsHeader],
                present: set[str], refused: set[str], top_level_safetensors: set[str]) -> list[str]:
    """Cross-check the weight map against the shards; returns the shard list in name order.

    `headers`: parsed headers of safetensors files; `present`: every file in the directory;
    `refused`: files already refused by a finding (a pickle named like a shard is reported as such).
    """
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if shard not in present:
            raise InputError(f"index lists shard {shard!r}, which does not exist", path=where, rule="index-missing-shard")
        if shard not in headers and shard not in refused:
            raise InputError(f"index lists {shard!r}, which is not a safetensors file", path=where,
                             rule="index-shard-not-safetensors")
    unlisted = sorted(top_level_safetensors - set(shards))
    if unlisted:
        raise InputError(f"safetensors file {unlisted[0]!r} is not listed in the index", path=where,
                         rule="index-unlisted-shard")
    shard_names = {shard: {t.name for t in headers[shard].tensors} for shard in shards if shard in headers}
    for shard, names in shard_names.items():
        for name in sorted(names):
            listed = weight_map.get(name)
            if listed != shard:
                detail = "is not in the weight map" if listed is None else f"is mapped to {listed!r}"
                raise InputError(f"tensor {name[:200]!r} in shard {shard!r} {detail}", path=where,
                                 rule="index-tensor-unlisted")
    for name, shard in weight_map.items():
        if shard in shard_names and name not in shard_names[shard]:
            raise InputError(f"tensor {name[:200]!r} is not in its shard {shard!r}", path=where, rule="index-tensor-missing")
    return shards
