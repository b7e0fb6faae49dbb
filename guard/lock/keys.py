"""The MergeLock secret: a 32-byte lock key, bound to one protect run by a random nonce.

Every transform is derived from the key (HKDF-SHA256, one derivation per block, key/value group and
branch), so the publisher keeps 32 bytes instead of d_h^2 floats per head, and `unlock` regenerates
exactly the matrices `protect` used. Since format v2 each protect run draws a fresh 32-byte nonce,
stored in guard_lock.json, that is the HKDF salt of every derivation (a `RunKey`); the key id written
next to the model is HMAC(key, "guard-lock-id|" nonce) and guard_lock.json carries a MAC under a key
derived from the lock key and the nonce. Two models protected with one key therefore share no
key-derived value: their ids are unrelated, and unlocking one (which reveals its transforms to whoever
holds the result) says nothing about the other's transforms. Format v1 outputs (one fixed salt, the
key-wide id HMAC(key, "guard-lock-id")) are read through `LockKey.legacy_v1()`.
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
NONCE_BYTES = 32
_SALT_V1 = b"guard-mergelock-v1"  # format v1: one salt for every model
_MAC_INFO = b"guard-lock-metadata-mac"  # no "|": never equal to a transform's info (block|group|branch)


@dataclasses.dataclass(frozen=True, repr=False)
class LockKey:
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise InputError(f"a lock key is {KEY_BYTES} bytes, got {len(self.secret)}", rule="lock-key-format")

    def __repr__(self) -> str:  # never print the secret
        return f"LockKey(fingerprint={self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        """A key-wide fingerprint for the owner's bookkeeping (`guard lock-keygen` prints it): 16 bytes of
        HMAC-SHA256(key, "guard-lock-id"), hex. Format v1 published it as the key id; v2 never writes it."""
        return hmac.new(self.secret, b"guard-lock-id", hashlib.sha256).hexdigest()[:32]

    @property
    def key_id(self) -> str:
        """The fingerprint, under its pre-v2 name (callers that name the key they used, e.g. in provenance)."""
        return self.fingerprint

    def for_run(self, nonce: bytes) -> RunKey:
        if len(nonce) != NONCE_BYTES:
            raise InputError(f"a lock nonce is {NONCE_BYTES} bytes, got {len(nonce)}", rule="lock-metadata")
        return RunKey(self.secret, nonce)

    def fresh_run(self) -> RunKey:
        """The key bound to a new random nonce: what one protect run uses."""
        return self.for_run(secrets.token_bytes(NONCE_BYTES))

    def legacy_v1(self) -> RunKey:
        """The derivations of format v1 (fixed salt, key-wide id), to unlock outputs written before v2."""
        return RunKey(self.secret, None)


@dataclasses.dataclass(frozen=True, repr=False)
class RunKey:
    """The lock key bound to one protect run's nonce (None: format v1). Every transform seed, the
    published key id and the lock file's MAC derive from it."""

    secret: bytes
    nonce: bytes | None

    def __repr__(self) -> str:
        return f"RunKey(id={self.key_id})"

    @property
    def version(self) -> int:
        return 1 if self.nonce is None else 2

    @property
    def key_id(self) -> str:
        """Published next to the model: 16 bytes of HMAC-SHA256(key, "guard-lock-id|" nonce), hex."""
        if self.nonce is None:
            return LockKey(self.secret).fingerprint
        return hmac.new(self.secret, b"guard-lock-id|" + self.nonce, hashlib.sha256).hexdigest()[:32]

    def _hkdf(self, info: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        salt = _SALT_V1 if self.nonce is None else self.nonce
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(self.secret)

    def derive_seed(self, *, block: str, group: int, branch: str) -> bytes:
        """32 bytes of HKDF-SHA256(key, salt=nonce, info=block|group|branch): the seed of one transform."""
        return self._hkdf(f"{block}|{group}|{branch}".encode())

    def mac(self, payload: bytes) -> str:
        """HMAC-SHA256 of `payload` under HKDF(key, salt=nonce, info="guard-lock-metadata-mac"), hex."""
        if self.nonce is None:
            raise ValueError("format v1 lock files carry no MAC")
        return hmac.new(self._hkdf(_MAC_INFO), payload, hashlib.sha256).hexdigest()

    def matches(self, key_id: str) -> bool:
        return hmac.compare_digest(self.key_id, key_id)


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
