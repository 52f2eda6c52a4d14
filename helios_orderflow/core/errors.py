"""Error types. Everything Helios raises on bad input or bad use derives from HeliosError.

The CLI prints a HeliosError's message (no traceback) and exits with status 2; any other exception is
a bug in Helios.
"""

from __future__ import annotations


class HeliosError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class InputError(HeliosError):
    """Bad input data: names the source and, where known, the line."""

    def __init__(self, source: str, line: int | None, problem: str, hint: str = "") -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = f"{source}:{line}" if line is not None else source
        msg = f"{where}: {problem}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class ConfigError(HeliosError):
    """A bad setting: names the key, the value and what is allowed."""


def describe(exc: BaseException) -> str:
    """``"Type: message"`` of an exception on one line, at most 300 characters of message (for health
    records and log lines)."""
    text = str(exc).strip().replace("\n", " ")
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
