"""The exceptions every stage raises; the CLI turns them into one line and an exit code.

Exit codes are part of guard's interface:
  0  success / verified / clean
  1  a security decision said no (verification failed, findings the policy refuses)
  2  the input could not be read or is malformed (never a traceback)
  3  an internal error in guard itself
"""

from __future__ import annotations

import pathlib


class GuardError(Exception):
    """Base class. `str()` is the one-line message the user sees."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | pathlib.Path | None = None, rule: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.rule = rule
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.path:
            parts.append(self.path)
        if self.rule:
            parts.append(f"[{self.rule}]")
        parts.append(self.message)
        return " ".join(parts).replace("\n", " ")


class InputError(GuardError):
    """Unreadable or malformed input: a bad file, a bad flag value, a missing path."""

    exit_code = 2


class VerificationError(GuardError):
    """A signature, digest or file-set check failed."""

    exit_code = 1


class PolicyRefusal(GuardError):
    """The input was read fine, but a security policy refuses it."""

    exit_code = 1
