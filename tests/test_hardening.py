"""Hostile input at every entry point: each failure is one line `error: ...` naming the culprit (zip and entry,
config key or choice, path), exit status 1 without a traceback, and nothing written before is damaged."""

import errno
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io import torch_io
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mdeas.callbacks.atomic_checkpoint import AtomicCheckpointIO
from mdeas.cli import exit_on_data_error
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.evaluate import evaluate
from mdeas.export import export
from mdeas.inference import CheckpointError, load_module, read_checkpoint
from mdeas.module import MaskDepthModule, NonFiniteLossError
from mdeas.predict import predict
from mdeas.train import train
from tests.conftest import compose_train, encode, write_canonical_zip

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SMALL = ("model=densenet_dilated", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
         "trainer.max_epochs=1", "callbacks.image_grid=null", "trainer.accelerator=cpu",
         "trainer.precision=32-true")  # fmt: skip
ID = r"b\d{3}_f\d{2}"


class PoisonBatch(pl.Callback):
    """Fills the depth targets of training batch `batch` (of each epoch) with NaN."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch:
            batch["depth"].fill_(float("nan"))


POISON = "+callbacks.poison={_target_: tests.test_hardening.PoisonBatch, batch: 1}"


def config(out: Path, data: Path, *overrides: str):
    return compose_train(out, data, *SMALL, *overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A finished one-epoch run (its checkpoints must survive every failure below) and its tiny dataset."""
    root = tmp_path_factory.mktemp("hardening")
    data = write_canonical_zip(root / "tiny.zip", num_samples=24, size=32)
    train(config(root / "run", data))
    return {"root": root, "data": data, "dir": root / "run", "last": root / "run" / "checkpoints" / "last.ckpt"}


def fingerprint(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted((run_dir / "checkpoints").iterdir())}


