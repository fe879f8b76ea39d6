"""Checkpoints are data, never code: a checkpoint whose unpickling would run something (here: create a file) is
refused by every entry point that loads one, in one line naming the file and what it would load, and the file is
never created; what mdeas itself saves (state dicts of every optimiser and schedule) loads as plain data."""

import os
import pathlib
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mdeas.callbacks.atomic_checkpoint import AtomicCheckpointIO
from mdeas.checkpoint_configs import DATA_TARGETS, MODEL_TARGETS, UntrustedConfig, check_buildable
from mdeas.cli import exit_on_data_error
from mdeas.compare import compare
from mdeas.evaluate import evaluate
from mdeas.export import export
from mdeas.inference import CheckpointError, load_module, read_checkpoint
from mdeas.predict import predict
from mdeas.train import train
from tests.conftest import CONF, compose_train, write_canonical_zip


class RunsCommand:
    """Unpickled, runs `touch <marker>` (the classic payload: any callable named in a pickle is called)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class TouchesPath:
    """Unpickled, creates `marker` through pathlib (no shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def crafted(path: Path, payload: object) -> Path:
    """An mdeas-looking checkpoint (model config, weights) whose hyper-parameters hold `payload`."""
    torch.save({"hyper_parameters": {"model": {"name": payload}}, "state_dict": {"w": torch.zeros(1)}}, path)
    return path


def test_the_crafted_checkpoint_would_run_its_payload_if_read_as_code(tmp_path):
    """The payloads are real: read the old way (weights_only=False), they create their file."""
    for kind in (RunsCommand, TouchesPath):
        marker = tmp_path / f"proof-{kind.__name__}"
        torch.load(crafted(tmp_path / f"{kind.__name__}.ckpt", kind(marker)), weights_only=False)
        assert marker.exists()


@pytest.mark.parametrize(
    "payload, named",
    [(RunsCommand, r"posix\.system"), (TouchesPath, r"builtins\.getattr, pathlib\.Path, pathlib\.PosixPath")],
)
def test_read_checkpoint_refuses_a_payload_naming_what_it_would_load(tmp_path, payload, named):
    marker = tmp_path / "created"
    path = crafted(tmp_path / "evil.ckpt", payload(marker))
    with pytest.raises(CheckpointError, match=rf"^{path}: refused: it would load {named} \(a checkpoint may hold"):
        read_checkpoint(path)
    assert not marker.exists()


def test_a_plain_pickle_and_an_old_format_checkpoint_with_a_payload_are_refused(tmp_path):
    marker = tmp_path / "created"
    (tmp_path / "plain.ckpt").write_bytes(pickle.dumps({"state_dict": RunsCommand(marker)}))
    torch.save({"x": RunsCommand(marker)}, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)
    for name in ("plain.ckpt", "old.ckpt"):
        with pytest.raises(CheckpointError, match=rf"{name}: refused: it would load posix\.system"):
            read_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_a_torchscript_export_is_named_as_such_and_a_plain_checkpoint_is_still_read(tmp_path):
    """A TorchScript archive (what `mdeas.export` writes) given as ckpt_path: one line that says what it is, before
    torch.load warns about it; a torch.save zip, which holds no code/ folder, still reads."""
    torch.jit.script(torch.nn.Linear(2, 1)).save(str(tmp_path / "model.pt"))
    with pytest.raises(CheckpointError) as refused, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        read_checkpoint(tmp_path / "model.pt")
    assert not warned, [str(w.message) for w in warned]
    assert str(refused.value) == (
        f"{tmp_path / 'model.pt'}: a TorchScript export, not a checkpoint; give the .ckpt that training wrote"
    )
    torch.save({"state_dict": {}}, tmp_path / "weights.ckpt")
    with pytest.raises(CheckpointError, match=r"weights\.ckpt: not an mdeas checkpoint \(no model config"):
        read_checkpoint(tmp_path / "weights.ckpt")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"image_size": "abc"}, "data.image_size must be a whole number >= 1, got 'abc'"),
        ({"image_size": 64, "mean": [0.5]}, "data.mean must be 3 finite numbers, got [0.5]"),
        ({"std": [0.2, 0.0, 0.2]}, "data.std must be 3 finite positive numbers, got [0.2, 0.0, 0.2]"),
        ([64], "data must be a mapping, got list"),
        ({"depth": {"unit": "mm", "max": 0}}, "data.depth.max must be above 0, got 0"),
        ({"depth": {"max": 255, "inverted": "x"}}, "data.depth.inverted must be true or false, got 'x'"),
        ({"depth_known": "no"}, "data.depth_known must be true or false, got 'no'"),
        ({"depth": {"max": "abc"}}, "data.depth.max must be a finite number, got 'abc'"),
    ],
)
def test_a_damaged_record_of_the_data_is_named_with_the_file(tmp_path, data, problem):
    """What inference reads from a checkpoint (input size, normalisation) is checked when it is read."""
    torch.save({"hyper_parameters": {"model": {"name": "x"}, "data": data}, "state_dict": {}}, tmp_path / "d.ckpt")
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(tmp_path / "d.ckpt")
    assert str(refused.value) == f"{tmp_path / 'd.ckpt'}: damaged record of its data: {problem}"
    torch.save(
        {"hyper_parameters": {"model": {"name": "x"}, "data": {"image_size": 64}}, "state_dict": {}},
        tmp_path / "ok.ckpt",
    )
    assert read_checkpoint(tmp_path / "ok.ckpt")["hyper_parameters"]["data"] == {"image_size": 64}


