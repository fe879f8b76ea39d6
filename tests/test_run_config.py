"""What a run records is what it ran: progressive stages write their own config; evaluate takes train's data.*
overrides."""

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from mdeas.data.layouts import load_index
from mdeas.data.splits import limited, split
from mdeas.data.zipstore import ZipStore
from mdeas.evaluate import data_config, data_overrides, default_output, same_files
from mdeas.module import MaskDepthModule, depth_alignment, selection_score
from tests.conftest import TINY_RUN, write_canonical_zip

ROOT = Path(__file__).resolve().parents[1]
TINY = {"name": "composed", "encoder": "plain", "encoder_kwargs": {"widths": [8, 16]}, "decoder": "light"}
STAGES = "progressive.stages=[{image_size:32,max_epochs:1,batch_size:4},{image_size:64,max_epochs:1,batch_size:2}]"


def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """A two-stage progressive chain (32 px then 64 px) on a tiny zip, one batch an epoch."""
    root = tmp_path_factory.mktemp("chain")
    data = write_canonical_zip(root / "d.zip", num_samples=40, size=32, fg_per_bg=2)
    tiny = [o for o in TINY_RUN if not o.startswith("data.image_size")]
    args = ["-m", "experiment=progressive", STAGES, "stage=0,1", f"data.path={data}", *tiny, "test=false"]
    args += ["+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1", "callbacks.image_grid=null"]
    done = run("mdeas.train", *args, f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "sweep"


def test_each_stage_records_the_size_batch_epochs_and_start_it_used(chain):
    first, second = (OmegaConf.load(chain / f"stage{k}" / ".hydra" / "config.yaml") for k in (0, 1))
    assert (first.data.image_size, first.data.batch_size, first.trainer.max_epochs) == (32, 4, 1)
    assert (second.data.image_size, second.data.batch_size, second.trainer.max_epochs) == (64, 2, 1)
    assert first.get("init_from") is None
    assert second.init_from == str(chain / "stage0" / "checkpoints" / "best.ckpt")


def test_evaluate_takes_the_data_overrides_train_takes(chain, tmp_path):
    ckpt = chain / "stage1" / "checkpoints" / "best.ckpt"
    full = run("mdeas.evaluate", f"ckpt_path={ckpt}", f"output={tmp_path / 'full'}", cwd=tmp_path)
    few = run(
        "mdeas.evaluate", f"ckpt_path={ckpt}", f"output={tmp_path / 'few'}", "data.limit=20", "data.image_size=32",
        cwd=tmp_path,
    )  # fmt: skip
    assert full.returncode == 0 and few.returncode == 0, full.stderr[-1500:] + few.stderr[-1500:]
    counts = [json.loads((tmp_path / name / "metrics.json").read_text())["samples"] for name in ("full", "few")]
    samples = load_index(str(chain.parent / "d.zip")).samples
    expected = [len(limited(split(samples, (0.7, 0.15, 0.15), 0), limit, 0)[2]) for limit in (None, 20)]
    assert counts == expected and expected[1] < expected[0]
    misspelt = run("mdeas.evaluate", f"ckpt_path={ckpt}", "data.limt=20", cwd=tmp_path)
    assert misspelt.returncode == 1 and "error: Could not override 'data.limt'" in misspelt.stderr


def test_evaluate_caches_where_this_machine_says_and_writes_beside_a_loose_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MDEAS_CACHE_DIR", str(tmp_path / "cache"))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt_path=x.ckpt", "data.limit=20"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        overrides = data_overrides(cfg)
    finally:
        HydraConfig.instance().cfg = None  # as outside a Hydra app, for the tests after this one
    assert overrides == {"cache_dir": str(tmp_path / "cache"), "limit": 20}
    assert data_config({"path": "a.zip", "cache_dir": "/trained/here"}, overrides)["cache_dir"] == str(
        tmp_path / "cache"
    )
    assert default_output(tmp_path / "run" / "checkpoints" / "best.ckpt") == tmp_path / "run" / "evaluate"
    assert default_output(tmp_path / "copies" / "best.ckpt") == tmp_path / "copies" / "evaluate"
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert default_output(ckpt, "data/real_check.zip") == tmp_path / "run" / "evaluate" / "real_check"
    assert default_output(ckpt, ["a/p1.zip", "https://host/x/p2.zip"]) == tmp_path / "run" / "evaluate" / "p1+p2"


def test_same_files_compares_the_files_a_data_path_names(tmp_path, monkeypatch):
    for name in ("a.zip", "b.zip"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "link.zip").symlink_to(tmp_path / "a.zip")
    monkeypatch.chdir(tmp_path)
    assert same_files("a.zip", str(tmp_path / "link.zip")) and same_files(["a.zip", "b.zip"], ["./a.zip", "b.zip"])
    assert not same_files("a.zip", "b.zip") and not same_files(["a.zip", "b.zip"], ["b.zip", "a.zip"])
    assert not same_files(["a.zip"], ["a.zip", "b.zip"]) and not same_files("a.zip", None)


def test_data_config_applies_dotted_overrides_on_the_stored_config():
    stored = {"path": "a.zip", "limit": None, "split": [0.7, 0.15, 0.15], "synth": {"num_samples": 10}}
    assert data_config(stored, {"limit": 200, "synth.num_samples": 50}) == {
        "path": "a.zip",
        "limit": 200,
        "split": [0.7, 0.15, 0.15],
        "synth": {"num_samples": 50},
    }
    other = data_config(stored, {"path": "b.zip"})
    assert (other["path"], other["split"], other["limit"]) == ("b.zip", [0.0, 0.15, 0.85], None)
    assert data_config(stored, {"path": "b.zip", "limit": 30})["limit"] == 30
    again = data_config({**stored, "limit": 500}, {"path": str(Path("a.zip").resolve())})  # the training zip itself
    assert (again["split"], again["limit"]) == ([0.7, 0.15, 0.15], 500)
    with pytest.raises(ValueError, match="holds no data config"):
        data_config({}, {"limit": 3})


def test_the_training_zips_are_known_by_their_contents_from_any_folder(tmp_path, monkeypatch):
    """A path typed relative to the training folder names nothing from another one: the recorded contents decide."""
    for folder in ("train", "elsewhere"):
        (tmp_path / folder).mkdir()
    trained_on = write_canonical_zip(tmp_path / "train" / "set.zip")
    contents = ZipStore([trained_on]).contents()
    stored = {"path": "set.zip", "split": [0.7, 0.15, 0.15], "limit": None}
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert data_config(stored, {"path": str(trained_on)})["split"] == [0.0, 0.15, 0.85]  # by the path alone
    assert data_config(stored, {"path": str(trained_on)}, contents)["split"] == [0.7, 0.15, 0.15]
    shutil.copy(trained_on, tmp_path / "elsewhere" / "copy.zip")
    assert data_config(stored, {"path": "copy.zip"}, contents)["split"] == [0.7, 0.15, 0.15]
    other = write_canonical_zip(tmp_path / "elsewhere" / "other.zip", seed=3)
    assert data_config(stored, {"path": str(other)}, contents)["split"] == [0.0, 0.15, 0.85]
    assert ZipStore([other]).contents() != contents
    assert data_config(stored, {"path": None}, contents)["path"] is None  # data.path=null: the generated default


def test_selection_score_is_the_mean_of_mask_iou_and_depth_delta1(chain):
    values = {"mask/iou": torch.tensor(0.8), "depth/delta1": torch.tensor(0.6), "depth/count": torch.tensor(10.0)}
    assert selection_score(values).item() == pytest.approx(0.7)
    assert selection_score({**values, "depth/count": torch.tensor(0.0)}).item() == pytest.approx(0.8)
    relative = {**values, "depth/delta1_ssi": torch.tensor(1.0)}  # depth right up to scale and shift
    assert selection_score(relative, relative=True).item() == pytest.approx(0.9)
    assert selection_score(relative).item() == pytest.approx(0.7)
    val = json.loads((chain / "stage1" / "metrics.json").read_text())["val"]
    assert val["val/score"] == pytest.approx((val["val/mask/iou"] + val["val/depth/delta1"]) / 2, abs=1e-6)


def test_a_module_on_relative_depth_scores_delta1_after_the_scale_and_shift_fit():
    """Relative depth is right up to scale and shift: val/score takes δ1 after the fit, not the plain δ1."""
    module = MaskDepthModule(
        model=TINY,
        loss=OmegaConf.load(ROOT / "conf/loss/relative_ssi.yaml"),
        optim=OmegaConf.load(ROOT / "conf/optim/adam.yaml"),
        data={"depth": {"unit": "relative", "inverted": False}},
    )
    target = torch.linspace(0.2, 0.8, 2 * 64).reshape(2, 1, 8, 8)
    module.mask_metrics["val"].update(torch.full((2, 1, 8, 8), 5.0), torch.ones(2, 1, 8, 8))
    module.depth_metrics["val"].update(target / 2, target, torch.ones(2, 1, 8, 8, dtype=torch.bool))  # half as deep
    logged = {}
    module.log_dict = lambda values, **_: logged.update(values)
    module._log_metrics("val")
    assert logged["val/depth/delta1"] == 0.0 and logged["val/depth/delta1_ssi"] == pytest.approx(1.0)
    assert logged["val/score"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("depth", "align"),
    [({"unit": "mm"}, "depth"), ({"unit": "relative", "inverted": False}, "inverse"),
     ({"unit": "relative", "inverted": True}, "depth"), ({"unit": "mm", "inverted": True}, "depth")],
)  # fmt: skip
def test_the_module_fits_relative_depth_in_the_space_of_its_encoding(depth, align):
    """Relative depth stored as depth is fitted in disparity: a prediction affine in the target's inverse is then
    exact after the fit; stored inverse-like (or metric) the fit is in the stored value, where it is not."""
    assert depth_alignment(depth["unit"], depth.get("inverted", False)) == align
    loss, optim = (OmegaConf.load(ROOT / f"conf/{name}.yaml") for name in ("loss/relative_ssi", "optim/adam"))
    module = MaskDepthModule(model=TINY, loss=loss, optim=optim, data={"depth": depth})
    target = torch.linspace(0.2, 0.8, 64).reshape(1, 1, 8, 8)
    module.mask_metrics["val"].update(torch.full((1, 1, 8, 8), 5.0), torch.ones(1, 1, 8, 8))
    module.depth_metrics["val"].update(1 / (0.5 / target + 2), target, torch.ones(1, 1, 8, 8, dtype=torch.bool))
    logged = {}
    module.log_dict = lambda values, **_: logged.update(values)
    module._log_metrics("val")
    if align == "inverse":
        assert logged["val/depth/abs_rel_ssi"] == pytest.approx(0.0, abs=1e-5)
    else:
        assert logged["val/depth/abs_rel_ssi"] > 0.01


def test_gradient_accumulation_is_a_trainer_option_at_lightnings_default():
    """README names `trainer.accumulate_grad_batches` as an option: it takes a value without `+`."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        default = compose("train").trainer.accumulate_grad_batches
        two = compose("train", ["trainer.accumulate_grad_batches=2"]).trainer.accumulate_grad_batches
    assert default == inspect.signature(pl.Trainer).parameters["accumulate_grad_batches"].default == 1
    assert two == 2
