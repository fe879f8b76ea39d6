"""Training strategies: progressive stages, weight transfer, precision, DDP, exact resume."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.demos.boring_classes import BoringModel
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mdeas import precision
from mdeas.callbacks.interrupt import ResumeOnInterrupt
from mdeas.callbacks.step_checkpoint import StepCheckpoint
from mdeas.inference import CheckpointError, load_module
from mdeas.module import MaskDepthModule
from mdeas.progressive import StageError, apply_stage
from mdeas.train import main, train
from tests.conftest import compose_train, write_canonical_zip

CONF = str(Path(__file__).resolve().parents[1] / "conf")


class StopAfter(pl.Callback):
    """Sends this process Ctrl-C (SIGINT), or with `sigterm` a SIGTERM, in the middle of the batch that makes
    optimiser step `steps`: after its forward pass (BatchNorm statistics updated), before its backward pass and
    optimiser step. The run must stop after that batch, with its step made."""

    def __init__(self, steps: int, sigterm: bool = False) -> None:
        self.steps, self.sigterm = steps, sigterm

    def on_before_backward(self, trainer, *args) -> None:
        if trainer.global_step == self.steps - 1:
            os.kill(os.getpid(), signal.SIGTERM if self.sigterm else signal.SIGINT)


class CrashAt(pl.Callback):
    """Fails the run with an error no callback saves a checkpoint for (as a kill it cannot catch would end it): at
    the start of training batch `batch` of epoch `epoch`, or with `batch: null` at the start of its validation."""

    def __init__(self, epoch: int, batch: int | None = None) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            raise RuntimeError("killed")

    def on_validation_start(self, trainer, *args) -> None:
        if self.batch is None and not trainer.sanity_checking and trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


class SigtermInValidation(pl.Callback):
    """Sends this process a SIGTERM at the first validation batch after training's `epoch`-th epoch (0-based)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_batch_start(self, trainer, *args) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch and not trainer.received_sigterm:
            os.kill(os.getpid(), signal.SIGTERM)


