"""One training process per run folder: a second one (a run resumed while it still trains, two sweeps given one
folder) stops at once with one line, instead of mixing its checkpoints, logs and metrics with the first's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pytorch_lightning.utilities.rank_zero import rank_zero_only

from mdeas.failure import fail
from mdeas.file_lock import Held, exclusive

LOCK = ".lock"  # in the run folder, holding the training process's pid


def first_process() -> bool:
    """Whether this is the process that owns the run folder: global rank 0 of the first node, not a process that
    Lightning, torchrun or SLURM started beside it for another device or node (they share the folder)."""
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


@contextmanager
def sole_trainer(folder: Path) -> Iterator[None]:
    """Hold the run folder's lock while the block trains (in the first process only); when another process holds
    it, end the program with `error: <folder>: ...` naming that process, before this one trains or writes a
    checkpoint there."""
    with ExitStack() as stack:
        if first_process():
            try:
                stack.enter_context(exclusive(folder / LOCK, wait=False))
            except Held as held:
                fail(
                    f"{folder}: another training process ({held.holder}) is using this run folder; wait for it to "
                    "end, or give this run a folder of its own (hydra.run.dir=..., or hydra.sweep.dir=... with -m)"
                )
        yield
