"""The `guard` command line.

Subcommands are imported only when invoked, so `guard --help` and `guard verify` never pay for
torch. Every subcommand lives in its own module here and registers in COMMANDS below.
Errors: a GuardError becomes one line on stderr plus its exit code; anything else is an
internal error (exit 3), still one line unless GUARD_DEBUG=1.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from guard import __version__

# name -> "module:attribute"; the attribute is a click.Command.
COMMANDS: dict[str, str] = {
    "demo": "guard.cli.demo:demo",
    "inspect": "guard.cli.inspect:inspect_cmd",
    "keygen": "guard.cli.keygen:keygen",
    "sign": "guard.cli.sign:sign",
    "verify": "guard.cli.verify:verify",
    "protect": "guard.cli.protect:protect",
    "unlock": "guard.cli.unlock:unlock",
    "lock-keygen": "guard.cli.lock_keygen:lock_keygen",
    "scan": "guard.cli.scan:scan_cmd",
    "safe-merge": "guard.cli.safe_merge:safe_merge",
    "serve": "guard.cli.serve:serve",
    "safety-vector": "guard.cli.safety_vector:safety_vector",
}

HELP: dict[str, str] = {
    "demo": "Run the end-to-end demo on tiny generated models.",
    "inspect": "Report a model directory's architecture, tensors, files and findings.",
    "keygen": "Create an EC signing key pair.",
    "sign": "Sign a model directory or file (OMS format).",
    "verify": "Verify a model directory or file against its signature.",
    "protect": "Apply MergeLock to a model and sign the result.",
    "unlock": "Undo MergeLock with the lock key.",
    "lock-keygen": "Create a MergeLock key (32 random bytes, mode 0600).",
    "scan": "Probe a model for backdoors, safety stripping and re-parameterisation.",
    "safe-merge": "Check every input against a policy, merge, and sign the result with provenance.",
    "serve": "Run the Hub webhook audit service (webhook, workers, dashboard).",
    "safety-vector": "EnchTable: distil a signed safety vector from an aligned model (safety-vector distill).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from HELP so that `guard --help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP.get(name, "")) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="guard")
def cli() -> None:
    """guard: share and merge fine-tuned models safely.

    Exit codes: 0 ok, 1 a security check said no, 2 unreadable or malformed input, 3 internal error.
    """


def fail(message: str, code: int) -> None:
    click.echo(f"guard: error: {message}", err=True)
    sys.exit(code)


# guard prints its own progress and loads models from local directories only; keep transformers quiet.
_QUIET_ENV = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def main(argv: list[str] | None = None) -> None:
    from guard.errors import GuardError

    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)

    try:
        rv = cli.main(args=argv, prog_name="guard", standalone_mode=False)
    except GuardError as exc:
        fail(exc.one_line(), exc.exit_code)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        # Usage errors are bad input too: exit 2, one line.
        fail(exc.format_message().replace("\n", " "), 2)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("GUARD_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc}".replace("\n", " "), 3)
    sys.exit(rv if isinstance(rv, int) else 0)
