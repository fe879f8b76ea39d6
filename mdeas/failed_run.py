"""What a training run that fails leaves behind: its error in the run's log file, and no folder of Hydra's files
alone (a run that failed before it wrote anything: a bad option, a missing file)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}  # what Hydra writes in <run>/.hydra

log = logging.getLogger(__name__)


def log_to_files(message: str, traceback: bool = False) -> None:
    """Write `message` as an ERROR record (with the exception being handled when `traceback`) to the root logger's
    log files only (a run's train.log): the console shows the error already."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, sys.exc_info() if traceback else None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def holds_only_hydra_files(folder: Path) -> bool:
    """Whether `folder` holds nothing but what Hydra wrote when the run started: `.hydra/` (its three files) and the
    job's log file, `<task>.log`."""
    entries = list(folder.iterdir()) if folder.is_dir() else [None]
    if any(entry is None or entry.is_symlink() for entry in entries):
        return False
    logs = [e for e in entries if e.is_file() and e.suffix == ".log"]
    hydra = [e for e in entries if e.is_dir() and e.name == ".hydra"]
    return (
        len(logs) <= 1
        and len(logs) + len(hydra) == len(entries)
        and all(f.is_file() and f.name in HYDRA_FILES for d in hydra for f in d.iterdir())
    )


def remove_empty_parents(folder: Path) -> None:
    """Remove the folders above `folder` that are empty, up to the working directory (outputs/<date>/ of a run
    that was its date's only one)."""
    cwd = Path.cwd().resolve()
    for parent in folder.resolve().parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            return
        parent.rmdir()


def end_failed_run(folder: Path, message: str, traceback: bool = False) -> None:
    """A single run failed with `message`: remove its run `folder` when it holds only Hydra's files (nothing of the
    run's own: `holds_only_hydra_files`) and the empty folders above it, else add the error to its log file."""
    if holds_only_hydra_files(folder):
        for handler in list(logging.getLogger().handlers):  # let go of <task>.log before it goes
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder.resolve():
                logging.getLogger().removeHandler(handler)
                handler.close()
        shutil.rmtree(folder, ignore_errors=True)
        remove_empty_parents(folder)
    else:
        log_to_files(message, traceback)