class RecordConvDtypes(pl.Callback):
    """Records the dtype of every Conv2d output while fitting, and the parameters' dtypes at the end."""

    outputs: set = set()
    params: set = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        record = lambda module, args, out: RecordConvDtypes.outputs.add(out.dtype)  # noqa: E731
        for conv in (m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.register_forward_hook(record)

    def on_fit_end(self, trainer, pl_module) -> None:
        RecordConvDtypes.params.update(p.dtype for p in pl_module.parameters())


def write_tiny_zip(folder: Path) -> Path:
    return write_canonical_zip(folder / "tiny.zip", num_samples=24, size=32, fg_per_bg=2)


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    return write_tiny_zip(tmp_path)


RESUMED = ("trainer.max_epochs=2", "+trainer.limit_train_batches=3", "seed=5", "~logger", "test=false")  # 2 × 3 steps


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The last.ckpt of an uninterrupted run of `RESUMED` on `tiny_zip`'s data, which a resumed run must end with."""
    folder = tmp_path_factory.mktemp("straight")
    train(config(folder / "run", write_tiny_zip(folder), *RESUMED))
    return torch.load(folder / "run" / "checkpoints" / "last.ckpt", weights_only=False)


def ends_as(straight: dict, run: Path) -> None:
    """The run in `run` ended at the uninterrupted run's step with its weights, to the bit."""
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == straight["global_step"]
    assert all(torch.equal(v, resumed["state_dict"][k]) for k, v in straight["state_dict"].items())


def config(out: Path, data: Path, *overrides: str):
    return compose_train(out, data, "trainer.max_epochs=1", "callbacks.image_grid=null", *overrides)


def test_a_stage_without_its_previous_stage_is_a_clear_error(tmp_path, tiny_zip):
    cfg = config(tmp_path / "chain" / "stage1", tiny_zip, "experiment=progressive", "stage=1")
    with pytest.raises(StageError, match=r"stage 1 starts from stage 0's best weights, but .*chain/stage0/checkpoints"):
        apply_stage(cfg)


def test_a_stage_after_an_unfinished_stage_is_a_clear_error(tmp_path, tiny_zip):
    """Stage 0 failed or was stopped mid-way: its best.ckpt exists but it wrote no metrics.json."""
    (tmp_path / "chain" / "stage0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "chain" / "stage0" / "checkpoints" / "best.ckpt").write_bytes(b"")
    cfg = config(tmp_path / "chain" / "stage1", tiny_zip, "experiment=progressive", "stage=1")
    with pytest.raises(StageError, match=r"but stage 0 has not finished \(.*chain/stage0 has no metrics\.json\)"):
        apply_stage(cfg)
    (tmp_path / "chain" / "stage0" / "metrics.json").write_text("{}")
    assert apply_stage(cfg).init_from == str(tmp_path / "chain" / "stage0" / "checkpoints" / "best.ckpt")


def test_a_stage_takes_its_size_epochs_and_batch(tmp_path, tiny_zip):
    cfg = apply_stage(config(tmp_path / "chain" / "stage0", tiny_zip, "experiment=progressive", "stage=0"))
    assert (cfg.data.image_size, cfg.trainer.max_epochs, cfg.data.batch_size) == (64, 4, 32)
    assert cfg.get("init_from") is None and cfg.ckpt_path is None


def test_a_stage_with_a_misspelt_or_missing_key_or_no_epochs_is_named(tmp_path, tiny_zip):
    base = ("experiment=progressive", "stage=0")
    for stage, message in (
        ("{image_size: 32, max_epochs: 1, batch_sise: 4}", r"progressive\.stages\[0\]: unknown keys \['batch_sise'\]"),
        ("{image_sise: 32, max_epochs: 1}", r"progressive\.stages\[0\]: unknown keys \['image_sise'\]; missing \['im"),
    ):
        cfg = config(tmp_path / "chain" / "stage0", tiny_zip, *base, f"progressive.stages=[{stage}]")
        with pytest.raises(StageError, match=message):
            apply_stage(cfg)
    # a stage's values go through the same checks as the command line's (0 epochs would score stage 0's weights)
    cfg = config(tmp_path / "chain" / "stage0", tiny_zip, *base, "progressive.stages=[{image_size: 32, max_epochs: 0}]")
    with pytest.raises(ValueError, match=r"^trainer\.max_epochs must be a whole number >= 1 \(-1: no limit\), got 0$"):
        train(cfg)
    with pytest.raises(ValueError, match=r"^stage must be a whole number >= 0, got 'abc'$"):
        apply_stage(config(tmp_path / "chain" / "stage0", tiny_zip, "experiment=progressive", "stage=abc"))


def test_init_from_loads_weights_only_and_rejects_another_model(tmp_path, tiny_zip):
    first = train(config(tmp_path / "a", tiny_zip))
    cfg = config(tmp_path / "b", tiny_zip, f"init_from={first['best_checkpoint']}", "optim.lr=0")
    train(cfg)  # learning rate 0: the parameters written are the ones loaded
    untrained = config(tmp_path / "u", tiny_zip, "optim.lr=0")  # the seed's initial weights, never updated
    train(untrained)
    a, b = load_module(first["best_checkpoint"]), load_module(tmp_path / "b" / "checkpoints" / "last.ckpt")
    u = load_module(tmp_path / "u" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.model.parameters(), u.model.parameters(), strict=True))
    other = config(tmp_path / "c", tiny_zip, f"init_from={first['best_checkpoint']}", "model=dwsep_pair")
    with pytest.raises(CheckpointError, match=r"best.ckpt: weights of model 'densenet_dilated' do not fit"):
        train(other)


def test_bf16_mixed_precision_computes_in_bf16_and_keeps_fp32_weights_and_metrics(tmp_path, tiny_zip):
    RecordConvDtypes.outputs.clear()
    RecordConvDtypes.params.clear()
    record = "+callbacks.dtypes={_target_: tests.test_strategies.RecordConvDtypes}"
    bf16 = ("trainer.precision=bf16-mixed", "+trainer.fast_dev_run=true", record)
    results = train(config(tmp_path / "r", tiny_zip, *bf16))
    assert RecordConvDtypes.outputs == {torch.bfloat16} and RecordConvDtypes.params == {torch.float32}
    assert {"val/mask/iou", "val/score"} <= results["val"].keys()
    assert all(torch.isfinite(torch.tensor(v)) for v in results["val"].values())


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_on_a_gpu_is_bf16_only_where_it_is_native(monkeypatch, native):
    """A pre-Ampere GPU (compute capability 7.x) emulates bf16: torch says it supports bf16 only with emulation."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native)
    assert precision.resolve_precision("auto", "gpu") == ("bf16-mixed" if native else "32-true")


@pytest.mark.parametrize(
    ("flags", "expected"), [({"avx2", "avx512f"}, "32-true"), ({"avx512f", "avx512_bf16"}, "bf16-mixed")]
)
def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it(
    tmp_path, tiny_zip, monkeypatch, caplog, flags, expected
):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("16-mixed", "cpu") == "16-mixed"  # anything but auto is Lightning's
    with caplog.at_level(logging.INFO, logger="mdeas.train"):
        train(config(tmp_path / "r", tiny_zip, "trainer.precision=auto", "+trainer.fast_dev_run=true"))
    assert f"precision auto: {expected}" in caplog.text


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "absent") == set()


def test_channels_last_gives_the_same_outputs(tmp_path, tiny_zip):
    torch.manual_seed(0)
    cfg = config(tmp_path / "r", tiny_zip)
    module = MaskDepthModule(model=cfg.model, loss=cfg.loss, optim=cfg.optim).eval()
    x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    before = module(*x)
    module.set_memory_format(channels_last=True)
    after = module(*x)
    assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in before)
    kernels = [p for p in module.model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)  # really switched


class StartStep(pl.Callback):
    """Records the optimiser step a fit starts from."""

    start: int | None = None

    def on_train_start(self, trainer, *args) -> None:
        self.start = trainer.global_step


def test_ctrl_c_checkpoint_is_resumed_only_when_asked(tmp_path):
    """Lightning's OnExceptionCheckpoint would fail this: beside one, `fit(ckpt_path=None)` resumes the newest of
    its checkpoint and last.ckpt, where mdeas starts afresh unless `ckpt_path=` is given."""
    ckpts = tmp_path / "checkpoints"

    def fit(*callbacks: pl.Callback, ckpt_path: Path | None = None) -> None:
        trainer = pl.Trainer(
            max_steps=4, limit_val_batches=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
            accelerator="cpu", default_root_dir=tmp_path, callbacks=[ResumeOnInterrupt(str(ckpts)), *callbacks],
        )  # fmt: skip
        trainer.fit(BoringModel(), ckpt_path=ckpt_path)

    with pytest.raises(SIGTERMException):  # Ctrl-C stops the fit after its batch, as a SIGTERM does
        fit(StopAfter(2))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the fit
    assert torch.load(ckpts / "interrupted.ckpt", weights_only=False)["global_step"] == 2
    fresh, resumed = StartStep(), StartStep()
    fit(fresh)
    assert fresh.start == 0, f"a fit without ckpt_path resumed from step {fresh.start}"
    fit(resumed, ckpt_path=ckpts / "interrupted.ckpt")
    assert resumed.start == 2


@pytest.mark.parametrize("sigterm", [False, True], ids=["ctrl_c", "sigterm"])
def test_interrupt_in_the_middle_of_an_epoch_resumes_at_its_next_batch(tmp_path, tiny_zip, straight, sigterm, caplog):
    """Stopped after 4 of 2 × 3 steps (one batch into epoch 1), resumed from interrupted.ckpt: the weights must be
    an uninterrupted run's; replaying epoch 1 from its first batch (a loader that cannot resume) would differ. The
    stop comes mid-batch (`StopAfter`); it ends with KeyboardInterrupt after Ctrl-C (the entry point says
    `interrupted`, exit status 130), 143 after SIGTERM (as a shell reports it), and logs how to resume."""
    stop = f"+callbacks.stop={{_target_: tests.test_strategies.StopAfter, steps: 4, sigterm: {str(sigterm).lower()}}}"
    with pytest.raises(SystemExit if sigterm else KeyboardInterrupt) as stopped, caplog.at_level(logging.ERROR):
        main.__wrapped__(config(tmp_path / "cut", tiny_zip, *RESUMED, stop))  # the entry point, without Hydra's CLI
    ckpts = tmp_path / "cut" / "checkpoints"
    assert not sigterm or stopped.value.code == 143
    resume = f"resume with: python -m mdeas.train <same overrides> ckpt_path={ckpts / 'interrupted.ckpt'}"
    assert f"interrupted at epoch 1, step 4; {resume}" in caplog.text
    interrupted = torch.load(ckpts / "interrupted.ckpt", weights_only=False)
    assert (interrupted["epoch"], interrupted["global_step"]) == (1, 4)
    assert interrupted["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"stepped": 1}]
    train(config(tmp_path / "cut", tiny_zip, *RESUMED, f"ckpt_path={ckpts / 'interrupted.ckpt'}"))
    ends_as(straight, tmp_path / "cut")


EVERY = "callbacks.last_checkpoint_steps.every_n_train_steps"


def crash(epoch: int, batch: int | None = None) -> str:
    return f"+callbacks.crash={{_target_: tests.test_strategies.CrashAt, epoch: {epoch}, batch: {batch or 'null'}}}"


def saved_at(run: Path) -> tuple[int, int, int]:
    """(epoch, optimiser steps, training batches of that epoch done) of the run's last.ckpt."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    done = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    return ckpt["epoch"], ckpt["global_step"], done


@pytest.mark.parametrize(
    "every", [f"{EVERY}=4", "callbacks.last_checkpoint_steps.minutes=1e-9"], ids=["steps", "minutes"]
)
def test_a_run_killed_mid_epoch_resumes_from_the_last_checkpoint_taken_every_n_steps(
    tmp_path, tiny_zip, straight, every
):
    """With `last_checkpoint_steps.every_n_train_steps=4` over 2 × 3 steps (or after any time at all), last.ckpt is
    rewritten at step 4, one batch into epoch 1; a run that then dies leaves no interrupted.ckpt, and resuming from
    last.ckpt must end with an uninterrupted run's weights (replaying epoch 1 from its first batch would differ). By
    default it comes every 30 minutes, which this run never reaches."""
    with pytest.raises(RuntimeError, match="^killed$"):
        train(config(tmp_path / "cut", tiny_zip, *RESUMED, every, crash(1, 1)))
    assert not (tmp_path / "cut" / "checkpoints" / "interrupted.ckpt").exists()
    assert saved_at(tmp_path / "cut") == (1, 4, 1)
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    train(config(tmp_path / "cut", tiny_zip, *RESUMED, every, f"ckpt_path={last}"))
    ends_as(straight, tmp_path / "cut")
    with pytest.raises(RuntimeError, match="^killed$"):  # by default, here, last.ckpt is the end of epoch 0 (step 3)
        train(config(tmp_path / "default", tiny_zip, *RESUMED, crash(1, 1)))
    assert saved_at(tmp_path / "default")[:2] == (0, 3)


def test_the_step_checkpoint_keeps_one_state_key_and_refuses_a_time_that_is_not_positive(tmp_path):
    """One key whatever the trigger (a run resumed with another setting restores its state, without Lightning's
    missing-callback warning); null steps never mean Lightning's "every epoch"; minutes 0 or below are refused."""
    by_time = StepCheckpoint(dirpath=tmp_path, filename="last", minutes=30)
    by_steps = StepCheckpoint(dirpath=tmp_path, filename="last", every_n_train_steps=200, minutes=30)
    off = StepCheckpoint(dirpath=tmp_path, filename="last", every_n_train_steps=None, minutes=None)
    assert by_time.state_key == by_steps.state_key == off.state_key == "StepCheckpoint{'filename': 'last'}"
    assert by_time._train_time_interval.total_seconds() == 1800 and by_steps._train_time_interval is None
    assert (by_steps._every_n_train_steps, off._every_n_train_steps, off._every_n_epochs) == (200, 0, 0)
    for minutes in (0, -1):
        with pytest.raises(
            ValueError, match=rf"minutes must be positive \(or null: no checkpoint by time\), got {minutes}"
        ):
            StepCheckpoint(dirpath=tmp_path, filename="last", minutes=minutes)


def test_no_step_checkpoint_on_a_batch_that_validation_follows(tmp_path, tiny_zip, straight):
    """Every step, except step 6, the last epoch's last batch: a run that dies in that validation resumes from step 5
    and validates epoch 1 (resumed from a checkpoint taken before a validation, Lightning would go on past it, and
    best.ckpt, the last validated epoch, would stay epoch 0's)."""
    with pytest.raises(RuntimeError, match="^killed$"):
        train(config(tmp_path / "cut", tiny_zip, *RESUMED, f"{EVERY}=1", crash(1)))
    assert saved_at(tmp_path / "cut") == (1, 5, 2)
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    train(config(tmp_path / "cut", tiny_zip, *RESUMED, f"{EVERY}=1", f"ckpt_path={last}"))
    ends_as(straight, tmp_path / "cut")
    assert torch.load(tmp_path / "cut" / "checkpoints" / "best.ckpt", weights_only=False)["global_step"] == 6


@pytest.mark.slow
def test_no_step_checkpoint_inside_a_gradient_accumulation_window(tmp_path, tiny_zip):
    """2 epochs of 4 batches, 2 per optimiser step, a checkpoint every step: killed at batch 2 of epoch 1, resumed,
    killed again at batch 3 before any new step, resumed: the run must end as an uninterrupted one. A save at batch
    2 of the first resume (the step count still at 3) would count it as done without its gradients."""
    common = ("trainer.max_epochs=2", "+trainer.limit_train_batches=4", "trainer.accumulate_grad_batches=2",
              "seed=5", "~logger", "test=false", f"{EVERY}=1")  # fmt: skip
    train(config(tmp_path / "straight", tiny_zip, *common))
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    with pytest.raises(RuntimeError, match="^killed$"):
        train(config(tmp_path / "cut", tiny_zip, *common, crash(1, 2)))
    assert saved_at(tmp_path / "cut") == (1, 3, 2)
    with pytest.raises(RuntimeError, match="^killed$"):
        train(config(tmp_path / "cut", tiny_zip, *common, f"ckpt_path={last}", crash(1, 3)))
    assert saved_at(tmp_path / "cut") == (1, 3, 2)
    train(config(tmp_path / "cut", tiny_zip, *common, f"ckpt_path={last}"))
    ends_as(torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False), tmp_path / "cut")


