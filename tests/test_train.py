import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mdeas.evaluate import evaluate
from mdeas.resume_dir import resume_dir
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    return write_canonical_zip(tmp_path / "tiny.zip", num_samples=24, size=32, fg_per_bg=2)


def test_fast_dev_run_composes_the_real_config(tmp_path, tiny_zip):
    cfg = compose_train(tmp_path / "run", tiny_zip, "+trainer.fast_dev_run=true")
    results = train(cfg)
    assert {"val/mask/iou", "val/depth/delta1", "val/depth/rmse"} <= set(results["val"])
    assert all(math.isfinite(v) for v in results["val"].values()), results["val"]
    val = results["val"]
    assert val["val/score"] == pytest.approx((val["val/mask/iou"] + val["val/depth/delta1"]) / 2)
    assert all(0 <= val[f"val/{key}"] <= 1 for key in ("mask/iou", "mask/dice", "depth/delta1"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == results
    assert not list((tmp_path / "run").rglob("*.ckpt"))  # a fast dev run saves no checkpoint


def test_one_epoch_writes_tensorboard_checkpoints_and_metrics(tmp_path, tiny_zip):
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "mdeas.train", "model=densenet_dilated", "loss=ssim_mse", "trainer.max_epochs=1",
        "data.image_size=32", "data.batch_size=4", "data.num_workers=0", f"data.path={tiny_zip}", "data.limit=20",
        "seed=3", f"hydra.run.dir={run}", "trainer.accelerator=cpu",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "val/mask/iou" in done.stdout
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert "val/mask/iou" in metrics["val"] and "test/depth/delta1" in metrics["test"]
    values, images = {}, set()
    for events in (run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0}).Reload()
        values |= {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
        images |= set(acc.Tags()["images"])
    terms = [f"train/loss/{t}" for t in ("depth_ssim", "mask_ssim", "depth_mse", "mask_mse", "depth_l1", "mask_l1")]
    expected = {"val/mask/iou", "val/depth/delta1", "train/loss_epoch", *terms}
    assert expected <= set(values), expected - set(values)
    assert {"val_images/samples", "val_images/worst"} <= images
    assert values["val/mask/iou"][-1] == pytest.approx(metrics["val"]["val/mask/iou"], rel=1e-6)  # float32 in TB
    # each term is logged weighted, as its epoch mean: the six add up to the epoch's loss
    assert sum(values[t][-1] for t in terms) == pytest.approx(values["train/loss_epoch"][-1], rel=1e-5)
    best, last = (torch.load(run / "checkpoints" / f"{n}.ckpt", weights_only=False) for n in ("best", "last"))
    # the train split of the 20 samples (split by background), in whole batches of 4: 3 steps
    assert best["epoch"] == last["epoch"] == 0 and best["global_step"] == last["global_step"] == 3


@pytest.mark.slow  # the LR finder's sweep and a run after it
def test_tune_lr_trains_with_the_suggestion_as_onecycle_peak(tmp_path, tiny_zip, one_thread):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}", f"data.path={tiny_zip}", "data.image_size=32",
                "model=resunet", "data.batch_size=4", "data.num_workers=0", "trainer.accelerator=cpu",
                "trainer.max_epochs=7",
                "+trainer.limit_train_batches=2", "test=false", "~callbacks.image_grid", "sched=onecycle",
                "tune_lr=true", "lr_find.num_training=14", "lr_find.early_stop_threshold=null",
            ],
        )  # fmt: skip
    results = train(cfg)
    suggestion = json.loads((tmp_path / "run" / "lr_find.json").read_text())["suggestion"]
    assert suggestion is not None and suggestion != 1e-3
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["optim"]["lr"] == suggestion
    assert ckpt["optimizer_states"][0]["param_groups"][0]["max_lr"] == suggestion  # max_lr: auto
    assert set(results["val"]) >= {"val/mask/iou", "val/depth/delta1"}


def test_last_checkpoint_is_rewritten_every_epoch_when_best_does_not_improve(tmp_path, tiny_zip):
    """best.ckpt here stays at epoch 0 (the monitor is the epoch, smallest best); last.ckpt must still hold epoch 2."""
    cfg = compose_train(
        tmp_path / "run", tiny_zip, "trainer.max_epochs=3", "+trainer.limit_train_batches=1",
        "callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min",
    )  # fmt: skip
    train(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "best.ckpt", weights_only=False)["epoch"] == 0
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 2


