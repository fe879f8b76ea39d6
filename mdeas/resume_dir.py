"""`${resume_dir:CKPT,DEFAULT}` (Hydra's run folder in conf/train.yaml): a resumed run continues in its own folder.

Resuming from `<run>/checkpoints/<name>.ckpt` (what mdeas.train writes) runs in `<run>`, so its log, TensorBoard
curves and checkpoints stay together and, with a val metric as the checkpoint monitor, `best.ckpt` keeps competing
with the epochs before the interruption:
Lightning restores a ModelCheckpoint's best scores only into the folder they were saved from, and elsewhere the
first epoch after a resume would become `best.ckpt` whatever its score. Any other checkpoint, or none, runs in
DEFAULT.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from mdeas.config_values import file_name


def run_folder(ckpt_path: str | Path) -> Path | None:
    """The run folder of a checkpoint in a run's `checkpoints/` folder (what mdeas.train writes), else None."""
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def resume_dir(ckpt_path: str | None, default: str) -> str:
    """The run folder of `ckpt_path` when it is a file in a run's `checkpoints/` folder, else `default` (a path
    that names no file makes no folder of its own: the run fails in `default`, its error in that folder's log)."""
    exists = file_name(ckpt_path, "ckpt_path") and Path(ckpt_path).is_file()
    run = run_folder(ckpt_path) if exists else None
    return default if run is None else str(run)


def register() -> None:
    """Make `${resume_dir:...}` known to OmegaConf (idempotent); before Hydra composes the train config."""
    if not OmegaConf.has_resolver("resume_dir"):
        OmegaConf.register_new_resolver("resume_dir", resume_dir)