def test_a_checkpoint_with_non_finite_weights_is_refused_naming_the_first(tmp_path):
    state = {"a.weight": torch.ones(2), "b.weight": torch.tensor([1.0, float("nan")]), "c.bias": torch.full((1,), 1e9)}
    torch.save({"hyper_parameters": {"model": {"name": "x"}}, "state_dict": state}, tmp_path / "nan.ckpt")
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(tmp_path / "nan.ckpt")
    assert str(refused.value) == (
        f"{tmp_path / 'nan.ckpt'}: non-finite weights (b.weight holds NaN or inf): the run that saved it diverged"
    )
    state["b.weight"] = torch.tensor([1.0, 2.0])
    state["steps"] = torch.tensor(3)  # integer tensors are counters, not weights
    torch.save({"hyper_parameters": {"model": {"name": "x"}}, "state_dict": state}, tmp_path / "ok.ckpt")
    assert read_checkpoint(tmp_path / "ok.ckpt")["state_dict"]["steps"] == 3


def test_a_checkpoint_holding_config_objects_is_refused_clearly(tmp_path):
    """Hyper-parameters are saved as plain containers; a checkpoint holding OmegaConf objects (not one mdeas wrote)
    is refused naming the classes rather than loaded as code."""
    config = OmegaConf.create({"name": "densenet_dilated"})
    torch.save({"hyper_parameters": {"model": config}, "state_dict": {}}, tmp_path / "config.ckpt")
    with pytest.raises(
        CheckpointError, match=r"config.ckpt: refused: it would load .*omegaconf\.dictconfig\.DictConfig"
    ):
        read_checkpoint(tmp_path / "config.ckpt")