def rewrite(src: Path, out: Path, prefix: str, damage: Callable[[bytes], bytes] | None) -> Path:
    """A copy of the zip `src` whose entries starting with `prefix` are replaced by `damage(bytes)` (None: left out)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if not info.filename.startswith(prefix):
                zout.writestr(info, zin.read(info))
            elif damage is not None:
                zout.writestr(info, damage(zin.read(info)))
    return out


def flip_bytes(src: Path, out: Path, prefix: str) -> Path:
    """A copy of the (stored, uncompressed) zip `src` with one byte flipped inside each entry under `prefix`: the
    zip still opens, reading those entries fails its CRC check."""
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        for info in zf.infolist():
            if info.filename.startswith(prefix):
                at = info.header_offset  # local header: 30 bytes, then the name and the extra field
                name, extra = (int.from_bytes(raw[at + k : at + k + 2], "little") for k in (26, 28))
                raw[at + 30 + name + extra + info.file_size // 2] ^= 0xFF
    out.write_bytes(bytes(raw))
    return out


def bad_zip(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A damaged copy of a 24-sample dataset and the regex of the error message after `<zip>: `."""
    clean = write_canonical_zip(tmp_path / f"{kind}-source.zip", num_samples=24, size=32)
    out = tmp_path / f"{kind}.zip"
    if kind == "truncated":
        return rewrite(clean, out, "fg_bg/", lambda d: d[: len(d) // 3]), rf"fg_bg/{ID}\.jpg: cannot decode image"
    if kind == "zero_byte":
        return rewrite(clean, out, "fg_bg/", lambda d: b""), rf"fg_bg/{ID}\.jpg: empty entry \(0 bytes\)"
    if kind == "sixteen_bit":
        mask16 = encode(np.full((32, 32), 65535, np.uint16), "PNG")
        return rewrite(
            clean, out, "mask/", lambda d: mask16
        ), rf"mask/{ID}\.png: expected an 8-bit mask \(grey or colour\).*I;16"
    if kind == "channels":
        rgb = encode(np.zeros((32, 32, 3), np.uint8), "PNG")
        return rewrite(clean, out, "depth/", lambda d: rgb), rf"depth/{ID}\.png: expected a 16-bit depth PNG.*RGB"
    if kind == "size":
        small = encode(np.zeros((16, 16), np.uint8), "PNG")
        return rewrite(clean, out, "mask/", lambda d: small), rf"mask/{ID}\.png: size 16x16 differs from fg_bg/{ID}"
    if kind == "missing":
        return rewrite(clean, out, "depth/b002_f04.png", None), r"depth/b002_f04\.png: listed for sample b002_f04"
    if kind == "crc":
        return flip_bytes(clean, out, "fg_bg/"), rf"fg_bg/{ID}\.jpg: cannot read entry \(Bad CRC-32"
    if kind == "not_a_zip":
        out.write_bytes(b"PK\x03\x04 but nothing else")
        return out, "not a readable zip"
    if kind == "empty":
        return rewrite(clean, out, "manifest.csv", lambda d: b"id,bg,fg_bg,mask,depth\n"), "dataset has no samples"
    if kind == "no_manifest":  # meta.json still says canonical
        return rewrite(clean, out, "manifest.csv", None), r"manifest\.csv: missing; not a canonical mdeas dataset"
    if kind == "empty_split":
        small = write_canonical_zip(out, num_samples=2, size=32)  # one background: nothing for val and test
        said = r"the val split is empty \(2 samples on 1 background, each dealt whole to one split: data\.split_by="
        return small, said + r"background\); use more data or change data\.split or data\.split_by"
    raise ValueError(kind)


def train_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mdeas.train", *SMALL, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300)


def run_all(cwd: Path, cases: list[tuple[list[str], str]]) -> None:
    """Run the train entry in `cwd` for each (args, last-line regex) case, a few at a time (those given one run folder
    one after another: a second training process there would be refused); each must exit 1 with its one-line
    error last on stderr and no traceback."""
    folders: dict[str, list[int]] = {}
    for i, (args, _) in enumerate(cases):
        folders.setdefault(next((a for a in args if a.startswith("hydra.run.dir=")), str(i)), []).append(i)
    results = {}

    def in_turn(indices: list[int]) -> None:
        for i in indices:
            results[i] = train_cli(cwd, *cases[i][0])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(in_turn, folders.values()))
    done = [results[i] for i in range(len(cases))]
    for (args, expected), result in zip(cases, done, strict=True):
        last = (result.stderr.strip().splitlines() or [""])[-1]
        assert result.returncode == 1, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (args, result.stderr[-2000:])
        assert re.fullmatch(expected, last), (args, last)


def test_train_entry_reports_bad_input_in_one_line_and_keeps_an_earlier_run(run, tmp_path):
    before = fingerprint(run["dir"])
    missing, missing_message = bad_zip(tmp_path, "missing")
    existing = f"hydra.run.dir={run['dir']}"
    cases = [
        ([f"data.path={missing}", existing], f"error: {re.escape(str(missing))}: {missing_message}.*"),
        ([f"data.path={run['data']}", "data.limit=0", "hydra.run.dir=l"],
         r"error: data\.limit must be a positive number of samples \(or null for all\), got 0 \(building data\)"),
        (["model=nope", "hydra.run.dir=n"], r"error: In 'train': Could not find 'model/nope'"),
        (["data.nope=1", "hydra.run.dir=n"],
         r"error: Could not override 'data\.nope'\. To append to your config use \+data\.nope=1 "
         r"\(Key 'nope' is not in struct\)"),
        (["hydra.run.dir=/proc/mdeas-run"], "error: /proc/mdeas-run: No such file or directory"),
    ]  # fmt: skip
    run_all(tmp_path, cases)
    assert fingerprint(run["dir"]) == before


@pytest.mark.slow
def test_train_entry_reports_bad_runs_in_one_line_and_keeps_an_earlier_run(run, tmp_path):
    before = fingerprint(run["dir"])
    existing = f"hydra.run.dir={run['dir']}"
    other_model = (f"ckpt_path={run['last']}", "model=dwsep_pair")
    (tmp_path / "file").write_text("a file, not a folder")
    cases = [
        ([f"data.path={run['data']}", POISON, "loss=ssim_mse", existing],
         rf"error: non-finite loss at step 1: depth_ssim=nan, depth_mse=nan, depth_l1=nan; non-finite values in the "
         rf"batch's depth \(batch ids: {ID}, {ID}, {ID}, {ID}\); skip such batches with skip_nonfinite=true"),
        ([f"data.path={run['data']}", *other_model, existing],
         rf"error: {re.escape(str(run['last']))}: weights of model 'densenet_dilated' do not fit model 'dwsep_pair'.*"),
        ([f"data.path={run['data']}", "data.split=[0.9,0.1,0]", "test=true", "hydra.run.dir=t"],
         r"error: test=true but data\.split=\[0\.9, 0\.1, 0\] leaves no test samples; set test=false"),
        ([f"data.path={run['data']}", "+loss.terms.c={target:mask_coarse,fn:bce,weight:1.0}", "hydra.run.dir=c"],
         r"error: loss\.terms\.c: target mask_coarse is the base's mask of a refined model \(model=resunet_detail, "
         r"or \+model/refiner=patch\); model 'densenet_dilated' has none"),
        ([f"data.path={run['data']}", "data.split=[0.5,0.5]", "hydra.run.dir=s"],
         r"error: data\.split \(train, val, test\) must be 3 finite numbers, got \[0\.5, 0\.5\] \(building data\)"),
        ([f"data.path={run['data']}", "optimized_metric=val/mask/iuo", "trainer.max_epochs=4", "hydra.run.dir=o"],
         r"error: optimized_metric: val/mask/iuo not among the val metrics: .*val/mask/iou, .*val/score"),
        (["loss.terms.nope.weight=1", "hydra.run.dir=n"],
         r"error: Could not override 'loss\.terms\.nope\.weight'\. To append to your config use "
         r"\+loss\.terms\.nope\.weight=1 \(Key 'nope' is not in struct\)"),
        ([f"hydra.run.dir={tmp_path / 'file' / 'run'}"],
         f"error: {re.escape(str(tmp_path / 'file'))}.*: Not a directory"),
    ]  # fmt: skip
    run_all(tmp_path, cases)
    assert fingerprint(run["dir"]) == before
    events = EventAccumulator(str(tmp_path / "o" / "tensorboard")).Reload()
    assert len(events.Scalars("val/mask/iou")) == 1  # the misspelt metric stopped the run at its first validation
    assert load_module(run["last"]).hparams.model["name"] == "densenet_dilated"


@pytest.mark.slow
def test_train_entry_names_every_kind_of_bad_data_key_and_path(run, tmp_path):
    cases = []
    kinds = ("truncated", "zero_byte", "sixteen_bit", "channels", "size", "crc", "not_a_zip", "empty", "empty_split")
    for kind in kinds:
        path, message = bad_zip(tmp_path, kind)
        workers = "data.num_workers=2" if kind == "zero_byte" else "data.num_workers=0"  # raised in a loader worker
        cases.append(([f"data.path={path}", workers, f"hydra.run.dir={kind}"],
                      f"error: {re.escape(str(path))}: {message}.*"))  # fmt: skip
    run_all(tmp_path, cases)


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "zero_byte",
        "sixteen_bit",
        "channels",
        "size",
        "crc",
        "not_a_zip",
        "empty",
        "empty_split",
        "no_manifest",
    ],
)
def test_bad_data_is_one_line_naming_zip_and_entry(tmp_path, kind):
    path, message = bad_zip(tmp_path, kind)
    dm = MaskDepthDataModule(path=str(path), image_size=16, batch_size=24, num_workers=0, split=(1.0, 0.0, 0.0))
    if kind == "empty_split":
        dm = MaskDepthDataModule(path=str(path), image_size=16, num_workers=0)
    with pytest.raises(SystemExit) as caught, exit_on_data_error():
        dm.setup()
        next(iter(dm.train_dataloader()))
    assert re.match(f"error: {re.escape(str(path))}: {message}", str(caught.value.code)), caught.value.code
    assert "\n" not in str(caught.value.code)


