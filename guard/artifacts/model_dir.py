"""ModelDir: a model directory validated as a whole before any tensor byte is read.

`open_model_dir` walks the directory safely, sniffs every file by content, strictly parses every
safetensors header, checks the shard index and config.json. Malformed input raises InputError
(exit 2); readable-but-refusable content (pickles, unknown binaries, remote code) becomes findings.
Tensor data is read later, on demand, from the validated offsets (see tensors.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from guard.artifacts import index as index_mod
from guard.artifacts.dtypes import is_parameter_dtype
from guard.artifacts.config import CONFIG_NAME, ModelConfig, parse_config
from guard.artifacts.findings import Finding, refused, regrade
from guard.artifacts.paths import list_model_files
from guard.artifacts.policy import ReadPolicy
from guard.artifacts.safetensors_header import SafetensorsHeader, TensorInfo
from guard.artifacts.sniff import sniff_file
from guard.errors import InputError


@dataclasses.dataclass(frozen=True)
class FileReport:
    relpath: str
    size: int
    kind: str
    identity: tuple[int, ...] = ()  # what validation read (guard.artifacts.identity): reads later must match it


@dataclasses.dataclass
class ModelDir:
    root: pathlib.Path
    policy: ReadPolicy
    files: list[FileReport]
    findings: list[Finding]
    tensors: dict[str, TensorInfo]  # main model tensors, in shard then offset order
    shards: list[str]
    index: str | None = None
    model_config: ModelConfig | None = None
    headers: dict[str, SafetensorsHeader] = dataclasses.field(default_factory=dict)  # every safetensors file
    # Set by guard.signing.open_verified_model: the VerificationResult of the bytes this ModelDir reads.
    verification: object | None = None

    @property
    def config(self) -> dict | None:
        return None if self.model_config is None else self.model_config.raw

    @property
    def model_type(self) -> str | None:
        return None if self.model_config is None else self.model_config.model_type

    @property
    def architectures(self) -> list[str]:
        return [] if self.model_config is None else list(self.model_config.architectures)

    @property
    def architecture(self) -> str | None:
        return None if self.model_config is None else self.model_config.architecture

    def parameter_count(self) -> int:
        """Elements of the stored floating-point tensors (a tied weight is stored, and counted, once).

        Integer and BOOL tensors are buffers (e.g. BERT's `position_ids`), never trainable parameters,
        so they are left out; `element_count()` includes them.
        """
        return sum(t.numel for t in self.tensors.values() if is_parameter_dtype(t.dtype))

    def element_count(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def dtype_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel
        return dict(sorted(counts.items()))

    def refused(self) -> list[Finding]:
        return refused(self.findings)

    def file(self, relpath: str) -> FileReport:
        return next(f for f in self.files if f.relpath == relpath)

    @contextlib.contextmanager
    def open_file(self, relpath: str) -> Iterator[BinaryIO]:
        """One of this model's files, read-only, refused (file-changed) unless it is the file validation read,
        at open and again when the caller is done. Read files through this, never through `root / relpath`."""
        from guard.artifacts.identity import check_unchanged, open_validated

        identity = self.file(relpath).identity
        fd = open_validated(self.root, relpath, identity, follow_symlinks=self.policy.allow_symlinks)
        with os.fdopen(fd, "rb") as handle:
            yield handle
            check_unchanged(handle.fileno(), identity, self.root / relpath)

    def iter_tensors(self, *, device="cpu", names: Iterable[str] | None = None) -> Iterator[tuple[str, "torch.Tensor"]]:  # noqa: F821
        """(name, tensor) shard by shard in file order; one tensor's bytes in memory at a time."""
        from guard.artifacts.tensors import iter_tensors

        yield from iter_tensors(self, device=device, names=names)

    def get_tensor(self, name: str, *, device="cpu") -> "torch.Tensor":  # noqa: F821
        if name not in self.tensors:
            raise KeyError(name)
        for _, tensor in self.iter_tensors(device=device, names=[name]):
            return tensor
        raise KeyError(name)


def open_model_dir(path: str | os.PathLike, *, policy: ReadPolicy | None = None) -> ModelDir:
    policy = policy or ReadPolicy()
    root = pathlib.Path(path)
    relpaths = list_model_files(root, allow_symlinks=policy.allow_symlinks, ignore=policy.ignore_paths)
    if len(relpaths) > policy.max_files:
        raise InputError(f"{len(relpaths)} files, over the cap of {policy.max_files}", path=root, rule="dir-too-many-files")
    files: list[FileReport] = []
    findings: list[Finding] = []
    headers: dict[str, SafetensorsHeader] = {}
    json_values: dict[str, object] = {}
    for rel in relpaths:
        keep = rel == CONFIG_NAME or (rel.endswith(index_mod.INDEX_SUFFIX) and "/" not in rel)
        sniffed = sniff_file(root, rel, policy=policy, keep_json=keep)
        files.append(FileReport(relpath=rel, size=sniffed.size, kind=sniffed.kind, identity=sniffed.identity))
        findings.extend(sniffed.findings)
        if sniffed.header is not None:
            headers[rel] = sniffed.header
        if keep:
            if any(f.rule == "json-too-large" for f in sniffed.findings):
                continue  # refused unparsed; the refusal stands
            if sniffed.kind == "json":
                json_values[rel] = sniffed.json_value
            else:
                _raise_unparsed_json(root, rel, sniffed)
    model_config = None
    if CONFIG_NAME in json_values:
        model_config = parse_config(json_values[CONFIG_NAME], where=str(root / CONFIG_NAME))
    else:
        findings.append(Finding("info", "config-missing", CONFIG_NAME, "no config.json: architecture unknown"))
    index_rel, shards = _main_shards(root, files, headers, json_values, findings)
    tensors = _tensor_table(root, shards, headers)
    model = ModelDir(root=root, policy=policy, files=files, findings=findings, tensors=tensors, shards=shards,
                     index=index_rel, model_config=model_config, headers=headers)
    if policy.scan_nan_inf:
        from guard.artifacts.tensors import scan_values

        findings.extend(scan_values(model))
    model.findings = regrade(findings, policy.severities)
    return model


def _raise_unparsed_json(root: pathlib.Path, rel: str, sniffed) -> None:
    """config.json and index files steer everything else, so they must be clean JSON objects."""
    reasons = [f for f in sniffed.findings if f.rule.startswith("json-")]
    if reasons:
        raise InputError(reasons[0].message, path=root / rel, rule=reasons[0].rule)
    if sniffed.kind in ("text", "empty"):
        raise InputError(f"{sniffed.kind} where JSON is required", path=root / rel, rule="json-malformed")
    # A pickle or binary named config.json: its refusal finding already stands; nothing to parse.


def _main_shards(root: pathlib.Path, files: list[FileReport], headers: dict[str, SafetensorsHeader],
                 json_values: dict[str, object], findings: list[Finding]) -> tuple[str | None, list[str]]:
    top_level = {f.relpath for f in files if "/" not in f.relpath and f.kind == "safetensors"}
    indexes = sorted(rel for rel in json_values if rel.endswith(index_mod.INDEX_SUFFIX))
    if not indexes:
        if not top_level:
            findings.append(Finding("info", "no-safetensors", ".", "no top-level safetensors weights"))
        return None, sorted(top_level)
    if index_mod.MAIN_INDEX in indexes:
        index_rel = index_mod.MAIN_INDEX
    elif len(indexes) == 1:
        index_rel = indexes[0]
    else:
        raise InputError(f"several shard indexes and no {index_mod.MAIN_INDEX}: {indexes}", path=root,
                         rule="index-ambiguous")
    where = str(root / index_rel)
    weight_map = index_mod.parse_index(json_values[index_rel], where=where)
    refused_paths = {f.path for f in findings if f.severity == "refuse"}
    shards = index_mod.check_index(weight_map, where=where, headers=headers, present={f.relpath for f in files},
                                   refused=refused_paths, top_level_safetensors=top_level)
    return index_rel, [s for s in shards if s in headers]


def _tensor_table(root: pathlib.Path, shards: list[str], headers: dict[str, SafetensorsHeader]) -> dict[str, TensorInfo]:
    table: dict[str, TensorInfo] = {}
    for shard in shards:
        for t in headers[shard].tensors:
            if t.name in table:
                raise InputError(f"tensor {t.name[:200]!r} is in both {table[t.name].shard!r} and {shard!r}",
                                 path=root / shard, rule="tensor-duplicate")
            table[t.name] = dataclasses.replace(t, shard=shard)
    return table
