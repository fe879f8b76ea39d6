"""logger=csv: the scalars TensorBoard would show, as rows of a CSV file."""

import csv
import json
from pathlib import Path

import pytest

from mdeas.callbacks.tensorboard_logger import TensorBoardLogger
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip


def test_csv_logger_writes_every_epochs_losses_and_val_metrics(tmp_path: Path) -> None:
    data = write_canonical_zip(tmp_path / "d.zip", num_samples=16)
    cfg = compose_train(tmp_path / "run", data, "logger=csv", "trainer.max_epochs=2", "test=false", "~callbacks")
    results = train(cfg)
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    val = [row for row in rows if row["val/score"]]
    assert [int(row["epoch"]) for row in val] == [0, 1]
    assert all(float(row["train/loss/mask_bce"]) > 0 for row in rows if row["train/loss/mask_bce"])
    assert len([row for row in rows if row["train/loss/mask_bce"]]) == 2  # an epoch mean per epoch
    scored = json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]["val/score"]
    assert scored == results["val"]["val/score"] and scored in {float(row["val/score"]) for row in val}


def test_the_tensorboard_logger_takes_log_graph_only_as_true_or_false(tmp_path: Path) -> None:
    assert TensorBoardLogger(save_dir=tmp_path, log_graph=True)._log_graph  # with tensorboard installed
    with pytest.raises(ValueError, match=r"^logger\.log_graph must be true or false, got 'maybe'$"):
        TensorBoardLogger(save_dir=tmp_path, log_graph="maybe")  # text, which Python takes for true
