"""The same seed gives the same run: two trainings through the train entry, with DataLoader workers, agree exactly
(the first builds the resized cache, the second reads it), and a third with another seed does not."""

import json
import os
import subprocess
import sys

import torch

from tests.conftest import write_canonical_zip


def test_same_seed_gives_identical_metrics_and_weights_on_cpu(tmp_path):
    data = write_canonical_zip(tmp_path / "tiny.zip", num_samples=24, size=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def train(name: str, seed: int = 11) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "mdeas.train", "model=resunet", f"data.path={data}", "data.image_size=32",
               "data.batch_size=4", "data.num_workers=2", "data/aug=strong", "trainer.max_epochs=2",
               "trainer.accelerator=cpu", f"seed={seed}", "callbacks.image_grid=null",
               f"hydra.run.dir={name}"]  # fmt: skip
        with open(tmp_path / f"{name}.log", "w") as log:  # a file, not a pipe that a run could fill and wait on
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)

    runs = {name: train(name, seed) for name, seed in (("a", 11), ("b", 11), ("c", 12))}  # at once, one thread each
    for name, run in runs.items():
        assert run.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
    a, b = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in "ab")
    assert a["best_checkpoint"] == str(tmp_path / "a" / "checkpoints" / "best.ckpt")
    assert {k: a[k] for k in ("val", "test")} == {k: b[k] for k in ("val", "test")}
    assert len(a["val"]) > 10 and len(a["test"]) > 10
    weights = [
        torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for name in "abc"
    ]
    assert weights[0].keys() == weights[1].keys() == weights[2].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # the seed is what fixes them: another seed draws other weights, data order and augmentation
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    other = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert other["val"]["val/loss"] != a["val"]["val/loss"]
