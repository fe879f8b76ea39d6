"""The optimised metric, the sweep summary callback, and real sweeps (Hydra's basic sweeper and Optuna)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml
from hydra.types import RunMode
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mdeas import train as train_module
from mdeas.sweep import SweepSummary, end_failed_sweep, job_rows, metric_weights, objective
from tests.conftest import write_canonical_zip

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # the machine's cores are shared: one thread per process
VAL = {"val/mask/iou": 0.5, "val/depth/delta1": 0.75, "val/depth/rmse": 2.0}


# ---------------------------------------------------------------- objective


def test_objective_forms() -> None:
    assert objective(VAL, "val/mask/iou") == 0.5
    assert objective(VAL, ["val/mask/iou", "val/depth/delta1"]) == 1.25
    assert objective(VAL, OmegaConf.create(["val/mask/iou", "val/depth/delta1"])) == 1.25
    assert objective(VAL, {"val/mask/iou": 2, "val/depth/rmse": -0.1}) == pytest.approx(0.8)
    assert metric_weights(OmegaConf.create({"val/mask/iou": 1})) == {"val/mask/iou": 1.0}


def test_objective_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"optimized_metric: val/mask/iuo not among the val metrics: val/depth/delta1"):
        objective(VAL, ["val/mask/iuo"])
    with pytest.raises(ValueError, match="must be a metric name, a list of names or"):
        objective(VAL, [])


# ---------------------------------------------------------------- summary of job directories


def fake_job(sweep: Path, num: int, overrides: list[str], val: dict | None, metric="[val/mask/iou, val/depth/delta1]"):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(f"optimized_metric: {metric}\nseed: 0\n")
    if val is not None:
        (job / "metrics.json").write_text(json.dumps({"best_checkpoint": "", "val": val}))


def test_summary_callback_writes_csv_and_markdown(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["loss.terms.a.weight=0.5", "seed=1"], {**VAL, "val/mask/iou": 0.25})
    fake_job(sweep, 1, ["loss.terms.a.weight=1", "seed=1"], VAL)
    fake_job(sweep, 2, ["loss.terms.a.weight=2", "seed=1"], None)  # did not finish
    fake_job(sweep, 10, ["loss.terms.a.weight=4|x", "seed=1"], VAL, metric="val/depth/rmse")
    SweepSummary().on_multirun_end(config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    with (sweep / "sweep_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]
    assert list(rows[0]) == ["job", "overrides", "val/mask/iou", "val/depth/delta1", "objective", "val/depth/rmse"]
    assert [r["objective"] for r in rows] == ["1.0", "1.25", "", "2.0"]
    assert rows[1]["overrides"] == "loss.terms.a.weight=1" and rows[0]["val/mask/iou"] == "0.25"  # seed=1: shared
    md = (sweep / "sweep_summary.md").read_text().splitlines()
    assert md[:3] == [
        "all jobs: `seed=1`",
        "",
        "| job | overrides | val/mask/iou | val/depth/delta1 | objective | val/depth/rmse |",
    ]
    assert md[4] == "| 0 | loss.terms.a.weight=0.5 | 0.2500 | 0.7500 | 1.0000 |  |"
    assert md[6] == "| 2 | loss.terms.a.weight=2 |  |  |  |  |"
    assert md[7] == "| 10 | loss.terms.a.weight=4\\|x |  |  | 2.0000 | 2.0000 |"
    assert md[-1] == "best: job 10 (2.0000): `loss.terms.a.weight=4|x`"
    assert job_rows(tmp_path / "empty") == []


def test_a_job_that_scored_nan_is_never_the_best(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["seed=0"], {**VAL, "val/mask/iou": float("nan")})
    fake_job(sweep, 1, ["seed=1"], VAL)
    SweepSummary().on_multirun_end(config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / "sweep_summary.md").read_text().splitlines()[-1] == "best: job 1 (1.2500): `seed=1`"
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "sweep_summary.csv", "sweep_summary.md"]


def test_the_best_job_follows_the_sweepers_direction(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["seed=0"], VAL)  # objective 1.25
    fake_job(sweep, 1, ["seed=1"], {**VAL, "val/mask/iou": 0.0})  # objective 0.75
    hydra = {"sweep": {"dir": str(sweep)}, "sweeper": {"direction": "minimize"}}  # e.g. Optuna on val/loss
    SweepSummary().on_multirun_end(config=OmegaConf.create({"hydra": hydra}))
    assert (sweep / "sweep_summary.md").read_text().splitlines()[-1] == "best: job 1 (0.7500): `seed=1`"


# ---------------------------------------------------------------- real sweeps


class InterruptTraining(pl.Callback):
    """Sends this process Ctrl-C (SIGINT) during the first training batch."""

    def on_train_batch_start(self, *args: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_canonical_zip(tmp_path_factory.mktemp("data") / "tiny.zip", num_samples=24, size=32)


def tiny_run(tiny_zip: Path, sweep: Path, *args: str) -> list[str]:
    """The train command on the tiny data set, `args` first (Hydra flags such as -m, then overrides)."""
    return [
        sys.executable, "-m", "mdeas.train", *args, "model=resunet", f"data.path={tiny_zip}", "data.image_size=32",
        "data.batch_size=4",
        "data.num_workers=0", "data.limit=16", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "trainer.accelerator=cpu", "test=false", "~callbacks.image_grid", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    with (sweep / "sweep_summary.csv").open() as f:
        return list(csv.DictReader(f))


def job_objective(job: Path) -> float:
    """The default optimized_metric, val/score = (val mask IoU + val depth δ1) / 2, from the job's metrics.json."""
    val = json.loads((job / "metrics.json").read_text())["val"]
    assert val["val/score"] == pytest.approx((val["val/mask/iou"] + val["val/depth/delta1"]) / 2, abs=1e-6)
    return objective(val, "val/score")


