"""Lightning's CSVLogger, fitted to resumed runs: a run resumed in its own folder (`mdeas.resume_dir`) keeps the rows
its earlier part logged, where Lightning's deletes `metrics.csv` as soon as the folder holds one.

Train sets `resume_step` to the checkpoint's global step: the rows logged before it (steps below it; Lightning logs
a batch's values, and the epoch-end values after it, at the step before its optimiser step) are kept, and the rows
logged after the checkpoint was written, which the resumed run logs again, are dropped.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from mdeas.atomic import atomic_write


def earlier_rows(path: str, before_step: int) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of the CSV file `path` whose `step` is below `before_step` (none without a file)."""
    if not os.path.isfile(path):
        return [], []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        rows = [row for row in reader if row.get("step") and int(float(row["step"])) < before_step]
        return list(reader.fieldnames or []), rows


class _ResumedWriter(ExperimentWriter):
    """Keeps the rows of `metrics.csv` below `resume_step`, rewritten in place atomically, and appends after them."""

    def __init__(self, log_dir: str, resume_step: int) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        header, rows = earlier_rows(self.metrics_file_path, self.resume_step)
        if not rows:
            super()._check_log_dir_exists()  # Lightning's: the file is deleted
            return

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as file:
                out = csv.DictWriter(file, fieldnames=header)
                out.writeheader()
                out.writerows(rows)

        atomic_write(self.metrics_file_path, write)
        self.metrics_keys = header  # later rows append under the same header (or rewrite it with new columns)


class CSVLogger(LightningCSVLogger):
    """Same arguments as Lightning's (`save_dir`, `name`, `version`, ...); see the module docstring."""

    resume_step: int | None = None  # a resumed run's checkpoint step (train sets it); None: a fresh file

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume_step is not None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumedWriter(self.log_dir, self.resume_step)
        return super().experiment
