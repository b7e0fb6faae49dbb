"""`guard lock-keygen OUT`: create a MergeLock key (32 random bytes, file mode 0600, never overwritten)."""

from __future__ import annotations

import pathlib

import click


@click.command("lock-keygen")
@click.argument("out", type=click.Path(dir_okay=False, path_type=pathlib.Path))
def lock_keygen(out: pathlib.Path) -> int:
    """Create a new MergeLock key at OUT. Keep it secret: it undoes the protection."""
    from guard.lock.keys import generate_lock_key, write_lock_key

    key = generate_lock_key()
    write_lock_key(key, out)
    click.echo(f"lock key written to {out} (fingerprint {key.fingerprint}, never published); keep it secret")
    return 0
