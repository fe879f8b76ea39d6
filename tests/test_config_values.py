"""Config values that arrive untyped from the command line are checked where they are used, naming the key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mdeas.config_values import digits_hint, file_name, file_names, flag, numbers, whole_number
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.stats import dataset_stats
from mdeas.inference import CheckpointError
from mdeas.synth.generate import generate
from mdeas.train import train
from tests.conftest import CONF, compose_train, write_canonical_zip


def test_flag_takes_only_true_or_false():
    assert flag(True, "mirror") is True and flag(False, "mirror") is False
    for value in ("no", "false", 0, 1, None):
        with pytest.raises(ValueError, match=rf"^mirror must be true or false, got {value!r}$"):
            flag(value, "mirror")


def test_whole_number_refuses_bools_fractions_strings_and_small_values():
    assert whole_number(0, "seed") == 0 and whole_number(3, "data.batch_size", 1) == 3
    for value, minimum in ((True, 0), (1.5, 0), ("abc", 0), (0, 1), (-1, 0)):
        with pytest.raises(ValueError, match=rf"^k must be a whole number >= {minimum}, got {value!r}$"):
            whole_number(value, "k", minimum)


def test_numbers_checks_count_kind_and_sign():
    assert numbers([0.5, 1, 2], "data.std", 3, positive=True) == (0.5, 1.0, 2.0)
    assert numbers((0, -1, 2), "data.mean", 3) == (0.0, -1.0, 2.0)
    bad = [([0.5], False), ("abc", False), ([1, "a", 2], False), ([1, float("nan"), 2], False), ([1, 0, 2], True)]
    for values, positive in bad:
        what = "positive numbers" if positive else "numbers"
        with pytest.raises(ValueError, match=rf"^x must be 3 finite {what}, got "):
            numbers(values, "x", 3, positive)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.mean=[0.5]", "data.mean must be 3 finite numbers, got [0.5]"),
        ("data.std=[0,0,0]", "data.std must be 3 finite positive numbers, got [0, 0, 0]"),
        ("data.split=[a,b,c]", "data.split (train, val, test) must be 3 finite numbers, got ['a', 'b', 'c']"),
        ("data.batch_size=abc", "data.batch_size must be a whole number >= 1, got 'abc'"),
        ("data.image_size=0", "data.image_size must be a whole number >= 1, got 0"),
        ("data.num_workers=-1", "data.num_workers must be a whole number >= 0, got -1"),
        (
            "data.num_workers=100000",
            f"data.num_workers must be at most {8 * os.cpu_count()} (8 per CPU core), got 100000",
        ),
        ("data.seed=abc", "data.seed must be a whole number >= 0, got 'abc'"),
        ("data.depth_inverted=maybe", "data.depth_inverted must be true or false, got 'maybe'"),
        ("data.cache_resized=no", "data.cache_resized must be true or false, got 'no'"),
        ("data.crop=abc", "data.crop must be a whole number >= 1, got 'abc'"),
        ("data.crop=100", "data.crop must be in [1, data.image_size=32] or null, got 100"),
        ("data.cache_max_gb=abc", "data.cache_max_gb must be a number >= 0 (inf: the disk alone limits), got 'abc'"),
        ("data.cache_max_gb=-1", "data.cache_max_gb must be a number >= 0 (inf: the disk alone limits), got -1"),
        ("data.path=[]", "data.path must be a zip or a list of zips, got []"),
        ("data.cache_dir=''", "data.cache_dir must be a file or folder name, got ''"),  # cached into the current folder
        (
            "data.path=2024",
            "data.path must be a zip or a list of zips, got 2024 (quote a name made of digits: 'data.path=\"2024\"')",
        ),  # fmt: skip
    ],
)
def test_the_data_module_names_a_bad_value_before_reading_data(tmp_path, override, message):
    cfg = compose_train(tmp_path / "run", tmp_path / "absent.zip", override)
    with pytest.raises(InstantiationException) as caught:  # Hydra's wrapper; entry points report its cause
        instantiate(cfg.data)
    assert isinstance(caught.value.__cause__, ValueError) and str(caught.value.__cause__) == message
    assert isinstance(instantiate(compose_train(tmp_path / "run", tmp_path / "absent.zip").data), MaskDepthDataModule)


def test_depth_inverted_must_be_a_flag_when_reading_a_set(tmp_path):
    data = write_canonical_zip(tmp_path / "set.zip")
    plain, inverted = dataset_stats(str(data))["depth"], dataset_stats(str(data), depth_inverted=True)["depth"]
    # write_canonical_zip: 12 samples of 1,023 known pixels (one unknown), 879 at 10 m and 144 at 2 + 0.1 i m, of 20 m
    mean = (12 * 879 * 0.5 + 144 * sum(0.1 + 0.005 * i for i in range(12))) / (12 * 1023)
    assert plain["mean"] == pytest.approx(mean) and inverted["mean"] == pytest.approx(1 - mean)  # d → 1 − d
    assert inverted["std"] == pytest.approx(plain["std"]) and inverted["known"] == plain["known"] == 1023 / 1024
    with pytest.raises(ValueError, match=r"^depth_inverted must be true or false, got 'maybe'$"):
        dataset_stats(str(data), depth_inverted="maybe")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("test=no", "test must be true or false, got 'no'"),
        ("compile=no", "compile must be true or false, got 'no'"),
        ("channels_last=nope", "channels_last must be true or false, got 'nope'"),
        ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch must be a whole number >= 1, got 0"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be a whole number >= 1, got 0"),
        ("optim.lr=inf", "optim.lr must be a finite number, got inf"),  # trained to NaN, blamed on a batch
        ("tune_lr=true lr_find.num_training=0", "lr_find.num_training must be a whole number >= 1, got 0"),
        (
            "tune_lr=true lr_find.early_stop_threshold=abc",
            "lr_find.early_stop_threshold must be a finite number, got 'abc'",
        ),
        (
            "tune_lr=true lr_find.min_lr=1 lr_find.max_lr=0.1",
            "lr_find.min_lr and lr_find.max_lr must be 0 < min_lr < max_lr, got 1 and 0.1",
        ),
        ("optim.lr=-1e-3", "optim.lr must be a finite number >= 0, got -0.001"),
        ("optim.lr=abc", "optim.lr must be a finite number, got 'abc'"),
        ("optim.betas=[0.5]", "optim.betas must be 2 finite numbers, got [0.5]"),
        ("optim.betas=[0.5,1.0]", "optim.betas must be 2 numbers in [0, 1), got [0.5, 1.0]"),
        # callbacks: failed after an epoch (tile, num_thresholds) or in a line without the key (save_top_k, decay)
        ("callbacks.image_grid.tile=abc", "callbacks.image_grid.tile must be a whole number >= 1, got 'abc'"),
        ("callbacks.image_grid.num_samples=-1", "callbacks.image_grid.num_samples must be a whole number >= 0, got -1"),
        (
            "callbacks.pr_curves.num_thresholds=1",
            "callbacks.pr_curves.num_thresholds must be a whole number >= 2, got 1",
        ),
        (
            "callbacks.model_checkpoint.save_top_k=abc",
            "callbacks.model_checkpoint.save_top_k must be a whole number >= -1, got 'abc'",
        ),
        (
            "callbacks.last_checkpoint_steps.minutes=abc",
            "callbacks.last_checkpoint_steps.minutes must be a finite number, got 'abc'",
        ),
        (
            "callbacks.last_checkpoint_steps.minutes=0",
            "callbacks.last_checkpoint_steps.minutes must be a positive number of minutes (or null: no checkpoint by "
            "time), got 0",
        ),
        ("callbacks=ema callbacks.ema.decay=1.5", "callbacks.ema.decay must be a number in [0, 1], got 1.5"),
    ],
)
def test_train_names_a_bad_switch_or_count_before_the_data_is_read(tmp_path, override, message):
    """The data zip does not exist: the bad value is what the run reports (`test=no` used to be taken as true)."""
    with pytest.raises(ValueError) as caught:
        train(compose_train(tmp_path / "run", tmp_path / "absent.zip", *override.split()))
    assert str(caught.value) == message


def test_generator_options_name_a_value_of_the_wrong_kind(tmp_path):
    bad = {
        "flips": ("no", "must be true or false"),
        "seed": ("abc", "must be a whole number >= 0"),
        "image_size": (33.5, "must be a whole number >= 0"),
        "camouflage": ("abc", "must be a finite number"),
    }
    for key, (value, problem) in bad.items():
        with pytest.raises(ValueError, match=rf"^generator option {key} {problem}, got {value!r}$"):
            generate(tmp_path / "g.zip", 4, workers=1, **{key: value})
    for size in (8, 100_000):  # 100000 ended in numpy's MemoryError
        with pytest.raises(ValueError, match=rf"^image_size must be in \[16, 8192\] px, got {size}$"):
            generate(tmp_path / "g.zip", 4, workers=1, image_size=size)
    for count, workers in ((True, 1), (1.5, 1), (4, "abc"), (0, 1)):  # `true` made a set of one sample
        key, value = ("workers", workers) if workers == "abc" else ("num_samples", count)
        with pytest.raises(ValueError, match=rf"^generator option {key} must be a whole number >= 1, got {value!r}$"):
            generate(tmp_path / "g.zip", count, workers=workers)
    assert not (tmp_path / "g.zip").exists()


def test_a_missing_checkpoint_fails_before_the_data_is_read(tmp_path):
    """The data zip does not exist either: the checkpoint path is what the run reports."""
    for key in ("ckpt_path", "init_from"):
        cfg = compose_train(tmp_path / "run", tmp_path / "absent.zip", f"{key}={tmp_path / 'typo.ckpt'}")
        with pytest.raises(CheckpointError, match=r"typo.ckpt: no such checkpoint file$"):
            train(cfg)


def test_a_progressive_chain_without_multirun_is_refused(tmp_path):
    cmd = [sys.executable, "-m", "mdeas.train", "experiment=progressive", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(CONF).parent)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: experiment=progressive runs its stages as the jobs of one sweep: add -m"
    )


def test_file_name_takes_names_and_none_and_names_a_number():
    assert file_name("runs/a.ckpt", "ckpt_path") == "runs/a.ckpt" and file_name(None, "output") is None
    with pytest.raises(ValueError) as refused:
        file_name(2024, "output")
    assert (
        str(refused.value)
        == "output must be a file or folder name, got 2024 (quote a name made of digits: 'output=\"2024\"')"
    )
    for bad in ("", True, [1]):
        with pytest.raises(ValueError, match=r"^out must be a file or folder name, got "):
            file_name(bad, "out")


def test_file_names_checks_each_key_and_each_item_of_a_list():
    file_names({"a": "x", "b": ["y.zip", "z.zip"], "c": None}, "a", "b", "c", "absent")
    with pytest.raises(ValueError) as refused:
        file_names({"a": "x", "b": ["y.zip", 3]}, "a", "b")
    assert (
        str(refused.value) == "b must be a list of file names, got ['y.zip', 3] (quote a name made of digits: '\"3\"')"
    )
    assert digits_hint("name", "k") == "" and digits_hint(["a", "b"], "k") == ""
