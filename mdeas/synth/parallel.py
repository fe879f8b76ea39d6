"""Ordered parallel map for dataset writers: results come back in input order, so the output does not depend on
the number of worker processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

Unit = TypeVar("Unit")
Result = TypeVar("Result")


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(fn: Callable[[Unit], Result], units: Sequence[Unit], workers: int) -> Iterator[Result]:
    """fn(unit) for each unit, in order: in this process for workers = 1 (or a single unit), else in a pool of
    `workers` spawned processes (fn must be a module-level function; each process keeps its own caches). The
    workers ignore Ctrl-C: this process handles it and ends the pool."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(units) <= 1:
        yield from map(fn, units)
        return
    with multiprocessing.get_context("spawn").Pool(min(workers, len(units)), _ignore_interrupts) as pool:
        yield from pool.imap(fn, units)


def _ignore_interrupts() -> None:
    """Pool initializer: a worker leaves Ctrl-C (SIGINT, sent to the whole process group) to the parent, and a
    SIGTERM (the parent's pool ends its workers so) ends it at once, whatever handler the parent set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
