import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mdeas.models import create_model, list_models
from mdeas.models.encoders.mobile import MobileEncoder
from mdeas.models.fusion import SiameseDiff
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip

CONF = str(Path(__file__).resolve().parents[1] / "conf")

# The seeds' published totals (the README's model table) and the efficient design's count, derived by hand in
# test_mobile_unet_count_follows_from_its_design.
PARAMS = {
    "densenet_dilated": 1_521_026,
    "resunet": 11_033_922,
    "resnet_unet": 11_234_066,
    "unet_shared": 3_165_170,
    "dwsep_pair": 690_505,
    "mobile_unet": 1_634_690,
}
STRIDES = {
    "densenet_dilated": 16,
    "resunet": 16,
    "resnet_unet": 16,
    "unet_shared": 4,
    "dwsep_pair": 1,
    "mobile_unet": 32,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_preset_is_registered_and_has_a_config():
    assert list_models() == sorted([*PARAMS, "composed"])
    assert list_models("*unet*") == ["mobile_unet", "resnet_unet", "resunet", "unet_shared"]
    configs = {p.stem: OmegaConf.load(p) for p in Path(CONF, "model").glob("*.yaml")}
    presets = {name for name, cfg in configs.items() if "model" not in cfg}  # the others are _global_ recipes
    assert sorted(presets) == list_models()
    for name in set(configs) - presets:  # a recipe builds on a registered preset
        assert configs[name].model.name in list_models(), name


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_preset_matches_its_parameter_count_and_stride(name):
    model = create_model(name)
    assert n_params(model) == PARAMS[name]
    assert model.stride == STRIDES[name]


def test_mobile_unet_count_follows_from_its_design():
    """mobile_unet's parameters counted from its design (mdeas.models.presets.mobile_unet): a bias-free conv + BN,
    ConvBN(i, o, k), holds i·o·k² + 2o; an inverted residual block an expansion ConvBN(i, mid, 1) where mid ≠ i, a
    depthwise k×k conv + BN (mid·k² + 2·mid), a squeeze-excite of width r (two 1×1 convs with biases: 2·mid·r + r +
    mid) and a projection ConvBN(mid, o, 1)."""

    def conv_bn(i: int, o: int, k: int) -> int:
        return i * o * k * k + 2 * o

    def block(i: int, o: int, k: int, mid: int, r: int) -> int:
        expand = conv_bn(i, mid, 1) if mid != i else 0
        return expand + mid * k * k + 2 * mid + (2 * mid * r + r + mid if r else 0) + conv_bn(mid, o, 1)

    # (in, out, kernel, mid = in × expansion rounded to a multiple of 8, r = mid / 4 rounded so, 0: no SE)
    blocks = [(16, 16, 3, 16, 8), (16, 24, 3, 64, 0), (24, 24, 3, 72, 0), (24, 40, 5, 72, 24), (40, 40, 5, 120, 32),
              (40, 80, 3, 240, 0), (80, 80, 3, 200, 0), (80, 112, 3, 480, 120), (112, 160, 5, 672, 168),
              (160, 160, 5, 960, 240)]  # fmt: skip
    encoder = conv_bn(6, 16, 3) + sum(block(*b) for b in blocks)  # the stem reads bg and fg_bg, 6 channels
    # a decoder stage: (upsampled input + skip) channels i → o, depthwise 3×3 + BN, pointwise 1×1 + BN; a 16 → 1 head
    stages = [(160 + 112, 96), (96 + 40, 48), (48 + 24, 32), (32 + 16, 24), (24, 16)]
    decoder = sum(9 * i + 2 * i + i * o + 2 * o for i, o in stages) + 16 + 1
    model = create_model("mobile_unet")
    assert n_params(model.fusion) == encoder and n_params(model.neck) == 0
    assert n_params(model.mask_decoder) == n_params(model.depth_decoder) == decoder
    assert encoder + 2 * decoder == PARAMS["mobile_unet"]


def test_dwsep_pair_is_two_separate_networks_with_the_seed_counts():
    model = create_model("dwsep_pair")
    assert n_params(model.depth_net) == 492_947
    assert n_params(model.mask_net) == 197_558


def _check_outputs(model: torch.nn.Module, out: dict, size: int) -> None:
    assert set(out) == {"mask", "depth"}
    for key in ("mask", "depth"):
        assert out[key].shape == (2, 1, size, size) and out[key].dtype == torch.float32
        assert torch.isfinite(out[key]).all()
    # logits, not probabilities: no sigmoid anywhere (losses apply it)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_output_contract_at_64_and_backpropagation_to_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name)
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    _check_outputs(model, out, 64)
    (out["mask"].pow(2).mean() + out["depth"].pow(2).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_in_eval_mode_a_sample_is_predicted_alone_as_in_a_batch(name):
    """No mixing across the batch and no BatchNorm left on batch statistics: the first sample's outputs in a batch of
    three are its outputs alone."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    bg, fg_bg = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        batch, alone = model(bg, fg_bg), model(bg[:1], fg_bg[:1])
    for key in ("mask", "depth"):
        assert torch.allclose(batch[key][:1], alone[key], atol=1e-5), key


@pytest.mark.slow
@pytest.mark.parametrize("size", [128, 224])
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_output_contract_at_128_and_224(name, size):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size), torch.randn(2, 3, size, size))
    _check_outputs(model, out, size)


def test_a_size_off_the_stride_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"input size 48x48 is not divisible by the model stride 32 \(sizes that are: 32 or 64\)$"
    ):
        create_model("mobile_unet")(torch.zeros(1, 3, 48, 48), torch.zeros(1, 3, 48, 48))


def test_composed_model_from_the_config_group():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "model=composed",
                "model.encoder=mobile",
                "model.fusion=siamese_diff",
                "model.decoder=light",
                "+model.decoder_kwargs.widths=[64,32,24,16,16]",
            ],
        )
    model = instantiate(cfg.model)
    assert isinstance(model.fusion, SiameseDiff) and isinstance(model.fusion.encoder, MobileEncoder)
    assert [block[-1][0].out_channels for block in model.mask_decoder.blocks] == [64, 32, 24, 16, 16]
    out = model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    assert out["mask"].shape == out["depth"].shape == (1, 1, 32, 32)


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_canonical_zip(tmp_path_factory.mktemp("data") / "tiny.zip", num_samples=24, size=32, fg_per_bg=2)


FAST_TRAIN = {"densenet_dilated", "mobile_unet", "resunet"}  # resunet: the base of the default (resunet_detail)


@pytest.mark.parametrize(
    "name", [n if n in FAST_TRAIN else pytest.param(n, marks=pytest.mark.slow) for n in [*sorted(PARAMS), "composed"]]
)
def test_fast_dev_run_through_the_train_entry(name, tmp_path, tiny_zip):
    """One batch of each preset through train: finite val metrics in their ranges, and val/score the mean of the
    mask IoU and the depth δ1 (the tiny set has known depth)."""
    cfg = compose_train(tmp_path / "run", tiny_zip, f"model={name}", "+trainer.fast_dev_run=true")
    val = train(cfg)["val"]
    assert {"val/mask/iou", "val/mask/dice", "val/depth/delta1", "val/depth/rmse", "val/score"} <= set(val)
    assert all(math.isfinite(v) for v in val.values()), val
    assert val["val/score"] == pytest.approx((val["val/mask/iou"] + val["val/depth/delta1"]) / 2)
    assert all(0.0 <= val[key] <= 1.0 for key in ("val/mask/iou", "val/mask/dice", "val/depth/delta1")), val
