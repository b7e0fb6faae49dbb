"""guard_lock.json: what `protect` did, sealed with a MAC under the lock key, and checked by `unlock`.

The file tells `unlock` how to undo the lock (bound, whether the MLPs and the residual stream were
transformed, the run's nonce). Anyone who can write the model directory can edit it, and every
choice it records keeps the function exact, so a changed value would make unlock write wrong weights
that still pass the self-check. Format v2 therefore carries `mac` = HMAC-SHA256 over the canonical
JSON of every other field, under a key derived from the lock key and the run's nonce (keys.RunKey),
and `unlock` refuses the file before writing anything if it does not match.

Format v1 (before per-run nonces) has no MAC; it is read only on explicit request (`--allow-legacy`).
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

from guard.errors import InputError, PolicyRefusal, VerificationError
from guard.lock.keys import LockKey, RunKey

LOCK_FILE = "guard_lock.json"
FORMAT = "guard-mergelock"
VERSION = 2
_HEX = re.compile(r"^[0-9a-f]+$")


def canonical(metadata: dict[str, Any]) -> bytes:
    """The bytes the MAC covers: every field but `mac`, sorted keys, no whitespace, ASCII."""
    body = {k: v for k, v in metadata.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def seal(metadata: dict[str, Any], run: RunKey) -> dict[str, Any]:
    """`metadata` with the run's nonce, key id and the MAC over all of it."""
    body = {**metadata, "format": FORMAT, "version": VERSION, "nonce": run.nonce.hex(), "key_id": run.key_id}
    body.pop("mac", None)
    return {**body, "mac": run.mac(canonical(body))}


def write_lock_file(directory: pathlib.Path, metadata: dict[str, Any]) -> None:
    (directory / LOCK_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_lock_file(model) -> dict[str, Any]:
    """The parsed lock file of a validated ModelDir, with its shape checked (not yet its MAC: that needs the
    key, see `open_lock`). Read through the ModelDir (the bytes validation saw, the verified copy's when
    the model was verified), never by path."""
    path = model.root / LOCK_FILE
    if LOCK_FILE not in {f.relpath for f in model.files}:
        raise InputError(f"not a MergeLock-protected model (no {LOCK_FILE})", path=model.root,
                         rule="lock-not-protected")
    try:
        with model.open_file(LOCK_FILE) as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable lock metadata: {exc}", path=path, rule="lock-metadata") from None
    version = data.get("version") if isinstance(data, dict) else None
    ok = (isinstance(data, dict) and data.get("format") == FORMAT and version in (1, VERSION)
          and _is_hex(data.get("key_id"), 32) and isinstance(data.get("bound"), (int, float))
          and not isinstance(data.get("bound"), bool) and 1.0 < float(data["bound"]) <= 64.0)
    if ok and version == 1:
        # v1 files written before the MLP hardening have no mlp_permute: those models were attention-only.
        ok = isinstance(data.setdefault("mlp_permute", False), bool)
    elif ok:
        ok = _is_hex(data.get("nonce"), 64) and _is_hex(data.get("mac"), 64) and isinstance(data.get("mlp_permute"), bool)
    if not ok and isinstance(data, dict) and version == VERSION and "mac" not in data:
        raise VerificationError(f"{LOCK_FILE} has no MAC (v{VERSION} lock files are sealed with the lock key); "
                                "it was changed after protect, nothing was written", path=path,
                                rule="lock-metadata-mac")
    if not ok:
        raise InputError(f"lock metadata is not {FORMAT} v1 or v{VERSION} with a key_id, a bound in (1, 64] "
                         "(and, for v2, a nonce and a MAC)", path=path, rule="lock-metadata")
    return data


def open_lock(metadata: dict[str, Any], key: LockKey, *, path: pathlib.Path, allow_legacy: bool = False) -> RunKey:
    """Check the lock file against the key: the right key (key id), and for v2 an intact MAC. Returns the
    RunKey that regenerates the run's transforms. Raises (exit 1) before anything is written."""
    where = path / LOCK_FILE
    if metadata["version"] == 1:
        if not allow_legacy:
            raise PolicyRefusal(f"{LOCK_FILE} is format v1, which carries no MAC (its bound and options cannot be "
                                "authenticated); pass --allow-legacy to unlock it anyway", path=where,
                                rule="lock-legacy-format")
        run = key.legacy_v1()
    else:
        run = key.for_run(bytes.fromhex(metadata["nonce"]))
    if not run.matches(metadata["key_id"]):
        raise VerificationError(f"wrong lock key: it does not derive the model's key id {metadata['key_id']} "
                                f"(or {LOCK_FILE}'s nonce or key id was changed); nothing was written", path=where,
                                rule="lock-wrong-key")
    if run.nonce is not None:
        import hmac

        if not hmac.compare_digest(run.mac(canonical(metadata)), metadata["mac"]):
            raise VerificationError(f"{LOCK_FILE} was changed after protect: its MAC under the lock key does not "
                                    "match, so none of its values is trusted; nothing was written", path=where,
                                    rule="lock-metadata-mac")
    return run


def _is_hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and _HEX.match(value) is not None
