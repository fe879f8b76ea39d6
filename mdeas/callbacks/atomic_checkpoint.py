"""Checkpoints that are always complete on disk (`mdeas.atomic.atomic_write`) and load as data only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from mdeas.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """`save_checkpoint` through `atomic_write`: a checkpoint on disk is always complete; `load_checkpoint` reads
    it as data only (`weights_only=True`).

    Lightning's own save (`lightning_fabric.utilities.cloud_io._atomic_save`) is not enough: fsspec writes the bytes
    to a temporary file in TMPDIR and moves it onto the checkpoint path, which is a rename only when TMPDIR is on
    the checkpoint's filesystem. Otherwise (e.g. /tmp on tmpfs, runs on a disk or a network share) the move
    truncates the previous checkpoint and copies into it, so a kill or a full disk during the copy leaves no
    complete checkpoint (tests/test_checkpoint_io.py). Nor does it fsync before the rename.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        save = super().save_checkpoint
        atomic_write(path, lambda tmp: save(checkpoint, tmp, storage_options))

    def load_checkpoint(self, path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
        """Lightning's load (resume, and validate or test from a checkpoint) with `weights_only=True` whatever the
        caller or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD asks: tensors and plain data load, anything that would import a
        class or function is refused (`pickle.UnpicklingError`). `mdeas.train` refuses such a `ckpt_path` before,
        in one line (`mdeas.inference.read_checkpoint`)."""
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