def test_lightning_loads_through_the_checkpoint_io_as_data_even_when_told_otherwise(tmp_path, monkeypatch):
    marker = tmp_path / "created"
    path = crafted(tmp_path / "evil.ckpt", RunsCommand(marker))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for asked in (None, False):
        with pytest.raises(pickle.UnpicklingError, match="posix.system"):
            AtomicCheckpointIO().load_checkpoint(path, weights_only=asked)
    assert not marker.exists()
    plain = tmp_path / "plain.ckpt"
    torch.save({"epoch": 1, "state_dict": {"w": torch.ones(2)}, "loops": {"fit": {"a": [1, 2.5, "x", None]}}}, plain)
    assert AtomicCheckpointIO().load_checkpoint(plain)["state_dict"]["w"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("optim", sorted(p.stem for p in (Path(CONF) / "optim").glob("*.yaml")))
def test_every_optimiser_and_schedule_saves_plain_data(tmp_path, optim):
    """What a resumable checkpoint holds besides weights (the optimiser's and each schedule's state) needs no
    allow-list: no global outside torch's default set."""
    model = torch.nn.Linear(2, 2)
    optimizer = instantiate(OmegaConf.load(Path(CONF) / "optim" / f"{optim}.yaml"))(params=model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    states = {"optimizer_states": [optimizer.state_dict()], "lr_schedulers": []}
    auto = {"total_steps": 10, "steps_per_epoch": 2, "max_lr": [0.1]}
    for sched in sorted((Path(CONF) / "sched").glob("*.yaml")):
        spec = OmegaConf.to_container(OmegaConf.load(sched)).get("scheduler")
        if spec:
            values = {k: auto[k] if v == "auto" else v for k, v in spec.items()}
            scheduler = instantiate(values, _convert_="all")(optimizer=optimizer)
            scheduler.step(*([1.0] if "Plateau" in spec["_target_"] else []))
            states["lr_schedulers"].append(scheduler.state_dict())
    torch.save(states, tmp_path / "states.ckpt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "states.ckpt") == []
    assert len(torch.load(tmp_path / "states.ckpt", weights_only=True)["lr_schedulers"]) >= 5


def test_every_entry_point_refuses_a_payload_in_one_line_and_never_runs_it(tmp_path):
    """predict (as a command: exit status 1, one line), evaluate, compare, export, and train with init_from= or
    ckpt_path= (resume), each as its command runs it (`exit_on_data_error`)."""
    marker = tmp_path / "created"
    evil = crafted(tmp_path / "evil.ckpt", RunsCommand(marker))
    data = write_canonical_zip(tmp_path / "data.zip")
    refused = f"error: {evil}: refused: it would load posix.system (a checkpoint may hold only tensors and plain data)"
    done = subprocess.run(
        [sys.executable, "-m", "mdeas.predict", f"ckpt_path={evil}", "output=out", f"input={data}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == refused, done.stderr[-1500:]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        predicting = compose("predict", overrides=[f"ckpt_path={evil}", f"output={tmp_path / 'p'}", f"input={data}"])
    runs = {
        "predict": lambda: predict(predicting),
        "evaluate": lambda: evaluate(str(evil), {}, str(tmp_path / "e")),
        "compare": lambda: compare([str(evil)], {}, str(tmp_path / "c")),
        "export": lambda: export(str(evil), "torchscript", str(tmp_path / "m.pt")),
        "init_from": lambda: train(compose_train(tmp_path / "a", data, f"init_from={evil}")),
        "resume": lambda: train(compose_train(tmp_path / "b", data, f"ckpt_path={evil}")),
    }
    for name, run in runs.items():
        with pytest.raises(SystemExit) as caught, exit_on_data_error(CheckpointError, ValueError):
            run()
        assert str(caught.value.code) == refused, name
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


def _with_model(path: Path, model: dict, **hparams) -> Path:
    torch.save({"hyper_parameters": {"model": model, "loss": {}, "optim": {}, **hparams}, "state_dict": {}}, path)
    return path


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("os.makedirs", "os.makedirs"),
        ("torch.optim.optimizer.torch.load", "torch.optim.optimizer.torch.load"),  # a path through attributes
        ("albumentations.core.serialization.save", "albumentations.core.serialization.save"),
    ],
)
def test_a_config_target_outside_mdeas_parts_is_refused_before_anything_is_built(tmp_path, target, named):
    """The model and loss configs inside a checkpoint are instantiated: a `_target_` there names a function to call.
    One that is not among mdeas' own parts by its exact name is refused, at any depth, and never called."""
    made = tmp_path / "made"
    model = {"_target_": "mdeas.models.create_model", "name": "resunet", "parts": [{"_target_": target}]}
    model["parts"][0]["name"] = str(made)
    path = _with_model(tmp_path / "targets.ckpt", model)
    refused = rf"^{path}: refused: its config would call {re.escape(named)} \(a checkpoint may build only mdeas"
    with pytest.raises(CheckpointError, match=refused):
        load_module(path)
    with pytest.raises(SystemExit) as caught, exit_on_data_error(CheckpointError, ValueError):
        export(str(path), "torchscript", str(tmp_path / "m.pt"))
    assert re.match(f"error: {refused[1:]}", str(caught.value.code))
    assert not made.exists()


def test_an_interpolation_that_would_make_a_config_is_refused(tmp_path):
    """OmegaConf resolves `${...}` when a config is built: `oc.create` would make a config naming any target."""
    made = tmp_path / "made"
    hidden = '${oc.create:"{_target_: os.makedirs, name: ' + str(made) + '}"}'
    path = _with_model(tmp_path / "hidden.ckpt", {"_target_": "mdeas.models.create_model", "extra": hidden})
    with pytest.raises(CheckpointError, match=rf"^{path}: refused: its config holds an interpolation \(\$\{{oc"):
        load_module(path)
    assert not made.exists()


def test_every_target_mdeas_configs_save_in_a_checkpoint_is_allowed():
    """What conf/model, loss and data (augmentations included) can put in a checkpoint is built; what optim and
    sched name is never built from a checkpoint, so a run with an optimiser of its own loads too."""

    def targets(*groups: str) -> list[dict]:
        found = {
            line.split("_target_:", 1)[1].strip()
            for group in groups
            for path in (Path(CONF) / group).rglob("*.yaml")
            for line in path.read_text().splitlines()
            if "_target_:" in line
        }
        return [{"_target_": target} for target in sorted(found)]

    model, data = targets("model", "loss"), targets("data")
    assert len(model) >= 4 and {"_target_": "albumentations.HorizontalFlip"} in data
    check_buildable(model, MODEL_TARGETS)
    check_buildable(data + [{"_target_": "albumentations.CLAHE"}], DATA_TARGETS, transforms=True)
    with pytest.raises(UntrustedConfig, match=r"^its config would call albumentations\.HorizontalFlip \(a checkpoint"):
        check_buildable([{"_target_": "albumentations.HorizontalFlip"}], MODEL_TARGETS)  # transforms: data only


def test_a_run_with_an_optimiser_of_its_own_evaluates_and_its_data_config_is_checked(tmp_path):
    """Adamax keeps its betas as given: built from a config they were an OmegaConf list, a class in the checkpoint."""
    data = write_canonical_zip(tmp_path / "data.zip")
    own = ("optim._target_=torch.optim.Adamax", "+trainer.limit_train_batches=1")
    ckpt = train(compose_train(tmp_path / "run", data, *own))["best_checkpoint"]
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []
    assert load_module(ckpt).hparams.optim["_target_"] == "torch.optim.Adamax"
    assert evaluate(ckpt, {}, str(tmp_path / "e"))["samples"] > 0
    # the data config evaluate builds is checked as the model's is
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["data"]["config"]["synth"] = {"_target_": "os.makedirs", "name": str(tmp_path / "m")}
    torch.save(state, tmp_path / "data.ckpt")
    with pytest.raises(CheckpointError, match=r"data\.ckpt: refused: its config would call os\.makedirs \(a chec"):
        evaluate(str(tmp_path / "data.ckpt"), {}, str(tmp_path / "e"))
    assert not (tmp_path / "m").exists()


def test_another_programs_lightning_checkpoint_is_named_not_mdeas(tmp_path):
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}: a folder, not a checkpoint file$"):
        read_checkpoint(tmp_path)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"model": {}, "lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: not an mdeas checkpoint \(hyper-parameters \['lr'\] are"):
        load_module(path)
    torch.save({"state_dict": {}, "hyper_parameters": {"model": "resnet18"}}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: not an mdeas checkpoint \(no model config or weights"):
        load_module(path)
    model = {"_target_": "mdeas.models.create_model", "name": "no_such_model"}
    torch.save({"state_dict": {}, "hyper_parameters": {"model": model, "loss": {}, "optim": {}}}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: cannot build its model \(.*unknown model 'no_such_model'"):
        load_module(path)
