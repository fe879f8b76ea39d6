"""What a training run that fails leaves behind: its error in the run's log file (the console shows it already)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)


def log_to_files(message: str, traceback: bool = False) -> None:
    """Write `message` as an ERROR record (with the exception being handled when `traceback`) to the root logger's
    log files only (a run's train.log): the console shows the error already."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, sys.exc_info() if traceback else None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
