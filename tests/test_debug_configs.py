"""The debug group (conf/debug): each choice composes into its short run, and debug=fdr runs end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import CONF, write_canonical_zip

SHARED = {"trainer.max_epochs": 1, "trainer.accelerator": "cpu", "trainer.precision": "32-true",
          "trainer.detect_anomaly": True, "data.num_workers": 0, "data.synth.num_samples": 256}  # fmt: skip
CHOICES = {
    "default": {},
    "fdr": {"trainer.fast_dev_run": True},
    "limit": {"trainer.max_epochs": 3, "trainer.limit_train_batches": 5, "trainer.limit_val_batches": 2},
    "overfit": {
        "trainer.max_epochs": 100,
        "trainer.overfit_batches": 1,
        "data.augment": [],
        "sched": {},
        "optim.lr": 3e-3,
    },  # fmt: skip
    "profiler": {"trainer.profiler._target_": "pytorch_lightning.profilers.SimpleProfiler"},
}


def select(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_debug_choice_composes_its_short_run(choice: str) -> None:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"debug={choice}"], return_hydra_config=True)
        plain = compose("train", overrides=["experiment=seed002", f"debug={choice}"])
    for key, value in {**SHARED, **CHOICES[choice]}.items():
        assert select(cfg, key) == value, key
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert (
        run_dir == "${resume_dir:${ckpt_path},'outputs/debug/${now:%Y-%m-%d}/${now:%H-%M-%S-%f}'}"
    )  # resumes in place
    assert plain.model.name == "densenet_dilated"  # a recipe keeps its model and loss under debug


def test_every_debug_file_is_tested() -> None:
    assert {p.stem for p in (Path(CONF) / "debug").glob("*.yaml")} == set(CHOICES)


def test_debug_fdr_runs_one_batch_of_each_stage_and_writes_no_checkpoint(tmp_path: Path) -> None:
    data = write_canonical_zip(tmp_path / "d.zip", num_samples=24)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mdeas.train", "debug=fdr", f"data.path={data}", "model=densenet_dilated",
           "data.image_size=32", "data.batch_size=4", f"hydra.run.dir={run}", "~callbacks.image_grid"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run / "metrics.json").read_text())
    assert (
        results["best_checkpoint"] == "" and not (run / "checkpoints").exists() and not (run / "tensorboard").exists()
    )
    assert "Running in `fast_dev_run` mode: will run the requested loop using 1 batch(es)" in done.stdout + done.stderr
    assert 0.0 <= results["val"]["val/mask/iou"] <= 1.0 and 0.0 <= results["test"]["test/mask/iou"] <= 1.0
