"""Tamper corpus for signed models: every way an attacker may change a model or its signature.

Each `Tamper` mutates a *copy* of a signed model directory (and/or its signature file) in place and
names the reason a correct verifier must give. Signature-level tampers that need a valid signature over
a bad statement (wrong predicate, a name escaping the root) re-sign with the attacker-controlled key
passed in, which must be the key the verifier trusts: they test the statement checks, not the crypto.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Tamper:
    name: str
    apply: Callable[[pathlib.Path, pathlib.Path], None]  # (model_dir, signature_path)
    reason: str  # a substring the verifier's message must contain


def _largest_file(model_dir: pathlib.Path, signature: pathlib.Path) -> pathlib.Path:
    files = [p for p in model_dir.rglob("*") if p.is_file() and p.resolve() != signature.resolve()]
    return max(files, key=lambda p: (p.stat().st_size, str(p)))


def flip_byte(path: pathlib.Path, offset: int | None = None) -> None:
    """XOR one byte with 0x01 (the middle byte by default)."""
    size = path.stat().st_size
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def add_file(model_dir: pathlib.Path, name: str = "extra.json", content: bytes = b"{}") -> None:
    target = model_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def swap_contents(a: pathlib.Path, b: pathlib.Path) -> None:
    tmp = a.with_name(a.name + ".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def truncate_file(path: pathlib.Path, *, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble_bundle(path: pathlib.Path) -> None:
    """Flip one base64 character inside the DSSE signature: still JSON, no longer a valid signature."""
    doc = json.loads(path.read_text())
    sig = doc["dsseEnvelope"]["signatures"][0]["sig"]
    raw = bytearray(base64.b64decode(sig))
    raw[len(raw) // 2] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(doc))


def not_json_bundle(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[0:1] = b"#"
    path.write_bytes(bytes(data))


def payload_swap(path: pathlib.Path) -> None:
    """Change the statement but keep the old signature (a resource digest edited in the payload)."""
    doc = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    resource = statement["predicate"]["resources"][0]
    resource["digest"] = "00" * (len(resource["digest"]) // 2)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(doc))


def resign_statement(path: pathlib.Path, private_key, edit: Callable[[dict], None]) -> None:
    """Edit the signed statement and re-sign it with `private_key` (key-method bundles)."""
    from guard.signing.method_key import KeySigner

    doc = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    edit(statement)
    path.write_text(KeySigner(private_key=private_key).sign(json.dumps(statement).encode()))


def _wrong_predicate(statement: dict) -> None:
    statement["predicateType"] = "https://example.com/not-a-model-signature/v1"


def _escape_root(statement: dict) -> None:
    import hashlib

    resources = statement["predicate"]["resources"]
    resources.append({"name": "../outside.bin", "algorithm": resources[0]["algorithm"], "digest": "00" * 32})
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    statement["subject"][0]["digest"]["sha256"] = root


def _empty_statement(statement: dict) -> None:
    import hashlib

    statement["predicate"]["resources"] = []
    statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"").hexdigest()


def model_tampers() -> list[Tamper]:
    """Changes to the model's files; a correct verifier reports each as a file difference."""

    def flip(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        flip_byte(_largest_file(model_dir, sig))

    def flip_first(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        flip_byte(_largest_file(model_dir, sig), 0)

    def flip_last(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        path = _largest_file(model_dir, sig)
        flip_byte(path, path.stat().st_size - 1)

    def added(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        add_file(model_dir, "extra.json")

    def added_nested(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        add_file(model_dir, "sub/dir/extra.bin", b"\x00" * 16)

    def added_empty(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        add_file(model_dir, "empty.txt", b"")

    def removed(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        _largest_file(model_dir, sig).unlink()

    def renamed(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        path = _largest_file(model_dir, sig)
        path.rename(path.with_name(path.name + ".renamed"))

    def swapped(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.resolve() != sig.resolve())
        swap_contents(files[0], files[1])

    def truncated(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        truncate_file(_largest_file(model_dir, sig))

    def appended(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        with open(_largest_file(model_dir, sig), "ab") as handle:
            handle.write(b"\x00")

    def symlink(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        path = _largest_file(model_dir, sig)
        moved = model_dir.parent / (model_dir.name + "-elsewhere.bin")
        os.replace(path, moved)
        path.symlink_to(moved)

    return [
        Tamper("flip-byte-middle", flip, "digest mismatch"),
        Tamper("flip-byte-first", flip_first, "digest mismatch"),
        Tamper("flip-byte-last", flip_last, "digest mismatch"),
        Tamper("add-file", added, "extra file extra.json"),
        Tamper("add-nested-file", added_nested, "extra file sub/dir/extra.bin"),
        Tamper("add-empty-file", added_empty, "extra file empty.txt"),
        Tamper("remove-file", removed, "missing file"),
        Tamper("rename-file", renamed, ".renamed"),
        Tamper("swap-files", swapped, "digest mismatch"),
        Tamper("truncate-file", truncated, "digest mismatch"),
        Tamper("append-byte", appended, "digest mismatch"),
        Tamper("replace-with-symlink", symlink, "symlink"),
    ]


def signature_tampers(private_key=None) -> list[Tamper]:
    """Changes to the signature file. Re-signing tampers are included when the trusted key is given."""

    def truncated(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        truncate_file(sig)

    def emptied(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        sig.write_bytes(b"")

    def garbled(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        garble_bundle(sig)

    def not_json(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        not_json_bundle(sig)

    def payload(model_dir: pathlib.Path, sig: pathlib.Path) -> None:
        payload_swap(sig)

    tampers = [
        Tamper("truncate-bundle", truncated, "bundle unreadable"),
        Tamper("empty-bundle", emptied, "bundle unreadable"),
        Tamper("garble-signature", garbled, "does not verify"),
        Tamper("garble-json", not_json, "bundle unreadable"),
        Tamper("edit-payload-keep-signature", payload, "does not verify"),
    ]
    if private_key is not None:
        tampers += [
            Tamper("wrong-predicate", lambda m, s: resign_statement(s, private_key, _wrong_predicate),
                   "wrong predicate type"),
            Tamper("name-escapes-root", lambda m, s: resign_statement(s, private_key, _escape_root),
                   "escapes the model root"),
            Tamper("empty-statement", lambda m, s: resign_statement(s, private_key, _empty_statement),
                   "covers no files"),
        ]
    return tampers
