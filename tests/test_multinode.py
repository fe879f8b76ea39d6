"""Several nodes: `trainer=ddp_multinode` takes its node and process counts from torchrun or SLURM, and two torchrun
nodes (1 process each, gloo, on 127.0.0.1) train on their own shares and score as one process does."""

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from mdeas.inference import load_module
from tests.conftest import TINY_RUN, compose_train, write_canonical_zip

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = {  # what torchrun gives the one process of the second of two nodes
    "RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1", "ROLE_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1",
    "GROUP_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "t", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
}  # fmt: skip
SLURM = {  # what srun gives the one task of the second of two nodes (sbatch --nodes 2 --ntasks-per-node 1)
    "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
    "SLURM_NODEID": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "7", "SLURM_NODELIST": "node[1-2]",
}  # fmt: skip


class RecordIds(pl.Callback):
    """Appends `<stage> <sample id>` for every sample this process is given to `<folder>/ids-<global rank>.txt`
    (stage: train, val (inside fit), validate or test), and val/loss after each validation to `loss-<rank>.txt`."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def _write(self, trainer: pl.Trainer, stage: str, batch: dict) -> None:
        with open(self.folder / f"ids-{trainer.global_rank}.txt", "a") as f:
            f.writelines(f"{stage} {sample}\n" for sample in batch["id"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._write(trainer, "train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._write(trainer, "val" if trainer.state.fn == "fit" else "validate", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._write(trainer, "test", batch)

    def on_validation_end(self, trainer, pl_module) -> None:  # after the epoch's logs are reduced
        with open(self.folder / f"loss-{trainer.global_rank}.txt", "a") as f:
            f.write(f"{trainer.callback_metrics['val/loss'].item()!r}\n")


@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_the_recipe_takes_nodes_and_processes_from_the_launcher(tmp_path, monkeypatch, launcher):
    for key, value in (TORCHRUN if launcher == "torchrun" else SLURM).items():
        monkeypatch.setenv(key, value)
    for flag in (rank_zero_only, utils_rank_zero_only):  # the DDP strategy sets this process's rank to 1: undone after
        monkeypatch.setattr(flag, "rank", flag.rank)
    cfg = compose_train(tmp_path, tmp_path / "d.zip", "trainer=ddp_multinode")
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.trainer.devices) == ("ddp", 2, 1)
    trainer = instantiate(cfg.trainer, logger=False)
    assert (trainer.num_nodes, trainer.world_size, trainer.global_rank, trainer.node_rank) == (2, 2, 1, 1)
    environment = TorchElasticEnvironment if launcher == "torchrun" else SLURMEnvironment
    assert isinstance(trainer.strategy.cluster_environment, environment)
    assert (
        compose_train(tmp_path, tmp_path / "d.zip", "trainer=ddp_multinode", "trainer.num_nodes=4").trainer.num_nodes
        == 4
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shares(folder: Path) -> dict[str, list[list[str]]]:
    """stage → per rank, the sample ids that rank was given."""
    shares: dict[str, list[list[str]]] = defaultdict(lambda: [[], []])
    for rank in (0, 1):
        for line in (folder / f"ids-{rank}.txt").read_text().splitlines():
            stage, sample = line.split(" ", 1)
            shares[stage][rank].append(sample)
    return shares


@pytest.mark.slow
def test_two_torchrun_nodes_train_on_their_shares_and_score_like_one_process(tmp_path):
    data = write_canonical_zip(tmp_path / "d.zip", num_samples=40, size=32, fg_per_bg=2)  # 28 / 6 / 6 samples
    overrides = (*TINY_RUN, "data.batch_size=2", "trainer.max_epochs=1", "callbacks.image_grid=null")
    port, env = free_port(), {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    record = f"+callbacks.ids={{_target_: tests.test_multinode.RecordIds, folder: '{tmp_path}'}}"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "-m",
                "mdeas.train",
                "trainer=ddp_multinode",
                f"data.path={data}",
                *overrides,
                record,
                "hydra.run.dir=run",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]

    config = compose_train(tmp_path / "single", data, *overrides)
    datamodule = instantiate(config.data)
    datamodule.setup("fit")
    splits = {name: sorted(s.id for s in dataset.samples) for name, dataset in datamodule.datasets.items()}
    shares = _shares(tmp_path)
    for stage, split in (("train", "train"), ("val", "val"), ("validate", "val"), ("test", "test")):
        first, second = shares[stage]
        assert len(first) == len(second) == len(splits[split]) // 2 and not set(first) & set(second), stage
        assert sorted(first + second) == splits[split], stage  # each sample read once, by one rank

    losses = [(tmp_path / f"loss-{rank}.txt").read_text().split() for rank in (0, 1)]
    assert losses[0] == losses[1] and len(losses[0]) >= 2  # val/loss, synced, is one value on every process

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    module = load_module(metrics["best_checkpoint"])
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    for stage, run in (("val", single.validate), ("test", single.test)):
        alone = run(module, datamodule=datamodule, verbose=False)[0]
        assert {f"{stage}/mask/iou", f"{stage}/depth/delta1"} <= metrics[stage].keys(), stage
        for key, value in metrics[stage].items():
            if "/loss" not in key:  # a mean of per-batch means: batches differ with the number of processes
                assert alone[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert torch.load(metrics["best_checkpoint"], weights_only=False)["global_step"] == 7  # 14 samples a rank, 2 a step
