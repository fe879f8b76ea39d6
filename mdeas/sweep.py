"""Comparing runs: the optimised metric and the sweep summary (the HPARAMS tab: `mdeas.callbacks.hparams`).

``optimized_metric`` (train.yaml) names what ``python -m mdeas.train`` returns to a sweeper (always maximised):
one val metric, a list of them (summed) or ``{metric: weight}`` (weighted sum; a negative weight for a metric to
lower, e.g. ``{val/mask/iou: 1, val/depth/rmse: -0.1}``).

A job of a sweep that fails does not end the sweep (a one-line error for bad data, a bad value or a non-finite loss;
any other error by its type and message, its traceback in the job's log): its error is kept in ``<job>/error.txt``
and it returns None (Optuna marks the trial failed); the summary lists it, and the sweep exits with status 1 naming
the failed jobs once every job has run. Where every job failed, the sweeper itself raises afterwards (Optuna has no
best trial); :func:`end_failed_sweep` then gives the same summary and line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from mdeas.atomic import atomic_write
from mdeas.failure import fail, failure_message
from mdeas.plain import plain
from mdeas.report import cell, markdown_table

log = logging.getLogger(__name__)
FAILED = "error.txt"


def metric_weights(spec: str | list | Mapping | ListConfig | DictConfig) -> dict[str, float]:
    """``{metric: weight}`` of an ``optimized_metric`` spec (a name, a list of names, or a mapping)."""
    spec = plain(spec)
    if isinstance(spec, str):
        return {spec: 1.0}
    if isinstance(spec, Mapping):
        return {str(k): float(v) for k, v in spec.items()}
    if isinstance(spec, list) and spec and all(isinstance(k, str) for k in spec):
        return dict.fromkeys(spec, 1.0)
    raise ValueError(f"optimized_metric must be a metric name, a list of names or {{name: weight}}, got {spec!r}")


def objective(val: Mapping[str, float], spec: str | list | Mapping | ListConfig | DictConfig) -> float:
    """The weighted sum of the val metrics named by ``spec`` (see the module docstring)."""
    weights = metric_weights(spec)
    missing = [k for k in weights if k not in val]
    if missing:
        raise ValueError(f"optimized_metric: {', '.join(missing)} not among the val metrics: {', '.join(sorted(val))}")
    return float(sum(w * val[k] for k, w in weights.items()))


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir`` (``.hydra/overrides.yaml`` marks one), in job order:
    ``job``, ``overrides`` (list), the metrics named by its ``optimized_metric``, ``objective`` (None without a
    ``metrics.json``: the job did not finish) and, for a job that failed, ``error``."""
    rows = []
    jobs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    for job in sorted(jobs, key=lambda p: (len(p.name), p.name)):  # 0, 1, ..., 10 for Hydra's job numbers
        weights = metric_weights(OmegaConf.load(job / ".hydra" / "config.yaml").optimized_metric)
        row: dict[str, Any] = {"job": job.name, "overrides": list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))}
        metrics_file = job / "metrics.json"
        val = json.loads(metrics_file.read_text())["val"] if metrics_file.is_file() else {}
        row |= {k: val.get(k) for k in weights}
        row["objective"] = objective(val, weights) if val else None
        if (job / FAILED).is_file():
            row["error"] = (job / FAILED).read_text().strip()
        rows.append(row)
    return rows


