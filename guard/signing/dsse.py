"""DSSE v1: the pre-authentication encoding (PAE) that is actually signed, and the envelope."""

from __future__ import annotations

import base64
import dataclasses

from guard.signing.statement import PAYLOAD_TYPE


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """`DSSEv1 <len(type)> <type> <len(payload)> <payload>` (lengths in bytes, ASCII decimal)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def pae_legacy(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """The encoding model_signing 0.2 signed by mistake (a bytes repr inside a str). Accepted only for
    legacy v0.2 statements, so it cannot be used to smuggle a current-format statement."""
    return f"DSSEV1 {len(payload_type)} {payload_type} {len(payload)} {payload}".encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]

    def to_json(self) -> dict:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [{"sig": base64.b64encode(sig).decode("ascii"), "keyid": ""} for sig in self.signatures],
        }
