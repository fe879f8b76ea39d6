"""Learning checks: each preset overfits one fixed batch of generated samples, so a model that cannot learn fails.

The batch: 8 samples of 32x32 px from the project's generator (fixed seed), read back through MaskDepthDataModule,
so decoding, resizing and ImageNet normalisation are the real ones. The loss: conf/loss/bce_dice_ssim.yaml built
by Hydra with its depth SSIM and edge terms switched off (weight 0), i.e. mask BCE + Dice and depth L1. Plain Adam
on that same batch; afterwards mask IoU (threshold 0.5, `mdeas.metrics.functional.mask_metrics`) must reach 0.95,
the depth loss must have fallen at least 10x from its first value, and the depth itself, measured apart from the
loss, must be much closer to the batch's depth than a constant is (`depth_fit`), so a depth term that stopped
reading its target cannot pass. The default model (conf/train.yaml's, refined) does the same on a 64 px batch,
to IoU 0.85.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.losses import LossGroup
from mdeas.metrics.functional import mask_metrics
from mdeas.models import create_model
from mdeas.synth.generate import generate

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32  # px; divisible by both presets' stride (16)
BATCH = 8
MIN_IOU = 0.95
MIN_DEPTH_DROP = 10.0  # first depth loss / final depth loss
MAX_DEPTH_FIT = 0.3  # mean |depth error| / that of the best constant (the median)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def fixed_batch(folder: Path, size: int) -> dict:
    """8 generated samples (seed 0) at `size` px, read back through MaskDepthDataModule as one training batch."""
    path = generate(folder / "data.zip", BATCH, workers=1, image_size=size, seed=0, fg_per_bg=4)
    dm = MaskDepthDataModule(
        path=str(path), image_size=size, batch_size=BATCH, num_workers=0, split=(1.0, 0.0, 0.0),
        cache_dir=str(folder / "cache"),
    )  # fmt: skip
    dm.setup()
    return next(iter(dm.train_dataloader()))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The fixed batch (DESIGN.md contract): bg, fg_bg float32 [8,3,32,32] normalised; mask float32 [8,1,32,32]
    in {0,1}; depth float32 [8,1,32,32] in [0,1]; valid bool [8,1,32,32]."""
    out = fixed_batch(tmp_path_factory.mktemp("learning"), IMAGE_SIZE)
    assert out["fg_bg"].shape == (BATCH, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert 0 < out["mask"].mean() < 0.5 and bool(out["valid"].all())
    return out


def make_loss() -> LossGroup:
    """The default loss config with `loss.terms.depth_ssim.weight=0` and `loss.terms.depth_edge.weight=0`."""
    cfg = OmegaConf.load(ROOT / "conf" / "loss" / "bce_dice_ssim.yaml")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["terms.depth_ssim.weight=0", "terms.depth_edge.weight=0"]))
    return instantiate(cfg)


def depth_loss(loss: LossGroup, parts: dict[str, torch.Tensor]) -> float:
    """Sum of the weighted depth terms (a float, the loss's unit: mean |error| of normalised depth here)."""
    return sum(parts[t.name].item() for t in loss.terms if t.target == "depth")


def depth_fit(depth: torch.Tensor, batch: dict) -> float:
    """Mean |depth − target| over valid pixels, over that of the target's median (the best constant): 0 exact,
    1 no better than a constant."""
    target, valid = batch["depth"][batch["valid"]], batch["valid"]
    return float((depth[valid] - target).abs().mean() / (target - target.median()).abs().mean())


def overfit(
    name: str, batch: dict, lr: float, steps: int, build: Callable[[], tuple[nn.Module, LossGroup]] | None = None
) -> tuple[float, float, float]:
    """Train preset `name` (seeded) for `steps` Adam steps on `batch`; returns (mask IoU, depth loss drop,
    `depth_fit`). `build`: the model and loss to train instead (built after seeding), default the preset and
    `make_loss()`.

    IoU and the final depth loss come from one more forward pass in training mode (BatchNorm on the batch's own
    statistics, the mode the fit was made in); the drop is the first step's depth loss over that final one.
    """
    torch.manual_seed(0)
    model, loss = build() if build else (create_model(name), make_loss())
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        total, parts = loss(model(batch["bg"], batch["fg_bg"]), batch)
        first = depth_loss(loss, parts) if first is None else first
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    with torch.no_grad():
        out = model(batch["bg"], batch["fg_bg"])
        _, parts = loss(out, batch)
    iou = float(mask_metrics(out["mask"], batch["mask"], threshold=0.5)["iou"])
    return iou, first / depth_loss(loss, parts), depth_fit(out["depth"], batch)