def test_data_limit_larger_than_the_data_warns_and_a_non_positive_one_is_an_error(run, caplog):
    with caplog.at_level(logging.WARNING, logger="mdeas.data.datamodule"):
        dm = MaskDepthDataModule(path=str(run["data"]), limit=1000, num_workers=0)
        dm.setup()
    assert sum(len(d) for d in dm.datasets.values()) == 24
    assert "data.limit=1000 is more than the dataset's 24 samples: using all of them" in caplog.text
    for limit in (0, -5, "all", True):
        expected = (
            rf"^data\.limit must be a positive number of samples \(or null for all\), got {re.escape(repr(limit))}$"
        )
        with pytest.raises(ValueError, match=expected):
            MaskDepthDataModule(path=str(run["data"]), limit=limit)


def test_a_config_object_that_cannot_be_built_is_named(run, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: MaskDepthDataModule.__init__\(\) got an unexpected keyword "
                       r"argument 'nope' \(building data\)$"), exit_on_data_error():  # fmt: skip
        train(config(tmp_path / "r", run["data"], "+data.nope=1"))
    term = "+loss.terms.nope={target: colour, fn: l1}"
    with (
        pytest.raises(SystemExit, match=r"^error: loss term 'nope': unknown target 'colour'.*\(building "),
        exit_on_data_error(),
    ):
        train(config(tmp_path / "r", run["data"], term))
    for override, match in (
        ("+optim.momentm=0.9", r"^optim: .*unexpected keyword argument 'momentm'$"),
        ("+sched.scheduler.gama=0.5", r"^sched\.scheduler: .*unexpected keyword argument 'gama'$"),
    ):
        with pytest.raises(ValueError, match=match):  # the train entry ends such a ValueError in one line
            train(config(tmp_path / "r", run["data"], override))