@pytest.mark.parametrize(
    ("ckpt_path", "expected"),
    [("runs/a/checkpoints/last.ckpt", "runs/a"), ("x/y/checkpoints/interrupted.ckpt", "x/y"),
     ("weights/model.ckpt", "new"), ("runs/gone/checkpoints/last.ckpt", "new"), (None, "new")],
)  # fmt: skip
def test_a_checkpoint_of_a_run_resumes_in_that_run_s_folder(ckpt_path, expected, tmp_path, monkeypatch):
    """A checkpoint file in <run>/checkpoints/ resumes in <run>; a path naming no file makes no folder of its own."""
    monkeypatch.chdir(tmp_path)
    for path in ("runs/a/checkpoints/last.ckpt", "x/y/checkpoints/interrupted.ckpt", "weights/model.ckpt"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"")
    assert resume_dir(ckpt_path, "new") == expected


def test_the_run_folder_follows_ckpt_path(tmp_path):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        resumed = compose("train", [f"ckpt_path={tmp_path}/r/checkpoints/last.ckpt"], return_hydra_config=True)
        missing = compose("train", [f"ckpt_path={tmp_path}/m/checkpoints/last.ckpt"], return_hydra_config=True)
        fresh = compose("train", [], return_hydra_config=True)
    assert resumed.hydra.run.dir == f"{tmp_path}/r"
    for run in (fresh, missing):
        assert run.hydra.run.dir.startswith("outputs/20") and run.hydra.run.dir.count("/") == 2


def test_resuming_in_the_run_s_folder_keeps_the_best_epoch_from_before(tmp_path, tiny_zip):
    """best.ckpt stays at epoch 0 (the monitor is the epoch, smallest best) across a resume in the same folder."""
    best_first = ("callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min", "test=false")
    ckpts = tmp_path / "run" / "checkpoints"
    train(compose_train(tmp_path / "run", tiny_zip, "trainer.max_epochs=2", *best_first))
    resume = (f"ckpt_path={ckpts / 'last.ckpt'}", "trainer.max_epochs=3")
    results = train(compose_train(tmp_path / "run", tiny_zip, *resume, *best_first))
    assert results["best_checkpoint"] == str(ckpts / "best.ckpt")
    assert torch.load(ckpts / "best.ckpt", weights_only=False)["epoch"] == 0
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 2


def test_callbacks_ema_checkpoints_the_average_beside_the_raw_weights(tmp_path, tiny_zip):
    """callbacks=ema with decay 1 keeps the average at the weights after the first step: the checkpoint's state_dict
    must hold exactly those (what a one-step run ends with) and current_model_state the weights after three steps."""
    one_step = (
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "test=false",
        "~callbacks.image_grid",
        "sched=none",
    )
    train(compose_train(tmp_path / "one", tiny_zip, *one_step))
    after_first = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    # best.ckpt is the last epoch (the default), where the average ≠ the raw weights
    three_steps = ("trainer.max_epochs=3", "callbacks=ema", "callbacks.ema.decay=1.0", "test=true")
    results = train(compose_train(tmp_path / "ema", tiny_zip, *one_step, *three_steps))
    scored = evaluate(results["best_checkpoint"], {}, str(tmp_path / "eval"), resolution="model")["model"]
    for key in ("mask/iou", "depth/delta1", "depth/rmse"):  # the run's test scores the average, as evaluate does
        assert results["test"][f"test/{key}"] == pytest.approx(scored[key], rel=1e-5, abs=1e-6), key
    ckpt = torch.load(tmp_path / "ema" / "checkpoints" / "last.ckpt", weights_only=False)
    params = [k for k, v in after_first.items() if v.is_floating_point()]
    assert all(torch.equal(ckpt["state_dict"][k], after_first[k]) for k in params)
    raw = ckpt["current_model_state"]
    assert not all(torch.equal(raw[k], after_first[k]) for k in params)
    assert sum(torch.equal(raw[k], ckpt["state_dict"][k]) for k in params) < len(params) / 2


def test_a_run_without_validation_trains_and_records_no_val_metrics(tmp_path, tiny_zip):
    cfg = compose_train(tmp_path / "run", tiny_zip, "+trainer.limit_val_batches=0", "+trainer.limit_train_batches=1")
    results = train(cfg)
    assert results["val"] == {} and set(results["test"]) >= {"test/mask/iou", "test/depth/delta1"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == results
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_a_split_without_val_trains_like_a_run_without_validation_and_says_so(tmp_path, tiny_zip, caplog):
    cfg = compose_train(tmp_path / "run", tiny_zip, "data.split=[0.8,0,0.2]", "+trainer.limit_train_batches=1")
    results = train(cfg)
    assert results["val"] == {} and "test/mask/iou" in results["test"]
    assert "data.split=[0.8, 0, 0.2] leaves no val samples: no validation (no best.ckpt by a val metric)" in caplog.text
    # best.ckpt is the last epoch by default, so it is written without validation as well
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
