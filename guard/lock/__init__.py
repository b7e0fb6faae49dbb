"""MergeLock: function-preserving, merge-breaking per-head attention transforms (docs/lock.md).

Modules: `keys` (lock key, fingerprint, HKDF seeds), `sampling` (well-conditioned and RoPE-commuting
matrices), `layouts/` (one adapter per attention layout family), `plan` (which tensors form which block),
`transform` (the per-group math), `state` (in-memory protect/unlock), `protect` (streaming driver with
self-check and signing), `output` (locked shards mirroring the input's, untouched tensors copied by the
kernel), `selfcheck` + `streamed` (the probe run module by module, parameters read just in time),
`detect` (flag protected models). Importing this package is cheap.
"""
