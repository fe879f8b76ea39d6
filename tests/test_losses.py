"""Loss terms against hand-computed values, and the configurable loss group."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mdeas.losses import TERMS, LossGroup, get_term
from mdeas.losses import terms as T

ROOT = Path(__file__).resolve().parents[1]
ALL_TERMS = sorted(TERMS)


def t22(*values: float) -> torch.Tensor:
    """A 1x1x2x2 tensor from four values in row-major order."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2)


def reference_ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Textbook SSIM map: 11x11 Gaussian (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2, reflect padding, float64."""
    x, y = x.double(), y.double()
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :])[None, None]

    def blur(img: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(img, (5, 5, 5, 5), mode="reflect"), w)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


# ---------------------------------------------------------------- terms, hand-computed


def test_bce_matches_numpy_formula() -> None:
    x = np.array([0.0, 2.0, -1.0, 3.0])
    t = np.array([0.0, 1.0, 1.0, 0.0])
    expected = np.mean(-(t * np.log(1 / (1 + np.exp(-x))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-x)))))
    got = T.bce(t22(*x), t22(*t))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_dice_and_soft_iou_empty_and_full_masks() -> None:
    empty, full = t22(0, 0, 0, 0), t22(1, 1, 1, 1)
    very_neg, very_pos, half = (
        torch.full_like(empty, -30.0),
        torch.full_like(empty, 30.0),
        torch.zeros_like(empty),
    )
    # empty target predicted empty: perfect
    assert T.dice(very_neg, empty).item() == pytest.approx(0.0, abs=1e-5)
    assert T.soft_iou(very_neg, empty).item() == pytest.approx(0.0, abs=1e-5)
    # empty target predicted full: worst
    assert T.dice(very_pos, empty).item() == pytest.approx(1.0, abs=1e-6)
    assert T.soft_iou(very_pos, empty).item() == pytest.approx(1.0, abs=1e-6)
    # full target predicted full: perfect
    assert T.dice(very_pos, full).item() == pytest.approx(0.0, abs=1e-6)
    assert T.soft_iou(very_pos, full).item() == pytest.approx(0.0, abs=1e-6)
    # full target, p = 0.5 everywhere: dice 1 - 2*2/(2+4) = 1/3; iou 1 - 2/(2+4-2) = 1/2
    assert T.dice(half, full).item() == pytest.approx(1 / 3, abs=1e-6)
    assert T.soft_iou(half, full).item() == pytest.approx(1 / 2, abs=1e-6)
    # squared (seed 004): 1 - (2*2 + 1) / (4*0.25 + 4 + 1) = 1/6
    assert T.dice(half, full, smooth=1.0, squared=True).item() == pytest.approx(1 / 6, abs=1e-6)


def test_pointwise_terms_by_hand() -> None:
    pred, target = t22(0.1, 0.5, 0.9, 0.3), t22(0, 1, 1, 0)
    assert T.mse(pred, target).item() == pytest.approx(0.09, abs=1e-7)  # (.01 + .25 + .01 + .09) / 4
    assert T.l1(pred, target).item() == pytest.approx(0.25, abs=1e-7)  # (.1 + .5 + .1 + .3) / 4
    assert T.rmse(pred, target).item() == pytest.approx(math.sqrt(0.09 + 1e-6), abs=1e-7)
    logits0 = torch.zeros_like(pred)  # sigmoid -> 0.5 everywhere
    assert T.mse(logits0, target, sigmoid=True).item() == pytest.approx(0.25, abs=1e-7)
    assert T.l1(logits0, target, sigmoid=True).item() == pytest.approx(0.5, abs=1e-7)
    assert T.rmse(logits0, target, sigmoid=True).item() == pytest.approx(math.sqrt(0.25 + 1e-6), abs=1e-7)
    # smooth L1, beta 1: 0, 0.5*0.25, 3-0.5, 2-0.5
    assert T.smooth_l1(t22(0, 0.5, 3, -2), torch.zeros(1, 1, 2, 2)).item() == pytest.approx(4.125 / 4)


def test_berhu_both_branches() -> None:
    # |x| = .1 .2 .5 1 -> c = 0.2; .1 and .2 are <= c (L1), .5 -> (.25+.04)/.4 = .725, 1 -> 1.04/.4 = 2.6
    got = T.berhu(torch.zeros(1, 1, 2, 2), t22(0.1, 0.2, 0.5, 1.0))
    assert got.item() == pytest.approx((0.1 + 0.2 + 0.725 + 2.6) / 4, abs=1e-6)


def test_berhu_perfect_prediction_has_finite_gradient() -> None:
    pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    loss = T.berhu(pred, pred.detach().clone())
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all()


def test_gradient_l1_linear_ramp() -> None:
    # ramp of slope 1 along x: d/dx = 1 inside, 0.5 on the two replicated border columns; d/dy = 0
    ramp = torch.arange(4.0).repeat(4, 1).reshape(1, 1, 4, 4)
    got = T.gradient_l1(ramp, torch.zeros_like(ramp))
    assert got.item() == pytest.approx((2 * 1 + 2 * 0.5) / 4 / 2, abs=1e-6)


def test_ssim_identical_zero_and_different_positive() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 16, 16, generator=g)
    assert T.ssim(img, img.clone()).item() == pytest.approx(0.0, abs=1e-5)
    flat = torch.full_like(img, 0.5)
    loss = T.ssim(flat, img)
    assert 0.1 < loss.item() < 2.0
    assert loss.item() == pytest.approx(T.ssim(img, flat).item(), abs=1e-6)  # SSIM is symmetric


def test_ssim_matches_reflect_padded_reference() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 1, 20, 24, generator=g), torch.rand(2, 1, 20, 24, generator=g)
    b = 0.7 * a + 0.3 * b  # correlated, so SSIM is well away from 0
    expected = 1.0 - reference_ssim_map(a, b).mean().item()
    assert T.ssim(a, b).item() == pytest.approx(expected, abs=1e-5)
    logits = torch.randn(2, 1, 20, 24, generator=g)
    expected = 1.0 - reference_ssim_map(torch.sigmoid(logits), b).mean().item()
    assert T.ssim(logits, b, sigmoid=True).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_valid_averages_map_over_valid_pixels() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 1, 16, 16, generator=g), torch.rand(1, 1, 16, 16, generator=g)
    valid = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    valid[..., 3:9, 2:12] = True
    expected = 1.0 - reference_ssim_map(a, b)[valid].mean().item()
    assert T.ssim(a, b, valid).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_too_small_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="reflect padding"):
        T.ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_valid_mask_by_hand() -> None:
    pred, target = t22(0.1, 0.5, 0.9, 0.3), t22(0, 1, 1, 0)
    valid = t22(1, 1, 0, 0).bool()
    assert T.mse(pred, target, valid).item() == pytest.approx((0.01 + 0.25) / 2, abs=1e-7)
    assert T.l1(pred, target, valid).item() == pytest.approx((0.1 + 0.5) / 2, abs=1e-7)
    # no valid pixel: 0, not NaN, and still differentiable
    p = pred.clone().requires_grad_(True)
    loss = T.mse(p, target, torch.zeros_like(valid))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", [n for n in ALL_TERMS if n != "ssim"])
def test_invalid_pixels_do_not_change_loss(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    pred, target = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    valid[:, :, :3, :] = False
    valid[1, :, :, 6:] = False
    fn = get_term(name)
    before = fn(pred, target, valid)
    pred2, target2 = pred.clone(), target.clone()
    pred2[~valid] = 5.0
    target2[~valid] = -3.0
    after = fn(pred2, target2, valid)
    assert after.item() == pytest.approx(before.item(), abs=1e-6)
    assert fn(pred2, target2).item() != pytest.approx(before.item(), abs=1e-6)  # they did matter unmasked


@pytest.mark.parametrize("name", ALL_TERMS)
def test_every_term_float32_scalar_with_gradient_under_autocast(name: str) -> None:
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(2, 1, 16, 16, generator=g).to(torch.bfloat16).requires_grad_(True)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = get_term(name)(pred, target)
    assert loss.dtype == torch.float32 and loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad.float()).all()


def test_get_term_unknown_lists_names() -> None:
    with pytest.raises(KeyError, match="nope.*berhu.*ssim"):
        get_term("nope")
    assert get_term("bce") is TERMS["bce"]


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="l1"):
        T.l1(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


# ---------------------------------------------------------------- group


def _sample(seed: int = 5, size: int = 16) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "mask": torch.randn(2, 1, size, size, generator=g),
        "depth": torch.rand(2, 1, size, size, generator=g),
    }
    valid = torch.rand(2, 1, size, size, generator=g) > 0.2
    batch = {
        "mask": (torch.rand(2, 1, size, size, generator=g) > 0.5).float(),
        "depth": torch.rand(2, 1, size, size, generator=g) * valid,
        "valid": valid,
    }
    return outputs, batch


def test_group_total_is_weighted_sum_and_weight_zero_skipped() -> None:
    outputs, batch = _sample()
    group = LossGroup(
        [
            {"name": "m_bce", "target": "mask", "fn": "bce", "weight": 0.5},
            {"name": "m_dice", "target": "mask", "fn": "dice", "weight": 2.0, "kwargs": {"smooth": 1.0}},
            {"name": "d_l1", "target": "depth", "fn": "l1", "weight": 1.5},
            {"name": "d_off", "target": "depth", "fn": "berhu", "weight": 0.0},
        ]
    )
    total, parts = group(outputs, batch)
    expected = {
        "m_bce": 0.5 * T.bce(outputs["mask"], batch["mask"]),
        "m_dice": 2.0 * T.dice(outputs["mask"], batch["mask"], smooth=1.0),
        "d_l1": 1.5 * T.l1(outputs["depth"], batch["depth"], batch["valid"]),
    }
    assert list(parts) == ["m_bce", "m_dice", "d_l1", "d_off"] == group.names
    for name, value in expected.items():
        assert parts[name].item() == pytest.approx(value.item(), rel=1e-6)
    assert parts["d_off"].item() == 0.0
    assert total.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-6)
    # depth terms use valid, mask terms do not
    assert parts["d_l1"].item() != pytest.approx(1.5 * T.l1(outputs["depth"], batch["depth"]).item(), rel=1e-4)


def test_group_accepts_omegaconf_and_backpropagates() -> None:
    cfg = OmegaConf.create([{"name": "d", "target": "depth", "fn": "mse", "weight": 1, "kwargs": {}}])
    outputs, batch = _sample()
    outputs["depth"].requires_grad_(True)
    total, _ = LossGroup(cfg)(outputs, batch)
    total.backward()
    assert outputs["depth"].grad is not None


@pytest.mark.parametrize(
    ("terms", "match"),
    [
        ([{"name": "a", "target": "mask", "fn": "bce", "weight": 1}] * 2, "duplicate.*'a'"),
        ([{"name": "mine", "target": "mask", "fn": "wat", "weight": 1}], "'mine'.*'wat'"),
        ([{"name": "x", "target": "rgb", "fn": "l1", "weight": 1}], "'x'.*target 'rgb'"),
        ([{"name": "y", "target": "mask", "fn": "l1", "wieght": 1}], "'y'.*wieght"),
        ([], "at least one"),
    ],
)
def test_group_config_errors(terms: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LossGroup(terms)


def test_ssim_mse_preset_from_yaml() -> None:
    group = hydra.utils.instantiate(OmegaConf.load(ROOT / "conf" / "loss" / "ssim_mse.yaml"))
    assert isinstance(group, LossGroup)
    assert group.names == ["depth_ssim", "mask_ssim", "depth_mse", "mask_mse", "depth_l1", "mask_l1"]
    outputs, batch = _sample(size=24)
    total, parts = group(outputs, batch)
    m, d, v = torch.sigmoid(outputs["mask"]), outputs["depth"], batch["valid"]
    tm, td = batch["mask"], batch["depth"]
    expected = (
        2.0 * (1 - reference_ssim_map(d, td)[v].mean())
        + 0.4 * (1 - reference_ssim_map(m, tm).mean())
        + 0.1 * ((d - td) ** 2)[v].mean()
        + 1.0 * ((m - tm) ** 2).mean()
        + 1e-6 * (d - td).abs()[v].mean()
        + 1e-6 * (m - tm).abs().mean()
    )
    assert total.item() == pytest.approx(expected.item(), abs=1e-5)
    assert sum(p.item() for p in parts.values()) == pytest.approx(total.item(), rel=1e-6)
