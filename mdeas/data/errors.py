"""The one error type for bad data: its message names the file and the entry."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset problem, reported as one line: `<zip>: <entry>: <what is wrong>`."""

    def __init__(self, source: str, entry: str | None, problem: str) -> None:
        self.source, self.entry, self.problem = str(source), entry, problem
        where = f"{source}: {entry}" if entry else str(source)
        super().__init__(f"{where}: {problem}")
