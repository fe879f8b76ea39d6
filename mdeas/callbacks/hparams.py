"""The HPARAMS tab: the hyper-parameters that tell runs apart, beside the best checkpoint's val metrics.

Written as the hparams plugin's own summaries (the experiment, the run's start and end) in the run's event files,
with the columns in a chosen order: TensorBoard shows the hyper-parameters marked as differing first, then the
rest by name, and ticks the first five of each list. The metric values are the best checkpoint's val metrics,
written once, at that checkpoint's step, in a sub-run `best/` under the same tags as the training curves: Time
Series gets no extra cards (one marker per val card, where the kept checkpoint was), and the training run's own
val curves no second point at any step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from google.protobuf import struct_pb2
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

HEADLINE = ("model", "loss", "lr")
"""Shown first (marked as differing; TensorBoard orders them by name), then the others by name."""
METRICS_FIRST = ("val/objective", "val/score", "val/mask/iou", "val/depth/delta1", "val/depth/rmse", "val/loss")
"""The metric columns first shown (when present), in this order; the other val metrics follow by name."""
BEST_RUN = "best"
"""The sub-run holding the best checkpoint's val metrics."""


def _choice(group: str, fallback: str) -> str:
    """The Hydra choice of config `group` (e.g. `resunet` for model), or `fallback` outside a Hydra app."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice is not None:
            return str(choice)
    return fallback


def run_hparams(cfg: DictConfig, module: pl.LightningModule) -> dict[str, Any]:
    """A run's hyper-parameters, those that tell runs apart: `model`, `loss`, `optim`, `sched` (config choices under
    Hydra, else names from the config), `lr` (effective, after an LR range test), `image_size` (px), `batch_size`
    (per device), `epochs`, `seed` and each loss term's weight `loss/<term>`."""
    model = _choice("model", str(cfg.model.get("name", cfg.model.get("_target_", "model"))))
    if "refiner" in cfg.model:
        model += "+refiner"
    terms = list(module.loss.terms)
    sched = cfg.get("sched") or {}
    params: dict[str, Any] = {
        "model": model,
        "loss": _choice("loss", "+".join(term.name for term in terms)),
        "lr": module.hparams.optim.get("lr"),
        "optim": _choice("optim", str(cfg.optim.get("_target_", "")).rsplit(".", 1)[-1]),
        "sched": _choice("sched", str(sched.get("scheduler", {}).get("_target_", "none")).rsplit(".", 1)[-1]),
        "image_size": cfg.data.get("image_size"),
        "batch_size": cfg.data.get("batch_size"),
        "epochs": cfg.trainer.get("max_epochs"),
        "seed": cfg.get("seed"),
    }
    return params | {f"loss/{term.name}": term.weight for term in terms}


def _value(value: Any) -> tuple[struct_pb2.Value, int]:
    """A hyper-parameter as the plugin stores it, and its data type (numbers as float64, anything else a string)."""
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value), api_pb2.DATA_TYPE_BOOL
    if isinstance(value, int | float):
        return struct_pb2.Value(number_value=float(value)), api_pb2.DATA_TYPE_FLOAT64
    return struct_pb2.Value(string_value=str(value)), api_pb2.DATA_TYPE_STRING


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])


def ordered_metrics(names: list[str]) -> list[str]:
    """`names` with METRICS_FIRST first (those present, in that order), then the others by name."""
    first = [m for m in METRICS_FIRST if m in names]
    return first + sorted(set(names) - set(first))


def hparams_summaries(params: Mapping[str, Any], metrics: list[str]) -> list[Summary]:
    """The plugin's summaries of a finished run: the experiment (hyper-parameter columns, HEADLINE marked as
    differing; metric columns in `ordered_metrics` order, read from the `best` sub-run), run start and end."""
    start = plugin_data_pb2.SessionStartInfo()
    infos = []
    for name, value in params.items():
        if value is None:
            continue
        stored, kind = _value(value)
        start.hparams[name].CopyFrom(stored)
        infos.append(api_pb2.HParamInfo(name=name, type=kind, differs=name in HEADLINE))
    columns = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(group=BEST_RUN, tag=m), display_name=m)
        for m in ordered_metrics(metrics)
    ]
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    return [
        _summary(
            metadata.EXPERIMENT_TAG,
            plugin_data_pb2.HParamsPluginData(experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=columns)),
        ),
        _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
    ]


@rank_zero_only
def log_hparams(loggers: list[Logger], params: Mapping[str, Any], val: Mapping[str, float], step: int) -> None:
    """Write `params` and the val metrics `val` (`{tag: value}`, of the best checkpoint, whose step is `step`) for
    the HPARAMS tab into the run of each TensorBoard logger of `loggers`, and flush the event files."""
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        with SummaryWriter(str(Path(logger.log_dir) / BEST_RUN)) as best:
            for tag, value in val.items():
                best.add_scalar(tag, value, step)
        writer = logger.experiment._get_file_writer()
        for summary in hparams_summaries(params, list(val)):
            writer.add_summary(summary, step)
        logger.finalize("success")
