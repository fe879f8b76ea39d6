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
    terms = [name for name in rows[0] if name.startswith("train/loss/")]
    assert {"train/loss/mask_bce", "train/loss/depth_ssim"} <= set(terms), terms
    for term in terms:  # an epoch mean per epoch, of every term
        assert [float(row[term]) > 0 for row in rows if row[term]] == [True, True], term
    scored = json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]["val/score"]
    assert scored == results["val"]["val/score"] == float(val[-1]["val/score"])  # the last epoch's


def test_a_resumed_run_keeps_the_rows_logged_before_its_checkpoint(tmp_path: Path) -> None:
    """Lightning's CSVLogger deleted metrics.csv when a run resumed in its folder; rows logged after the checkpoint
    (here a made-up one at step 99) are logged again by the resumed run, so they go."""
    data = write_canonical_zip(tmp_path / "d.zip", num_samples=16)
    last = "{_target_: pytorch_lightning.callbacks.ModelCheckpoint, dirpath: ${paths.output_dir}/checkpoints}"
    args = ("logger=csv", "test=false", "~callbacks", f"+callbacks.last={last[:-1]}, filename: last}}")
    train(compose_train(tmp_path / "run", data, *args, "trainer.max_epochs=1"))
    table = tmp_path / "run" / "csv" / "metrics.csv"
    with table.open() as f:
        first = list(csv.DictReader(f))
    header = table.read_text().splitlines()[0]
    with table.open("a") as f:
        f.write(",".join("99" if name == "step" else "" for name in header.split(",")) + "\n")
    resume = f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"
    train(compose_train(tmp_path / "run", data, *args, "trainer.max_epochs=2", resume))
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert rows[: len(first)] == first and "99" not in {row["step"] for row in rows}
    assert [int(row["epoch"]) for row in rows if row["val/score"]] == [0, 1]
    assert len([row for row in rows if row["train/loss/mask_bce"]]) == 2


def test_the_tensorboard_logger_takes_log_graph_only_as_true_or_false(tmp_path: Path) -> None:
    assert TensorBoardLogger(save_dir=tmp_path, log_graph=True)._log_graph  # with tensorboard installed
    assert not TensorBoardLogger(save_dir=tmp_path, log_graph=False)._log_graph
    for text in ("maybe", "false"):  # text, which Python takes for true
        with pytest.raises(ValueError, match=rf"^logger\.log_graph must be true or false, got '{text}'$"):
            TensorBoardLogger(save_dir=tmp_path, log_graph=text)