def test_sigterm_during_validation_lets_it_finish_so_a_resumed_run_keeps_its_best_checkpoint(tmp_path, tiny_zip):
    """A checkpoint taken mid-validation would resume past that validation: its score would never compete for
    best.ckpt. The stop waits for the validation and the epoch's checkpoints, then the run resumes at epoch 1."""
    common = (
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=3",
        "data.batch_size=2",
        "seed=5",
        "~logger",
        "test=false",
    )
    straight = train(config(tmp_path / "straight", tiny_zip, *common))
    stop = "+callbacks.stop={_target_: tests.test_strategies.SigtermInValidation, epoch: 0}"
    with pytest.raises(SIGTERMException):  # what main turns into exit status 143
        train(config(tmp_path / "cut", tiny_zip, *common, stop))
    ckpts = tmp_path / "cut" / "checkpoints"
    interrupted = torch.load(ckpts / "interrupted.ckpt", weights_only=False)
    assert (interrupted["epoch"], interrupted["global_step"]) == (1, 3)  # epoch 0 finished, validated and saved
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 3  # the epoch's own checkpoint
    resumed = train(config(tmp_path / "cut", tiny_zip, *common, f"ckpt_path={ckpts / 'interrupted.ckpt'}"))
    assert resumed["val"] == pytest.approx(straight["val"], rel=1e-6, abs=1e-7)
    best = [
        torch.load(p / "checkpoints" / "best.ckpt", weights_only=False)
        for p in (tmp_path / "straight", tmp_path / "cut")
    ]
    assert best[0]["global_step"] == best[1]["global_step"]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, tiny_zip):
    common = ("trainer.max_epochs=3", "seed=5", "~logger", "callbacks.lr_monitor=null")
    straight = train(config(tmp_path / "straight", tiny_zip, *common))
    stop = "+callbacks.stop={_target_: tests.test_strategies.StopAfter, steps: 5}"  # 3 steps per epoch
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "cut", tiny_zip, *common, stop))
    ckpts = tmp_path / "cut" / "checkpoints"
    assert (ckpts / "interrupted.ckpt").is_file() and (ckpts / "last.ckpt").is_file()
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 0
    resumed = train(config(tmp_path / "cut", tiny_zip, *common, f"ckpt_path={ckpts / 'last.ckpt'}"))
    assert resumed["val"] == pytest.approx(straight["val"], rel=1e-6, abs=1e-7)
    assert resumed["test"] == pytest.approx(straight["test"], rel=1e-6, abs=1e-7)