def hparams_of(run: Path) -> tuple[set[str], set[str]]:
    """Hyper-parameter names in a run's TensorBoard HPARAMS data, and its scalar tags."""
    names, tags = set(), set()
    for events in (run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events)).Reload()
        tags |= set(acc.Tags()["scalars"])
        try:
            content = acc.PluginTagToContent("hparams")
        except KeyError:  # an event file without hyper-parameters
            continue
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            names |= set(data.session_start_info.hparams)
    return names, tags


def last_scalars(run: Path) -> dict[str, float]:
    """The last value of each scalar tag in one TensorBoard run folder (not its sub-runs)."""
    last = {}
    for events in sorted(run.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events)).Reload()
        last |= {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    return last


def test_multirun_over_a_loss_weight_writes_jobs_and_summary(tmp_path: Path, tiny_zip: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = tiny_run(tiny_zip, sweep, "-m", "loss.terms.depth_ssim.weight=0.5,2")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary_rows(sweep)
    assert [r["overrides"] for r in rows] == ["loss.terms.depth_ssim.weight=0.5", "loss.terms.depth_ssim.weight=2"]
    for row, weight in zip(rows, (0.5, 2.0), strict=True):
        job = sweep / row["job"]
        assert float(row["objective"]) == pytest.approx(job_objective(job), rel=1e-9)
        assert OmegaConf.load(job / ".hydra" / "config.yaml").loss.terms.depth_ssim.weight == weight
    best_row = max(rows, key=lambda row: float(row["objective"]))
    best_line = f"best: job {best_row['job']} ({float(best_row['objective']):.4f}): `{best_row['overrides']}`"
    assert (sweep / "sweep_summary.md").read_text().splitlines()[-1] == best_line
    names, tags = hparams_of(sweep / "0")
    assert {"model", "loss", "lr", "loss/depth_ssim"} <= names  # the swept weight is the term's hyper-parameter
    assert not any(name.startswith(("choice/", "override/")) for name in names)
    assert {"val/score", "val/mask/iou"} <= tags and not any(tag.startswith("hp/") for tag in tags)
    best = last_scalars(sweep / "0" / "tensorboard" / "best")  # what HPARAMS shows: the best checkpoint's metrics
    assert best["val/score"] == pytest.approx(job_objective(sweep / "0"))


@pytest.mark.slow
def test_optuna_sweep_two_trials(tmp_path: Path, tiny_zip: Path) -> None:
    sweep = tmp_path / "optuna"
    cmd = tiny_run(tiny_zip, sweep, "hparams_search=ssim_mse_optuna", "hydra.sweeper.n_trials=2")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary_rows(sweep)
    assert [r["job"] for r in rows] == ["0", "1"]
    for row in rows:
        sampled = dict(o.split("=", 1) for o in row["overrides"].split())
        assert 1e-4 <= float(sampled["optim.lr"]) <= 1e-2
        assert 0.5 <= float(sampled["loss.terms.depth_ssim.weight"]) <= 4.0
        assert float(row["objective"]) == pytest.approx(job_objective(sweep / row["job"]), rel=1e-9)
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.best_value == pytest.approx(max(float(r["objective"]) for r in rows), rel=1e-9)


@pytest.mark.slow
def test_a_failed_job_leaves_the_others_their_summary_and_the_sweep_exits_1(tmp_path: Path, tiny_zip: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = tiny_run(tiny_zip, sweep, "-m", "optimized_metric=val/score,val/nope")  # job 1 names no metric
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ONE_THREAD)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith(f"error: 1 of 2 jobs failed ({sweep / 'sweep_summary.md'}): job 1: optimized_metric: ")
    rows = summary_rows(sweep)
    assert float(rows[0]["objective"]) == pytest.approx(job_objective(sweep / "0"), rel=1e-9) and not rows[0]["error"]
    assert rows[1]["objective"] == "" and "val/nope not among the val metrics" in rows[1]["error"]
    assert "best: job 0" in (sweep / "sweep_summary.md").read_text()


@pytest.mark.slow
def test_ctrl_c_in_a_job_ends_the_whole_sweep(tmp_path: Path, tiny_zip: Path) -> None:
    sweep = tmp_path / "sweep"
    stop = "+callbacks.stop={_target_: tests.test_sweep.InterruptTraining}"
    cmd = tiny_run(tiny_zip, sweep, "-m", "seed=0,1", stop)
    env = {**ONE_THREAD, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 130 and done.stderr.endswith("interrupted\n"), done.stderr[-3000:]
    assert (sweep / "0" / "checkpoints" / "interrupted.ckpt").is_file() and not (sweep / "1").exists()
    assert not (sweep / "0" / "error.txt").exists()  # not recorded as a failed job: the sweep itself stopped


def test_an_optuna_sweep_whose_every_trial_fails_ends_in_one_line_with_its_summary(
    tmp_path: Path, tiny_zip: Path
) -> None:
    sweep = tmp_path / "optuna"
    args = ("hparams_search=ssim_mse_optuna", "hydra.sweeper.n_trials=1", "optimized_metric=val/nope")
    done = subprocess.run(
        tiny_run(tiny_zip, sweep, *args), capture_output=True, text=True, cwd=tmp_path, env=ONE_THREAD
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith(f"error: 1 of 1 jobs failed ({sweep / 'sweep_summary.md'}): job 0: optimized_metric: ")
    assert [row["objective"] for row in summary_rows(sweep)] == [""]
    assert "best: job" not in (sweep / "sweep_summary.md").read_text()


class Multirun:
    """Stands in for Hydra's config of a sweep job (`HydraConfig`)."""

    @staticmethod
    def initialized() -> bool:
        return True

    @staticmethod
    def get():
        return OmegaConf.create({"mode": RunMode.MULTIRUN})


@pytest.mark.parametrize(
    ("stop", "ends_the_sweep"),
    [
        (KeyboardInterrupt(), True),
        (SystemExit(143), True),
        (ValueError("data.limit must be positive"), False),
        (TypeError("unsupported operand"), False),
    ],
    ids=["ctrl_c", "sigterm", "bad_value", "unforeseen_fault"],
)
def test_a_jobs_interrupt_ends_the_sweep_and_its_error_ends_the_job_only(monkeypatch, tmp_path, stop, ends_the_sweep):
    """In a sweep, Ctrl-C or SIGTERM (an exit status) propagates, with no error.txt: the sweep stops. A one-line
    error, or any other error by its type, is kept in the job's error.txt and the job returns None (a failed trial):
    the sweep goes on."""

    def train(cfg):
        raise stop

    monkeypatch.setattr(train_module, "HydraConfig", Multirun)
    monkeypatch.setattr(train_module, "train", train)
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "optimized_metric": "val/score"})
    if ends_the_sweep:
        with pytest.raises(type(stop)) as caught:
            train_module.main.__wrapped__(cfg)
        assert caught.value is stop and not (tmp_path / "error.txt").exists()
    else:
        assert train_module.main.__wrapped__(cfg) is None
        expected = (
            "data.limit must be positive"
            if isinstance(stop, ValueError)
            else f"TypeError: {stop} (traceback in its log)"
        )
        assert (tmp_path / "error.txt").read_text() == expected + "\n"


def test_only_optunas_want_of_a_best_trial_is_read_as_a_sweep_whose_every_job_failed(tmp_path: Path) -> None:
    """With every job failed, Optuna's ValueError gives the summary's one line; any other error is left to surface
    as it is (a bug or a broken storage must not hide behind the jobs' errors)."""
    fake_job(tmp_path, 0, ["seed=1"], None)
    (tmp_path / "0" / "error.txt").write_text("data.limit must be positive\n")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    summary = SweepSummary()
    summary.on_multirun_start(config)
    try:
        assert end_failed_sweep(RuntimeError("database is locked")) is None
        assert end_failed_sweep(ValueError("some other value")) is None
        with pytest.raises(SystemExit, match=r"^error: 1 of 1 jobs failed \(.*\): job 0: data.limit must be positive$"):
            end_failed_sweep(ValueError("No trials are completed yet."))
    finally:
        SweepSummary.running = None


def test_a_sweep_ranking_scores_of_two_kinds_says_so(tmp_path: Path, caplog) -> None:
    """Jobs that learn no depth log `val/score` = IoU, the others (IoU + δ1) / 2: ranked together, they are named."""
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["loss.terms.depth_l1.weight=1"], {**VAL, "val/score": 0.625}, metric="val/score")
    fake_job(sweep, 1, ["loss.terms.depth_l1.weight=0"], {"val/mask/iou": 0.7, "val/score": 0.7}, metric="val/score")
    hydra = {"hydra": {"sweep": {"dir": str(sweep)}}}
    for ranked_by, said in (("val/score", True), ("val/mask/iou", False)):
        caplog.clear()
        SweepSummary().on_multirun_end(config=OmegaConf.create({**hydra, "optimized_metric": ranked_by}))
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        expected = "jobs 1 score the mask IoU alone (they learn no depth) beside jobs scoring (IoU + δ1) / 2: the two "
        expected += "do not compare; rank them by optimized_metric=val/mask/iou"
        assert warned == ([expected] if said else [])
