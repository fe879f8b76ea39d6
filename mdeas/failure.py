"""How a program of mdeas ends on failure: one line `error: <what>` on stderr and exit status 1."""

from __future__ import annotations

from typing import NoReturn

PREFIX = "error: "


def fail(message: str) -> NoReturn:
    """End the program with `error: <message>` on stderr and exit status 1 (raises SystemExit)."""
    raise SystemExit(PREFIX + message)


def failure_message(text: str) -> str:
    """`text` (a SystemExit's code, as a string) without the `error: ` that `fail` put before it."""
    return text.removeprefix(PREFIX)
