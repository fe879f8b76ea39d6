"""The error for bad input data: one line naming the zip (or file), the entry and what is wrong."""

from __future__ import annotations

_WORKER_PREFIX = "DataError: "


class DataError(ValueError):
    """A dataset problem, reported as one line: `<zip>: <entry>: <what is wrong>`.

    `category` groups problems in reports (`missing`, `decode`, `size`, `mask`, `read`, `layout`, ...). The
    one-argument form `DataError(message)` is how PyTorch re-raises an error caught in a DataLoader worker (the
    message then carries the worker's traceback): only the error's own last line is kept, so the re-raised error
    still reads `<zip>: <entry>: <what is wrong>`.
    """

    def __init__(self, source: object, entry: str | None = None, problem: str | None = None, category: str = "data"):
        if problem is None and entry is None:  # a whole message, maybe a worker traceback ending in our line
            last = ([line for line in str(source).splitlines() if line.strip()] or [""])[-1]
            source = last.split(_WORKER_PREFIX, 1)[-1]
            message = source
        else:
            message = f"{source}: {entry}: {problem}" if entry else f"{source}: {problem}"
        self.source, self.entry, self.problem, self.category = str(source), entry, problem, category
        super().__init__(message)

    def __reduce__(self):
        return type(self), (self.source, self.entry, self.problem, self.category)
