"""LR schedules against hand-computed values, `auto` arguments from the trainer, optimiser configs, LR finder."""

from __future__ import annotations

import json
import math
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from mdeas.schedules import WarmupCyclic, WarmupCyclicLR, lr_scheduler_config
from mdeas.train import build_module, train
from tests.conftest import compose_train, write_canonical_zip

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def sgd(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate used by each of the first `steps` optimiser steps."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


# ---------------------------------------------------------------- seed 002's warm-up cyclic schedule


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 1.0),  # warm-up: 5 epochs x 10 steps at the full rate
        (49, 1.0),
        (50, 0.01),  # first cycle starts at the bottom
        (75, 0.505),  # half-way up: 0.01 + 0.99 * 0.5
        (100, 1.0),  # peak after one 5-epoch edge
        (125, 0.505),
        (150, 0.01),  # end of cycle 1 = start of cycle 2
        (200, 1.0),
        (349, 0.01 + 0.99 / 50),  # one step before the end of cycle 3
        (350, 0.1),  # after 3 cycles: lr / 10 for an edge
        (399, 0.1),
        (400, 0.01),  # / 10 again
        (450, 0.001),
    ],
)
def test_warmup_cyclic_factors_by_hand(step: int, factor: float) -> None:
    assert WarmupCyclic(steps_per_epoch=10)(step) == pytest.approx(factor, abs=1e-12)


def test_warmup_cyclic_uses_the_real_steps_per_epoch() -> None:
    # 3 steps per epoch: the warm-up ends after 15 steps, the first peak is 15 steps later
    schedule = WarmupCyclic(steps_per_epoch=3)
    assert [schedule(s) for s in (14, 15, 30, 45)] == pytest.approx([1.0, 0.01, 1.0, 0.01])


def test_warmup_cyclic_lr_drives_the_optimiser_from_1e_3() -> None:
    scheduler = WarmupCyclicLR(sgd(1e-3), steps_per_epoch=2, warmup_epochs=1, edge_epochs=1, cycles=1)
    # warm-up 2 steps at 1e-3; cycle of 2 + 2 steps 1e-5 -> 1e-3 -> 1e-5; then 1e-4 for 2 steps, 1e-5 ...
    expected = [1e-3, 1e-3, 1e-5, 5.05e-4, 1e-3, 5.05e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-6]
    assert lrs(scheduler, len(expected)) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- cosine with warm-up

# sched=cosine_warmup at lr 1e-3 over 20 optimiser steps of 5 per epoch (warm-up: 1 epoch = 5 steps): the learning
# rate of each step, as the schedule gave it before it was built from torch's LinearLR and CosineAnnealingLR.
COSINE_WARMUP_LRS = [
    0.00016666666666666666, 0.0003333333333333333, 0.0005, 0.0006666666666666666, 0.0008333333333333334, 0.001,
    0.0009874639560909118, 0.0009504844339512095, 0.000890915741234015, 0.0008117449009293668,
    0.0007169418695587791, 0.0006112604669781572, 0.0005, 0.00038873953302184284, 0.00028305813044122096,
    0.00018825509907063325, 0.0001090842587659851, 4.9515566048790485e-05, 1.2536043909088191e-05, 0.0,
]  # fmt: skip


def cosine_warmup(lr: float, total: int, batches: int, **overrides: float) -> torch.optim.lr_scheduler.LRScheduler:
    """conf/sched/cosine_warmup.yaml (with `overrides`) for `total` optimiser steps of `batches` per epoch."""
    sched = load_sched("cosine_warmup")
    sched["scheduler"].update(overrides)
    return lr_scheduler_config(sched, sgd(lr), fake_trainer(total=total, batches=batches, accumulate=1))["scheduler"]


def test_cosine_warmup_lr_per_step_is_pinned() -> None:
    lr = lrs(cosine_warmup(1e-3, total=20, batches=5), 20)
    assert lr == pytest.approx(COSINE_WARMUP_LRS, rel=1e-9, abs=1e-15)
    # by hand: warm-up (k + 1) / 6 of the rate, the full rate after it, cosine half-way at step 12 and 0 at the last
    assert lr[0] == pytest.approx(1e-3 / 6, rel=1e-12) and lr[4] == pytest.approx(5e-3 / 6, rel=1e-12)
    assert lr[5] == pytest.approx(1e-3, rel=1e-12) and lr[12] == pytest.approx(0.5e-3, rel=1e-12)
    assert lr[19] == pytest.approx(0.0, abs=1e-15)
    closed_form = [(k + 1) / 6 for k in range(5)] + [0.5 * (1 + math.cos(math.pi * i / 14)) for i in range(15)]
    assert COSINE_WARMUP_LRS == pytest.approx([1e-3 * f for f in closed_form], rel=1e-12, abs=1e-18)  # every step