def write_summary(
    sweep_dir: Path, rows: list[dict[str, Any]], name: str = "sweep_summary", direction: str = "maximize"
) -> tuple[Path, Path]:
    """Write ``rows`` as ``<name>.csv`` and ``<name>.md`` in ``sweep_dir``; the ``overrides`` column keeps what
    differs between jobs (the markdown lists the overrides shared by all jobs above its table and names the best
    job below it: the highest objective, or the lowest for ``direction="minimize"``, as the sweeper was told)."""
    common = set.intersection(*(set(row["overrides"]) for row in rows)) if len(rows) > 1 else set()
    table = [{**row, "overrides": " ".join(o for o in row["overrides"] if o not in common)} for row in rows]
    columns = list(dict.fromkeys(k for row in table for k in row))
    csv_path, md_path = sweep_dir / f"{name}.csv", sweep_dir / f"{name}.md"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write(csv_path, lambda tmp: tmp.write_text(text.getvalue()))
    shared = " ".join(o for o in rows[0]["overrides"] if o in common) if rows else ""
    lines = [f"all jobs: `{shared}`", ""] if shared else []
    lines += markdown_table(columns, [[cell(row.get(c)) for c in columns] for row in table])
    done = [row for row in table if row["objective"] is not None and math.isfinite(row["objective"])]
    if done:
        best = (min if direction == "minimize" else max)(done, key=lambda row: row["objective"])
        lines += ["", f"best: job {best['job']} ({best['objective']:.4f}): `{best['overrides']}`"]
    atomic_write(md_path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return csv_path, md_path


def scores_of_two_kinds(sweep_dir: Path) -> list[str]:
    """The finished jobs under `sweep_dir` whose `val/score` is the mask IoU alone (no depth metric: the model learns
    no depth, or its data holds none) where other jobs' is (IoU + δ1) / 2, in job order; [] when all agree."""
    alone, both = [], []
    for path in sweep_dir.glob("*/metrics.json"):
        val = json.loads(path.read_text()).get("val") or {}
        if "val/score" in val:
            depth = any(k in val for k in ("val/depth/delta1", "val/depth/delta1_ssi"))
            (both if depth else alone).append(path.parent.name)
    return sorted(alone, key=lambda name: (len(name), name)) if alone and both else []


class SweepSummary(Callback):
    """Hydra callback: after a multirun (any sweeper), summarise its jobs (:func:`job_rows`) into
    ``sweep_summary.csv`` and ``sweep_summary.md`` in the sweep directory."""

    running: ClassVar[tuple[SweepSummary, DictConfig] | None] = None  # the multirun under way, and its config

    def __init__(self, name: str = "sweep_summary") -> None:
        self.name = name

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SweepSummary.running = (self, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        SweepSummary.running = None
        self.summarise(config)

    def summarise(self, config: DictConfig) -> None:
        """Write the summary of the multirun of `config`; exit with status 1 naming the failed jobs, if any."""
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = job_rows(sweep_dir)
        direction = OmegaConf.select(config, "hydra.sweeper.direction", default="maximize")  # Optuna's, if any
        csv_path, md_path = write_summary(sweep_dir, rows, self.name, str(direction))
        log.info("sweep summary: %s, %s", csv_path, md_path)
        ranked_by = OmegaConf.select(config, "optimized_metric", default=None)
        alone = scores_of_two_kinds(sweep_dir) if ranked_by and "val/score" in metric_weights(ranked_by) else []
        if alone:
            log.warning("jobs %s score the mask IoU alone (they learn no depth) beside jobs scoring (IoU + δ1) / 2: "
                        "the two do not compare; rank them by optimized_metric=val/mask/iou",
                        ", ".join(alone))  # fmt: skip
        failed = [row for row in rows if row.get("error")]
        if failed:
            said = "; ".join(f"job {row['job']}: {row['error']}" for row in failed)
            fail(f"{len(failed)} of {len(rows)} jobs failed ({md_path}): {said}")


NO_BEST_TRIAL = "No trials are completed yet"  # how Optuna's study says it has no best trial


def end_failed_sweep(error: BaseException) -> None:
    """After the sweeper raised `error`: where it is Optuna's want of a best trial and every job of the multirun
    under way failed with its own error, write the summary and exit with its one line. Returns otherwise (another
    error, no multirun, or a job that did not fail), so that the caller re-raises `error`."""
    if SweepSummary.running is None or not (isinstance(error, ValueError) and str(error).startswith(NO_BEST_TRIAL)):
        return
    summary, config = SweepSummary.running
    rows = job_rows(Path(config.hydra.sweep.dir))
    if rows and all(row.get("error") for row in rows):
        SweepSummary.running = None
        summary.summarise(config)


def record_failure(job_dir: Path, message: str) -> None:
    """Keep a sweep job's one-line error `message` in `<job_dir>/error.txt` and log it. The job returns None: Optuna
    then marks the trial failed and goes on (a NaN objective would end the whole study)."""
    message = failure_message(message)
    atomic_write(job_dir / FAILED, lambda tmp: tmp.write_text(message + "\n"))
    log.error("job failed: %s", message)


def clear_failure(job_dir: Path) -> None:
    """Forget an earlier attempt's error (a sweep re-run in the same folder)."""
    (job_dir / FAILED).unlink(missing_ok=True)
