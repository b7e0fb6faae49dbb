"""The MergeLock secret: a 32-byte lock key, its public fingerprint, and per-transform seeds.

Every transform is derived from the key (HKDF-SHA256, one derivation per attention block, key/value
group and branch), so the publisher keeps 32 bytes instead of d_h^2 floats per head, and `unlock`
regenerates exactly the matrices `protect` used. The fingerprint, HMAC(key, "guard-lock-id"), is the
only key-derived value that is ever written next to a model; it identifies the key without revealing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import pathlib
import re
import secrets

from guard.errors import InputError

KEY_BYTES = 32
_HEADER = "guard-lock-key v1"
_FILE_RE = re.compile(rf"^{re.escape(_HEADER)} ([0-9a-f]{{{2 * KEY_BYTES}}})\n?$")
_SALT = b"guard-mergelock-v1"


@dataclasses.dataclass(frozen=True, repr=False)
class LockKey:
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise InputError(f"a lock key is {KEY_BYTES} bytes, got {len(self.secret)}", rule="lock-key-format")

    def __repr__(self) -> str:  # never print the secret
        return f"LockKey(id={self.key_id})"

    @property
    def key_id(self) -> str:
        """Public fingerprint: 16 bytes of HMAC-SHA256(key, "guard-lock-id"), hex."""
        return hmac.new(self.secret, b"guard-lock-id", hashlib.sha256).hexdigest()[:32]

    def derive_seed(self, *, block: str, group: int, branch: str) -> bytes:
        """32 bytes of HKDF-SHA256(key, salt, info=block|group|branch): the seed of one transform."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        info = f"{block}|{group}|{branch}".encode()
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(self.secret)


def generate_lock_key() -> LockKey:
    return LockKey(secrets.token_bytes(KEY_BYTES))


def write_lock_key(key: LockKey, path: str | pathlib.Path) -> pathlib.Path:
    """Write `key` to a new file with mode 0600; refuse to overwrite anything."""
    path = pathlib.Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError("refusing to overwrite an existing file", path=path, rule="lock-key-exists") from None
    except OSError as exc:
        raise InputError(f"cannot create the lock key file: {exc.strerror}", path=path, rule="lock-key-write") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{_HEADER} {key.secret.hex()}\n")
    return path


def read_lock_key(path: str | pathlib.Path) -> LockKey:
    """Read a lock key file strictly: exactly the header and 64 lowercase hex digits."""
    path = pathlib.Path(path)
    try:
        if path.stat().st_size > 256:
            raise InputError("not a guard lock key (file too large)", path=path, rule="lock-key-format")
        text = path.read_text(encoding="ascii")
    except InputError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII text"
        raise InputError(f"cannot read the lock key: {reason}", path=path, rule="lock-key-read") from None
    match = _FILE_RE.match(text)
    if match is None:
        raise InputError(f"not a guard lock key (expected '{_HEADER} <64 hex digits>')", path=path,
                         rule="lock-key-format")
    return LockKey(bytes.fromhex(match.group(1)))