@pytest.mark.slow
def test_progressive_chain_runs_each_stage_at_its_size_from_the_previous_best(tmp_path, tiny_zip):
    stages = "progressive.stages=[{image_size:32,max_epochs:1,batch_size:4},{image_size:48,max_epochs:1,batch_size:4},{image_size:64,max_epochs:1,batch_size:4}]"  # noqa: E501
    cmd = [sys.executable, "-m", "mdeas.train", "-m", "experiment=progressive", f"data.path={tiny_zip}",
           "data.num_workers=0", stages, "hydra.sweep.dir=chain", "callbacks.image_grid=null"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    chain = tmp_path / "chain"
    for k, size in enumerate((32, 48, 64)):
        best = chain / f"stage{k}" / "checkpoints" / "best.ckpt"
        assert torch.load(best, weights_only=False)["hyper_parameters"]["data"]["image_size"] == size
        log = (chain / f"stage{k}" / "train.log").read_text()
        start = "scratch" if k == 0 else str(chain / f"stage{k - 1}" / "checkpoints" / "best.ckpt")
        assert f"stage {k}: {size} px, batch 4, 1 epochs, from {start}" in log
    # running the chain again in the same directory resumes it: every stage is already finished
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and (again.stdout + again.stderr).count("already finished") == 3
    recorded = [OmegaConf.load(chain / f"stage{k}" / ".hydra" / "config.yaml").data.image_size for k in range(3)]
    assert recorded == [32, 48, 64]  # each stage's file still says what ran, not the chain's base config


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_syncs_metrics(tmp_path):
    data = write_canonical_zip(tmp_path / "d.zip", num_samples=40, size=32, fg_per_bg=2)  # test split: 6 samples
    cmd = [sys.executable, "-m", "mdeas.train", "trainer=ddp", "model=resunet", "trainer.accelerator=cpu",
           "trainer.devices=2", f"data.path={data}", "data.image_size=32", "data.batch_size=2", "data.num_workers=0",
           "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "hydra.run.dir=run",
           "callbacks.image_grid=null", "trainer.precision=32-true"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # the synced test metrics equal one process scoring the whole test split with the same checkpoint
    from mdeas.evaluate import evaluate

    single = evaluate(metrics["best_checkpoint"], {}, str(tmp_path / "eval"))
    assert {"test/mask/iou", "test/depth/delta1", "test/depth/rmse"} <= metrics["test"].keys()
    for key, value in metrics["test"].items():
        if "/loss" not in key:
            assert single["model"][key.removeprefix("test/")] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_resumed_plateau_schedule_steps_as_an_uninterrupted_one(tmp_path, tiny_zip):
    """Lightning skips the plateau step of the epoch a checkpoint ends; it must still happen, on resuming. (mode=max
    on a falling val/loss: every epoch after the first is a bad one and cuts the learning rate.)"""
    plateau = ("sched=plateau", "sched.scheduler.patience=0", "sched.scheduler.mode=max", "test=false",
               "+trainer.limit_train_batches=1")  # fmt: skip
    train(config(tmp_path / "straight", tiny_zip, "trainer.max_epochs=3", *plateau))
    train(config(tmp_path / "cut", tiny_zip, "trainer.max_epochs=2", *plateau))
    resume = f"ckpt_path={tmp_path / 'cut' / 'checkpoints' / 'last.ckpt'}"
    train(config(tmp_path / "cut", tiny_zip, "trainer.max_epochs=3", resume, *plateau))
    straight, cut = (
        torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=False) for d in ("straight", "cut")
    )
    assert cut["lr_schedulers"] == straight["lr_schedulers"] and straight["lr_schedulers"][0]["last_epoch"] == 2
    lr = [c["optimizer_states"][0]["param_groups"][0]["lr"] for c in (cut, straight)]
    assert lr[0] == lr[1] == pytest.approx(1e-3 * 0.05)


@pytest.mark.slow
def test_a_plateau_schedule_resumed_mid_epoch_steps_at_that_epoch_s_end(tmp_path, tiny_zip):
    """Lightning skips every per-epoch schedule step at the end of an epoch resumed mid-way; the cut after epoch 1
    must still happen (a relative threshold of 1 makes every epoch a bad one: each cuts the rate by 0.05)."""
    plateau = ("sched=plateau", "sched.scheduler.patience=0", "+sched.scheduler.threshold=1.0", "test=false",
               "+trainer.limit_train_batches=3", "trainer.max_epochs=3")  # fmt: skip
    train(config(tmp_path / "straight", tiny_zip, *plateau))
    stop = "+callbacks.stop={_target_: tests.test_strategies.StopAfter, steps: 4}"  # one batch into epoch 1
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "cut", tiny_zip, *plateau, stop))
    train(config(tmp_path / "cut", tiny_zip, *plateau, f"ckpt_path={tmp_path / 'cut/checkpoints/interrupted.ckpt'}"))
    straight, cut = (
        torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=False) for d in ("straight", "cut")
    )
    assert cut["lr_schedulers"] == straight["lr_schedulers"] and straight["lr_schedulers"][0]["last_epoch"] == 2
    lr = [c["optimizer_states"][0]["param_groups"][0]["lr"] for c in (cut, straight)]
    assert lr[0] == lr[1] == pytest.approx(1e-3 * 0.05**2)  # epochs 0 and 1 (epoch 2's cut follows last.ckpt)


