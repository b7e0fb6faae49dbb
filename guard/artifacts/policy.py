"""ReadPolicy: the limits and switches of strict model-directory reading (frozen, keyword-only)."""

from __future__ import annotations

import dataclasses

from guard.artifacts.dtypes import DEFAULT_ALLOWED_DTYPES

MiB = 1 << 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadPolicy:
    # safetensors header limits (the official loader allows 100 MB; nothing legitimate needs that).
    max_header_bytes: int = 16 * MiB
    # A header larger than this fraction of its file is refused, once it exceeds `header_ratio_min_bytes`
    # (tiny files are mostly header by nature).
    max_header_ratio: float = 0.5
    header_ratio_min_bytes: int = 1 * MiB
    max_metadata_bytes: int = 64 * 1024  # keys + values of a safetensors `__metadata__` map (HF writes ~20 bytes)
    allowed_dtypes: frozenset[str] = DEFAULT_ALLOWED_DTYPES
    scan_nan_inf: bool = False  # read every tensor and refuse NaN/Inf (and BOOL bytes other than 0/1)
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()  # fnmatch patterns of relative paths to skip (e.g. "model.sig")
    max_json_bytes: int = 256 * MiB  # JSON files larger than this are refused unparsed (json-too-large)
    max_pickle_scan_bytes: int = 64 * MiB  # how much the opcode walk reads; a pickle still valid there is refused
    max_files: int = 100_000
    # (rule id, severity) pairs overriding the severity the sniffer assigns; rule "*" applies to every
    # refusing rule not named. The safe-merge policy (guard.policy) passes these: severity is policy.
    severities: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.max_header_bytes <= 0 or not (0 < self.max_header_ratio <= 1):
            raise ValueError("max_header_bytes must be > 0 and max_header_ratio in (0, 1]")
        object.__setattr__(self, "allowed_dtypes", frozenset(self.allowed_dtypes))
        object.__setattr__(self, "ignore_paths", tuple(self.ignore_paths))
        object.__setattr__(self, "severities", tuple((str(r), str(s)) for r, s in self.severities))
