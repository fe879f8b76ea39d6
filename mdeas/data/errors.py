"""The error for bad input data: one line naming the zip (or file), the entry and what is wrong."""

from __future__ import annotations

import re

_WORKER_PREFIX = "DataError: "
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LONGEST_ENTRY = 300  # characters of an entry name shown (a zip may name an entry with 65,535)


def printable(text: str, limit: int | None = None) -> str:
    """`text` on one line: control characters as `\\xNN`, cut to `limit` characters (with `…`) when given."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text[:limit] + "…" if limit is not None and len(text) > limit + 1 else text


class DataError(ValueError):
    """A dataset problem, reported as one line: `<zip>: <entry>: <what is wrong>`.

    `category` groups problems in reports (`missing`, `decode`, `size`, `mask`, `read`, `layout`, ...). The
    one-argument form `DataError(message)` is how PyTorch re-raises an error caught in a DataLoader worker (the
    message then carries the worker's traceback): only the error's own last line is kept, so the re-raised error
    still reads `<zip>: <entry>: <what is wrong>`. Names and problem are shown on one line whatever they hold
    (`printable`).
    """

    def __init__(
        self, source: object, entry: str | None = None, problem: str | None = None, category: str = "data"
    ) -> None:
        if problem is None and entry is None:  # a whole message, maybe a worker traceback ending in our line
            last = ([line for line in str(source).splitlines() if line.strip()] or [""])[-1]
            source = last.split(_WORKER_PREFIX, 1)[-1]
            message = source
        else:
            source, problem = printable(str(source)), printable(str(problem))
            entry = printable(entry, _LONGEST_ENTRY) if entry else entry
            message = f"{source}: {entry}: {problem}" if entry else f"{source}: {problem}"
        self.source, self.entry, self.problem, self.category = str(source), entry, problem, category
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple]:
        return type(self), (self.source, self.entry, self.problem, self.category)
