"""Exclusive locks on files (POSIX flock), for work that two processes must not do at once: training in one run
folder, generating one dataset, building one cache. A lock goes with its process, however that ends (a killed
process leaves no stale lock). Where flock does not exist (Windows) nothing is locked."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

log = logging.getLogger(__name__)


class Held(Exception):
    """The lock is held by another process; `holder` is what it wrote in the file (its pid), or ""."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path, self.holder = path, holder


def lock(handle: IO, wait: bool = True) -> bool:
    """Take the exclusive lock of an open file, waiting for it or not; False when another process holds it (never
    without flock, nor where the file system refuses locks: a warning says so)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as error:  # a file system without locks (some network mounts): the work goes on unlocked
        log.warning("%s: cannot be locked (%s); going on without the lock", handle.name, error.strerror)
    return True


@contextmanager
def exclusive(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of the file `path` (made if missing, with this process's pid in it) while the block
    runs. wait=False: Held at once when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        if not lock(handle, wait):
            handle.seek(0)
            holder = handle.read().strip()
            raise Held(path, f"pid {holder}" if holder else "")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