def test_cosine_warmup_by_hand_with_a_floor_and_fractional_warmup() -> None:
    lr = lrs(cosine_warmup(0.5, total=10, batches=4, warmup_epochs=0.5, min_factor=0.1), 10)
    # warm-up 1/3, 2/3 (half an epoch of 4 steps); cosine over steps 2..9 (7 intervals) from 1 to 0.1
    expected = [1 / 3, 2 / 3] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / 7)) for i in range(8)]
    assert lr == pytest.approx([0.5 * f for f in expected], rel=1e-9)
    no_warmup = lrs(cosine_warmup(0.5, total=3, batches=4, warmup_epochs=0), 3)
    assert no_warmup == pytest.approx([0.5, 0.25, 0.0], rel=1e-9, abs=1e-15)
    one_epoch = lrs(cosine_warmup(0.5, total=4, batches=4, warmup_epochs=1), 4)  # all warm-up: cut to 2 steps
    assert one_epoch == pytest.approx([0.5 / 3, 1 / 3, 0.5, 0.0], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"warmup_epochs": -1}, "sched.scheduler.warmup_epochs must be a number >= 0, got -1"),
        ({"warmup_epochs": "abc"}, "sched.scheduler.warmup_epochs must be a finite number, got 'abc'"),
        ({"min_factor": float("nan")}, "sched.scheduler.min_factor must be a finite number, got nan"),
        ({"min_factor": 2}, r"sched.scheduler.min_factor must be in \[0, 1\], got 2"),
    ],
)
def test_cosine_warmup_names_a_bad_option(option: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        cosine_warmup(0.5, total=10, batches=4, **option)


def test_cyclic_schedule_refuses_edges_of_no_length() -> None:
    message = r"^sched.scheduler.edge_epochs=0: a cycle's edge must last more than 0 epochs$"
    with pytest.raises(ValueError, match=message):
        WarmupCyclic(steps_per_epoch=10, edge_epochs=0)


@pytest.mark.parametrize("cut", [1, 6])  # during the warm-up and after it
def test_cosine_warmup_resumes_from_its_state_dict(cut: int) -> None:
    straight = lrs(cosine_warmup(0.5, total=12, batches=4, warmup_epochs=0.5), 12)  # 2 warm-up steps
    scheduler = cosine_warmup(0.5, total=12, batches=4, warmup_epochs=0.5)
    first = lrs(scheduler, cut)
    resumed = cosine_warmup(0.5, total=99, batches=1, warmup_epochs=50)
    resumed.optimizer.load_state_dict(scheduler.optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())  # the schedule's own parameters come back with it
    assert first + lrs(resumed, 12 - cut) == pytest.approx(straight, rel=1e-9)


# ---------------------------------------------------------------- sched configs and `auto`


def fake_trainer(total: int = 40, batches: int = 10, accumulate: int = 3, val_every: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        estimated_stepping_batches=total,
        num_training_batches=batches,
        accumulate_grad_batches=accumulate,
        check_val_every_n_epoch=val_every,
    )


def load_sched(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / "sched" / f"{name}.yaml"))


def test_auto_arguments_come_from_the_trainer_and_optimiser() -> None:
    optimizer = sgd(0.2)
    onecycle = lr_scheduler_config(load_sched("onecycle"), optimizer, fake_trainer(total=40))
    assert onecycle["interval"] == "step"
    assert isinstance(onecycle["scheduler"], torch.optim.lr_scheduler.OneCycleLR)
    assert onecycle["scheduler"].total_steps == 40
    assert optimizer.param_groups[0]["max_lr"] == 0.2  # the optimiser's lr is the peak
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-3, betas=(0.5, 0.999))
    cycled = lr_scheduler_config(load_sched("onecycle"), adam, fake_trainer(total=40))["scheduler"]
    for _ in range(10):
        adam.step(), cycled.step()
    assert adam.param_groups[0]["betas"] == (0.5, 0.999)  # the schedule leaves the optimiser's momentum alone
    cyclic = lr_scheduler_config(load_sched("cyclic_warmup"), sgd(), fake_trainer(batches=10, accumulate=3))
    assert cyclic["scheduler"].lr_lambdas[0].steps_per_epoch == 4  # ceil(10 batches / 3 accumulated)
    cosine = lrs(cosine_warmup(1e-3, total=40, batches=10), 40)  # warm-up: 1 epoch of 10 steps, then down to 0
    assert cosine[9] < cosine[10] == max(cosine) == pytest.approx(1e-3) and cosine[39] == pytest.approx(0, abs=1e-15)
    assert cosine[38] > 0