def test_resume_refuses_a_non_checkpoint_and_another_optimiser_or_schedule_before_fitting(run, tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: not a PyTorch checkpoint"):
        train(config(tmp_path / "a", run["data"], f"ckpt_path={tmp_path / 'junk.ckpt'}"))
    expected = r"last\.ckpt: holds the state of optimiser torch\.optim\.Adam, not torch\.optim\.SGD; resume with"
    with pytest.raises(CheckpointError, match=expected):
        train(config(tmp_path / "b", run["data"], f"ckpt_path={run['last']}", "optim=sgd"))
    expected = r"last\.ckpt: holds the state of LR schedule mdeas\.schedules\.warmup_cosine, not torch\.optim\.lr_sc"
    with pytest.raises(CheckpointError, match=expected):
        train(config(tmp_path / "c", run["data"], f"ckpt_path={run['last']}", "sched=step"))
    with pytest.raises(CheckpointError, match=r"schedule mdeas\.schedules\.warmup_cosine, not none; resume with"):
        train(config(tmp_path / "d", run["data"], f"ckpt_path={run['last']}", "sched=none"))
    # other batches would skip or repeat the rest of a resumed epoch; other data is another run
    expected = r"last\.ckpt: trained with data\.batch_size=4, not 8; resume with the run's own data settings, or "
    with pytest.raises(CheckpointError, match=expected):
        train(config(tmp_path / "e", run["data"], f"ckpt_path={run['last']}", "data.batch_size=8"))
    other = write_canonical_zip(tmp_path / "other.zip", num_samples=24, size=32, seed=9)
    with pytest.raises(CheckpointError, match=r"last\.ckpt: trained on other data than data\.path holds now; resume"):
        train(config(tmp_path / "f", other, f"ckpt_path={run['last']}"))
    assert not any((tmp_path / name / "checkpoints").exists() for name in "abcdef")


def test_skip_nonfinite_is_refused_with_several_processes(run, tmp_path, monkeypatch):
    monkeypatch.setattr(pl.Trainer, "fit", lambda *args, **kwargs: pytest.fail("reached fit"))
    cfg = config(tmp_path / "r", run["data"], "trainer=ddp", "trainer.devices=2", "skip_nonfinite=true")
    with pytest.raises(ValueError, match=r"^skip_nonfinite=true is single-device only; this run has 2 processes$"):
        train(cfg)


def test_skip_nonfinite_leaves_the_batch_out_and_counts_it(run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mdeas.module"):
        results = train(config(tmp_path / "r", run["data"], "skip_nonfinite=true", POISON, "test=false"))
    assert re.search(rf"skipped a batch: non-finite loss at step 1: depth_ssim=nan, .*\(batch ids: {ID}", caplog.text)
    assert {"val/mask/iou", "val/score"} <= set(results["val"]), results["val"]  # validation ran
    assert all(np.isfinite(v) for v in results["val"].values())
    weights = load_module(tmp_path / "r" / "checkpoints" / "last.ckpt").model.parameters()
    assert all(torch.isfinite(p).all() for p in weights)
    scalars: dict[str, list[float]] = {}
    for events in (tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events)).Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(s.value for s in acc.Scalars(tag))
    assert scalars["train/skipped_nonfinite"] == [1.0]
    assert np.isfinite(scalars["train/loss_epoch"]).all()


def test_the_nonfinite_error_names_the_total_when_every_term_is_finite():
    cfg = config(Path("unused"), Path("unused.zip"))
    module = MaskDepthModule(model=cfg.model, loss=cfg.loss, optim=cfg.optim)
    batch = {"depth": torch.zeros(1), "id": [f"s{i}" for i in range(10)]}
    terms = {"a": torch.tensor(1e38), "b": torch.tensor(3e38)}
    with pytest.raises(NonFiniteLossError, match=r"^non-finite loss at step 0: total=inf \(batch ids: s0, s1, s2, "
                       r"s3, s4, s5, s6, s7, \.\.\.\); skip such batches"):  # fmt: skip
        module._nonfinite(batch, terms["a"] + terms["b"] * 2, terms)


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(run, tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    path.write_bytes(run["last"].read_bytes())
    checkpoint = torch.load(path, weights_only=False)

    def full_disk(content: dict, filepath) -> None:
        with open(filepath, "wb") as f:
            f.write(b"\x80half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(torch_io, "_atomic_save", full_disk)
    with pytest.raises(SystemExit, match=f"^error: {re.escape(str(path))}: No space left on device$"):
        with exit_on_data_error():
            AtomicCheckpointIO().save_checkpoint({**checkpoint, "epoch": 7}, path)
    assert path.read_bytes() == run["last"].read_bytes() and os.listdir(path.parent) == ["last.ckpt"]
    assert read_checkpoint(path)["epoch"] == 0
    kept, written = load_module(path).state_dict(), load_module(run["last"]).state_dict()
    assert kept.keys() == written.keys() and all(torch.equal(kept[k], written[k]) for k in kept)


def test_outputs_that_cannot_be_written_are_named(run, tmp_path):
    ckpt = str(run["last"])
    bg = tmp_path / "bg.png"
    bg.write_bytes(encode(np.zeros((32, 32, 3), np.uint8), "PNG"))
    pair = {"ckpt_path": ckpt, "bg": str(bg), "fg_bg": str(bg), "input": None, "video": None, "batch_size": 2,
            "device": "cpu"}  # fmt: skip
    cases = [
        (lambda: predict(OmegaConf.create({**pair, "output": "/proc/mdeas-out"})),
         "/proc/mdeas-out: No such file or directory"),
        (lambda: predict(OmegaConf.create({**pair, "output": "/proc"})), "/proc: "),  # before the model runs
        (lambda: export(ckpt, "torchscript", "/proc/mdeas-out/m.pt"), "/proc/mdeas-out: No such file or directory"),
        (lambda: export(ckpt, "torchscript", str(bg / "m.pt")), f"{bg}: a file, not a folder"),
        (lambda: evaluate(ckpt, {}, "/proc/mdeas-out"), "/proc/mdeas-out: No such file or directory"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(SystemExit) as caught, exit_on_data_error(CheckpointError, ValueError):
            call()
        assert str(caught.value.code).startswith(f"error: {message}"), caught.value.code


@pytest.mark.parametrize("bad_id", ["../../escaped", "/tmp/escaped", "b000/../../escaped"])
def test_predict_refuses_ids_that_would_write_outside_the_output_folder(run, tmp_path, bad_id):
    source = write_canonical_zip(tmp_path / "d.zip", num_samples=2)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(tmp_path / "bad.zip", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "manifest.csv":  # the last row: refused before the first is written
                head, _, last = data.rstrip(b"\n").rpartition(b"\n")
                data = head + b"\n" + bad_id.encode() + last[last.index(b",") :] + b"\n"
            zout.writestr(info, data)
    cfg = {"ckpt_path": str(run["last"]), "input": str(tmp_path / "bad.zip"), "bg": None, "fg_bg": None,
           "video": None, "batch_size": 2, "device": "cpu", "output": str(tmp_path / "out" / "preds")}  # fmt: skip
    with pytest.raises(SystemExit) as caught, exit_on_data_error(CheckpointError, ValueError):
        predict(OmegaConf.create(cfg))
    assert (
        caught.value.code
        == f"error: {tmp_path / 'bad.zip'}: {bad_id}: refused: this id would write outside the output folder"
    )
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped_mask.png").exists()
    assert not list((tmp_path / "out").rglob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl_c", "sigterm"])
def test_an_interrupt_leaves_a_resumable_checkpoint_and_says_how_to_resume(run, tmp_path, stop, status):
    cmd = [sys.executable, "-m", "mdeas.train", *SMALL, f"data.path={run['data']}", "trainer.max_epochs=100",
           "hydra.run.dir=run"]  # fmt: skip
    ckpts = tmp_path / "run" / "checkpoints"
    with (tmp_path / "output").open("w") as output:
        # Ctrl-C as a terminal sends it, whatever this process's own handling (Lightning ignores SIGINT in the
        # process after handling one, and an ignored signal stays ignored in children)
        restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=output, stderr=subprocess.STDOUT, preexec_fn=restore)
        try:
            deadline = time.monotonic() + 300  # a loaded machine: the first epoch may take long
            while not (ckpts / "last.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert (ckpts / "last.ckpt").exists(), "no first checkpoint to interrupt after"
            proc.send_signal(stop)  # Ctrl-C or a scheduler's SIGTERM, after the first epoch's checkpoint
            exit_status = proc.wait(timeout=120)
        finally:
            proc.kill()
    text = (tmp_path / "output").read_text()
    assert exit_status == status and "Traceback" not in text, text[-2000:]
    same = " ".join([*SMALL, f"data.path={run['data']}", "trainer.max_epochs=100"])  # it resumes in its folder
    assert f"resume with: python -m mdeas.train {same} ckpt_path={ckpts / 'interrupted.ckpt'}" in text
    assert "weights_only" not in text  # Lightning's word on saving without the argument, read as a load warning
    interrupted = read_checkpoint(ckpts / "interrupted.ckpt")
    assert interrupted["epoch"] >= read_checkpoint(ckpts / "last.ckpt")["epoch"] >= 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "interrupted.ckpt", "last.ckpt"]
    # resuming from it trains on: one epoch past the interrupted one (which may have ended just before the Ctrl-C,
    # so that finishing it alone would write nothing)
    # the command as logged, without hydra.run.dir: the run goes on in its own folder
    before = (ckpts / "last.ckpt").read_bytes()
    resume = (f"ckpt_path={ckpts / 'interrupted.ckpt'}", f"trainer.max_epochs={interrupted['epoch'] + 2}", "test=false")
    cmd = [sys.executable, "-m", "mdeas.train", *SMALL, f"data.path={run['data']}", *resume]
    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (ckpts / "last.ckpt").read_bytes() != before and not (tmp_path / "outputs").exists()
    assert read_checkpoint(ckpts / "last.ckpt")["global_step"] > interrupted["global_step"] > 0