def test_a_chain_resumes_a_stage_from_its_newer_checkpoint_and_refuses_one_given_for_all(tmp_path, tiny_zip):
    """An interrupted stage holds interrupted.ckpt (mid-epoch) and maybe an older last.ckpt (an epoch's end): it
    resumes from the newer. A ckpt_path given on the command line would hold for every stage of the chain."""
    ckpts = tmp_path / "chain" / "stage0" / "checkpoints"
    ckpts.mkdir(parents=True)
    for age, name in enumerate(("last.ckpt", "interrupted.ckpt")):
        (ckpts / name).write_bytes(b"")
        os.utime(ckpts / name, ns=(age * 10**9, age * 10**9))
    stage0 = ("experiment=progressive", "stage=0")
    assert apply_stage(config(tmp_path / "chain" / "stage0", tiny_zip, *stage0)).ckpt_path == str(
        ckpts / "interrupted.ckpt"
    )
    os.utime(ckpts / "last.ckpt", ns=(2 * 10**9, 2 * 10**9))  # an epoch finished after the resume
    assert apply_stage(config(tmp_path / "chain" / "stage0", tiny_zip, *stage0)).ckpt_path == str(ckpts / "last.ckpt")
    given = config(tmp_path / "chain" / "stage0", tiny_zip, *stage0, f"ckpt_path={ckpts / 'last.ckpt'}")
    with pytest.raises(StageError, match=r"a progressive chain resumes each stage from its own checkpoints; run the"):
        apply_stage(given)


def test_an_interrupted_chain_says_to_run_the_chain_again_in_its_folder(tmp_path, tiny_zip, caplog):
    stop = "+callbacks.stop={_target_: tests.test_strategies.StopAfter, steps: 1}"
    stages = "progressive.stages=[{image_size:32,max_epochs:1,batch_size:4}]"
    cfg = config(tmp_path / "chain" / "stage0", tiny_zip, "experiment=progressive", "stage=0", stages, stop)
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.ERROR):
        train(cfg)
    hint = f"resume with: python -m mdeas.train -m <same overrides> hydra.sweep.dir={tmp_path / 'chain'}"
    assert f"interrupted at epoch 0, step 1; {hint}" in caplog.text