def test_plateau_and_step_configs() -> None:
    plateau = lr_scheduler_config(load_sched("plateau"), sgd(), fake_trainer())
    assert isinstance(plateau["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (plateau["monitor"], plateau["interval"], plateau["scheduler"].factor) == ("val/loss", "epoch", 0.05)
    assert plateau["frequency"] == 1
    # validating every 2nd epoch: val/loss exists only then, so the schedule steps only then
    assert lr_scheduler_config(load_sched("plateau"), sgd(), fake_trainer(val_every=2))["frequency"] == 2
    step = lr_scheduler_config(load_sched("step"), sgd(), fake_trainer())
    assert (step["scheduler"].step_size, step["scheduler"].gamma, step["interval"]) == (10, 0.1, "epoch")


def test_auto_errors() -> None:
    sched = {"scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": "auto"}}
    with pytest.raises(ValueError, match="sched.scheduler.step_size: 'auto' is known only for total_steps"):
        lr_scheduler_config(sched, sgd(), fake_trainer())
    with pytest.raises(ValueError, match="total_steps: auto needs trainer.max_epochs or trainer.max_steps"):
        lr_scheduler_config(load_sched("onecycle"), sgd(), fake_trainer(total=float("inf")))
    with pytest.raises(ValueError, match="steps_per_epoch: auto needs a train loader with a length"):
        lr_scheduler_config(load_sched("cyclic_warmup"), sgd(), fake_trainer(batches=float("inf")))


@pytest.mark.parametrize(
    ("name", "cls", "lr"),
    [("adam", torch.optim.Adam, 1e-3), ("adamw", torch.optim.AdamW, 1e-3), ("sgd", torch.optim.SGD, 1e-2)],
)
def test_optimiser_configs(name: str, cls: type, lr: float) -> None:
    optimizer = hydra.utils.instantiate(OmegaConf.load(CONF / "optim" / f"{name}.yaml"))(params=[torch.zeros(1)])
    assert type(optimizer) is cls and optimizer.defaults["lr"] == lr
    if name == "sgd":
        assert (optimizer.defaults["momentum"], optimizer.defaults["weight_decay"]) == (0.9, 1e-5)


# ---------------------------------------------------------------- with a real trainer


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_canonical_zip(tmp_path_factory.mktemp("data") / "tiny.zip", num_samples=24, size=32)


def compose_run(tmp_path: Path, tiny_zip: Path, *overrides: str):
    return compose_train(tmp_path / "run", tiny_zip, *overrides)


class RecordLR(pl.Callback):
    """Records the learning rate of every optimiser step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize(("sched", "expected"), [("onecycle", 6), ("cyclic_warmup", 3), ("cosine_warmup", 6)])
def test_fit_resolves_auto_from_the_real_loader(tmp_path: Path, tiny_zip: Path, sched: str, expected: int) -> None:
    cfg = compose_run(tmp_path, tiny_zip, f"sched={sched}")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    record = RecordLR()
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", callbacks=[record],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    if sched == "cosine_warmup":  # warm-up for 1 epoch of 3 steps, then down to 0 at the last of 6 steps
        lr = record.lrs
        assert len(lr) == 6 and lr[2] < lr[3] == max(lr) and lr[4] > lr[5] == pytest.approx(0, abs=1e-15)
    else:
        schedule = getattr(scheduler, "lr_lambdas", [scheduler])[0]
        resolved = schedule.steps_per_epoch if sched == "cyclic_warmup" else schedule.total_steps
        assert resolved == expected  # 2 epochs x 3 batches; 3 per epoch
    assert scheduler.last_epoch == 6  # stepped once per batch


def test_lr_find_only_writes_the_record_and_stops(tmp_path: Path, tiny_zip: Path) -> None:
    cfg = compose_run(
        tmp_path, tiny_zip, "tune_lr=only", "lr_find.num_training=16", "lr_find.early_stop_threshold=null",
        "trainer.max_epochs=8", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "~logger",
        "~callbacks.lr_monitor",
    )  # fmt: skip
    results = train(cfg)
    record = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert results == {"lr_find": record}
    assert len(record["lr"]) == len(record["loss"]) == 16  # 8 epochs x 2 batches
    assert record["configured_lr"] == 1e-3 and record["suggestion"] in record["lr"]
    assert record["lr"][0] == pytest.approx(1e-6, rel=0.2) and record["lr"] == sorted(record["lr"])
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "lr_find.png").exists() == (find_spec("matplotlib") is not None)


def test_tune_lr_value_is_checked(tmp_path: Path, tiny_zip: Path) -> None:
    with pytest.raises(ValueError, match="tune_lr must be true, false or only, got 'yes'"):
        train(compose_run(tmp_path, tiny_zip, "tune_lr=yes"))


@pytest.mark.parametrize("key", ["max_epochs", "max_steps"])
@pytest.mark.parametrize("value", ["abc", "2.5", "-2", "0"])
def test_max_epochs_and_steps_must_be_whole_numbers_that_train(tmp_path: Path, tiny_zip: Path, key, value) -> None:
    """Read by the schedules before Lightning checks them (a string there blamed `sched.scheduler`); 0 trained
    nothing and wrote the untrained model's metrics."""
    shown = {"abc": "'abc'", "2.5": "2.5", "-2": "-2", "0": "0"}[value]
    message = rf"^trainer\.{key} must be a whole number >= 1 \(-1: no limit\), got {shown}$"
    with pytest.raises(ValueError, match=message):
        train(compose_run(tmp_path, tiny_zip, f"trainer.{key}={value}"))
    assert not (tmp_path / "run" / "metrics.json").exists()