def learned(iou: float, drop: float, fit: float) -> bool:
    """The thresholds: mask IoU ≥ 0.95, depth loss down ≥ 10x, depth error ≤ 0.3 of a constant's."""
    return iou >= MIN_IOU and drop >= MIN_DEPTH_DROP and fit <= MAX_DEPTH_FIT


@pytest.mark.parametrize(
    ("name", "lr", "steps"),
    [("densenet_dilated", 3e-3, 70), pytest.param("resunet", 5e-3, 90, marks=pytest.mark.slow)],
)  # the default model (resunet_detail, a resunet base) overfits in the fast set below
def test_preset_overfits_one_batch(batch: dict, name: str, lr: float, steps: int) -> None:
    """Each preset fits the fixed batch: IoU ≥ 0.95, depth loss ÷ ≥ 10 and depth error ≤ 0.3 of a constant's
    after `steps` steps at `lr`."""
    iou, drop, fit = overfit(name, batch, lr, steps)
    print(f"{name}: lr={lr:g} steps={steps} iou={iou:.4f} depth_drop={drop:.1f}x depth_fit={fit:.3f}")
    message = (
        f"iou={iou:.4f} (≥ {MIN_IOU}), depth drop={drop:.1f}x (≥ {MIN_DEPTH_DROP}), fit={fit:.3f} (≤ {MAX_DEPTH_FIT})"
    )
    assert learned(iou, drop, fit), f"{name} did not fit one batch: {message}"


def test_check_fails_without_learning(batch: dict) -> None:
    """The same loop with lr=0 leaves the model as built: the thresholds are not met (the check can fail)."""
    iou, drop, fit = overfit("densenet_dilated", batch, lr=0.0, steps=3)
    print(f"lr=0: iou={iou:.4f} depth_drop={drop:.2f}x depth_fit={fit:.3f}")
    assert drop == pytest.approx(1.0)
    assert iou < MIN_IOU and fit > MAX_DEPTH_FIT
    assert not learned(iou, drop, fit)


DEFAULT_SIZE = 64  # px: the default model's stride (its base's 16 × the refiner's downsample 4)
DEFAULT_MIN_IOU = 0.85  # its base sees 16 px and the refiner a tenth of the patches in training: slower to fit


@pytest.fixture(scope="module")
def default_batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The fixed batch of `batch` at 64 px."""
    return fixed_batch(tmp_path_factory.mktemp("learning_default"), DEFAULT_SIZE)


def default_model_and_loss() -> tuple[nn.Module, LossGroup]:
    """What `python -m mdeas.train` trains (conf/train.yaml's model and loss: the refined resunet, with the coarse
    mask's BCE term), at 64 px, the depth SSIM and edge terms off as in `make_loss`."""
    overrides = [f"data.image_size={DEFAULT_SIZE}", "loss.terms.depth_ssim.weight=0", "loss.terms.depth_edge.weight=0"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.model.refiner.alpha and "mask_coarse_bce" in cfg.loss.terms  # the default's own parts
    return instantiate(cfg.model), instantiate(cfg.loss)


@pytest.mark.parametrize(("lr", "learns"), [(3e-3, True), (0.0, False)])
def test_the_default_model_overfits_one_batch(default_batch: dict, lr: float, learns: bool) -> None:
    """The default model fits the fixed batch in 100 steps (IoU ≥ 0.85, depth loss ÷ ≥ 10, depth error ≤ 0.3 of a
    constant's); with lr=0 it does not, so the check can fail."""
    iou, drop, fit = overfit("default", default_batch, lr, 100 if learns else 2, default_model_and_loss)
    print(f"default model: lr={lr:g} iou={iou:.4f} depth_drop={drop:.1f}x depth_fit={fit:.3f}")
    met = iou >= DEFAULT_MIN_IOU and drop >= MIN_DEPTH_DROP and fit <= MAX_DEPTH_FIT
    assert met == learns, f"iou={iou:.4f} (≥ {DEFAULT_MIN_IOU}), depth drop={drop:.1f}x, fit={fit:.3f}"
