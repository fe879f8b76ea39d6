"""Progressive resizing: one Hydra multirun job per stage, each starting from the previous stage's best weights.

A chain lives in one sweep directory with a sub-directory per stage (`stage0`, `stage1`, ...). Stage k > 0
initialises its model from `stage{k-1}/checkpoints/best.ckpt` (weights only: a fresh optimiser, schedule and
epoch count). Re-running the chain in the same sweep directory resumes it: finished stages (metrics.json present)
are skipped, an interrupted stage continues from the newer of its interrupted.ckpt and last.ckpt. The chain picks
each stage's checkpoint itself: a `ckpt_path=` given for the chain is refused (it would hold for every stage).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, open_dict

from mdeas.config_values import whole_number

log = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A chain that cannot go on (e.g. the previous stage left no checkpoint); the message says what to do."""


def stage_dir(output_dir: str | Path, stage: int) -> Path:
    """The run directory of `stage` in the chain that `output_dir` (any stage's directory) belongs to."""
    return Path(output_dir).parent / f"stage{stage}"


STAGE_KEYS = {"image_size", "batch_size", "max_epochs"}


def apply_stage(cfg: DictConfig) -> DictConfig:
    """Set the size, batch size, epochs and starting weights of stage `cfg.stage` from `cfg.progressive.stages`.

    Returns `cfg` changed in place; `cfg.ckpt_path` is set when this stage was interrupted before.
    """
    stages = cfg.progressive.stages
    k = whole_number(cfg.stage, "stage")
    if not 0 <= k < len(stages):
        raise StageError(f"stage={k} is out of range: progressive.stages has {len(stages)} stages")
    if cfg.get("ckpt_path"):
        raise StageError(
            f"ckpt_path={cfg.ckpt_path}: a progressive chain resumes each stage from its own checkpoints; "
            f"run the chain again without ckpt_path, in its sweep directory ({Path(cfg.paths.output_dir).parent})"
        )
    spec = stages[k]
    unknown = sorted(set(spec) - STAGE_KEYS)
    missing = sorted({"image_size", "max_epochs"} - set(spec))
    if unknown or missing:
        said = "; ".join([f"unknown keys {unknown}"] * bool(unknown) + [f"missing {missing}"] * bool(missing))
        raise StageError(f"progressive.stages[{k}]: {said}; a stage takes {', '.join(sorted(STAGE_KEYS))}")
    out = Path(cfg.paths.output_dir)
    with open_dict(cfg):
        cfg.data.image_size = spec.image_size
        cfg.data.batch_size = spec.get("batch_size", cfg.data.batch_size)
        cfg.trainer.max_epochs = spec.max_epochs
        if k > 0:
            previous = stage_dir(out, k - 1) / "checkpoints" / "best.ckpt"
            if not previous.is_file():
                raise StageError(
                    f"stage {k} starts from stage {k - 1}'s best weights, but {previous} does not exist: "
                    f"run the chain from stage 0 (python -m mdeas.train -m experiment=progressive)"
                )
            if not (stage_dir(out, k - 1) / "metrics.json").is_file():
                raise StageError(
                    f"stage {k} starts from stage {k - 1}'s best weights, but stage {k - 1} has not finished "
                    f"({stage_dir(out, k - 1)} has no metrics.json): run the chain again in the same sweep "
                    f"directory to finish it"
                )
            cfg.init_from = str(previous)
        saved = [out / "checkpoints" / name for name in ("last.ckpt", "interrupted.ckpt")]
        saved = [path for path in saved if path.is_file()]
        if saved and not (out / "metrics.json").is_file():
            cfg.ckpt_path = str(max(saved, key=lambda path: path.stat().st_mtime_ns))
    stored = (cfg.data.get("synth") or {}).get("image_size")
    if not cfg.data.get("path") and isinstance(stored, int) and stored < spec.image_size:
        log.warning("stage %d trains at %d px on a generated set stored at %d px (enlarged): set "
                    "data.synth.image_size=%d", k, spec.image_size, stored, spec.image_size)  # fmt: skip
    if not (out / "metrics.json").is_file():  # a finished stage is only reported as such (`finished`)
        log.info("stage %d: %d px, batch %d, %d epochs, from %s", k, spec.image_size, cfg.data.batch_size,
                 spec.max_epochs, cfg.get("init_from") or "scratch")  # fmt: skip
    return cfg


def finished(cfg: DictConfig) -> dict | None:
    """The stored results of this stage when it already finished (the chain is being resumed), else None."""
    done = Path(cfg.paths.output_dir) / "metrics.json"
    if not done.is_file():
        return None
    log.info("stage %d already finished: %s", cfg.stage, done)
    return json.loads(done.read_text())
