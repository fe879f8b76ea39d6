"""Every recipe in conf/experiment composes into its seed's model, loss, optimiser and sizes."""

import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mdeas.progressive import apply_stage

CONF = Path(__file__).resolve().parents[1] / "conf"

RECIPES = {
    "seed000": ("resunet", "rmse_dice", "torch.optim.SGD", 112, 128, 3),
    "seed001": ("unet_shared", "dice_bce_densedepth", "torch.optim.Adam", 64, 32, 15),
    "seed002": ("densenet_dilated", "ssim_mse", "torch.optim.Adam", 224, 32, 20),
    "seed003": ("resnet_unet", "bce_ssim", "torch.optim.SGD", 64, 128, 20),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_composes_the_seed_setup(name):
    model, loss, optim, size, batch, epochs = RECIPES[name]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", "paths.output_dir=x"], return_hydra_config=False)
    resolved = OmegaConf.to_container(cfg.data, resolve=False)
    assert cfg.model.name == model and cfg.optim._target_ == optim
    assert cfg.loss == OmegaConf.load(CONF / "loss" / f"{loss}.yaml")
    assert (resolved["image_size"], resolved["batch_size"], cfg.trainer.max_epochs) == (size, batch, epochs)


def test_seed004_is_a_progressive_chain_of_dwsep_pair():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=seed004"])
    assert cfg.model.name == "dwsep_pair" and cfg.sched.scheduler._target_.endswith("ReduceLROnPlateau")
    assert [(s.image_size, s.max_epochs) for s in cfg.progressive.stages] == [(64, 4), (128, 6), (224, 2)]


def test_best_is_the_default_base_model_and_loss_as_a_bf16_compiled_progressive_chain(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        default = compose("train")
        cfg = compose("train", overrides=["experiment=best", "stage=2", f"paths.output_dir={tmp_path}/stage2"])
    assert cfg.model.name == default.model.name == "resunet" and "refiner" not in cfg.model
    terms = OmegaConf.to_container(default.loss.terms)
    assert terms.pop("mask_coarse_bce")["target"] == "mask_coarse"  # the refined default also scores its base's mask
    assert (OmegaConf.to_container(cfg.loss.terms), cfg.sched) == (terms, default.sched)
    assert cfg.loss._target_ == default.loss._target_
    assert [s.image_size for s in cfg.progressive.stages] == [64, 128, 224]
    assert (cfg.trainer.precision, cfg.channels_last, cfg.compile) == ("bf16-mixed", True, True)
    (tmp_path / "stage1" / "checkpoints").mkdir(parents=True)
    (tmp_path / "stage1" / "checkpoints" / "best.ckpt").touch()
    (tmp_path / "stage1" / "metrics.json").write_text("{}")  # stage 1 finished
    staged = apply_stage(cfg)
    assert (staged.data.image_size, staged.data.synth.image_size, staged.data.batch_size) == (224, 224, 32)
    assert staged.init_from == str(tmp_path / "stage1" / "checkpoints" / "best.ckpt")


def test_progressive_stages_read_one_generated_set_and_the_trainer_keys_they_name_exist(tmp_path, caplog):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = ["experiment=progressive", "stage=0", f"paths.output_dir={tmp_path}/stage0"]
        cfg = compose("train", overrides=[*overrides, "trainer.check_val_every_n_epoch=2", "trainer.max_steps=5"])
        larger = compose("train", overrides=[*overrides, "progressive.stages.0.image_size=256"])
    staged = apply_stage(cfg)  # the first stage: 64 px pairs read from the set stored at 224 px, as the last stage
    assert (staged.data.image_size, staged.data.synth.image_size) == (64, 224)
    assert (cfg.trainer.check_val_every_n_epoch, cfg.trainer.max_steps, cfg.trainer.val_check_interval) == (2, 5, None)
    assert "enlarged" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="mdeas.progressive"):
        apply_stage(larger)
    assert "stage 0 trains at 256 px on a generated set stored at 224 px (enlarged): set data.synth.image_size=256" in (
        caplog.text
    )


def test_every_recipe_file_is_tested():
    assert {p.stem for p in (CONF / "experiment").glob("*.yaml")} == {*RECIPES, "seed004", "progressive", "best"}
