"""Loss terms against hand-computed values, and the configurable loss group."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mdeas.losses import TERMS, LossGroup
from mdeas.losses import terms as T

ROOT = Path(__file__).resolve().parents[1]
ALL_TERMS = TERMS.names()
MASK_TERMS = ["bce", "bce_dice", "dice", "focal", "lovasz_hinge", "soft_iou"]
WINDOWED = {"ssim", "dssim", "densedepth"}  # SSIM windows reach across invalid neighbours


def t22(*values: float) -> torch.Tensor:
    """A 1x1x2x2 tensor from four values in row-major order."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2)


def reference_ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Textbook SSIM map: window x window Gaussian (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2, reflect padding, float64."""
    x, y, r = x.double(), y.double(), window // 2
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - r) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :])[None, None]

    def blur(img: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(img, (r, r, r, r), mode="reflect"), w)

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


def test_boundary_bce_scores_only_the_band_around_the_outline() -> None:
    target = torch.zeros(1, 1, 4, 6)
    target[..., :3] = 1  # outline between columns 2 and 3
    logits = torch.where(target > 0.5, 30.0, -30.0)  # right everywhere
    logits[..., 0, 1], logits[..., 3, 4] = -30.0, 30.0  # wrong in columns 1 and 4
    assert T.boundary_bce(logits, target, width=1).item() == pytest.approx(0.0, abs=1e-6)  # band: columns 2, 3
    logits[..., 1, 2] = 0.0  # undecided in the band: ln 2 over its 8 pixels; columns 1 and 4 still ignored
    assert T.boundary_bce(logits, target, width=1).item() == pytest.approx(math.log(2) / 8, rel=1e-5)
    # width 2 widens the band to columns 1..4: the two wrong pixels count now, 30 each, over 16 pixels
    assert T.boundary_bce(logits, target, width=2).item() == pytest.approx((60 + math.log(2)) / 16, rel=1e-4)
    empty = torch.zeros(1, 1, 4, 6)
    assert T.boundary_bce(torch.zeros_like(empty), empty).item() == 0.0  # no outline: nothing to score


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
    # beta 0.25: 0; |0.5| >= beta: 0.5-0.125; 3-0.125; 2-0.125
    assert T.smooth_l1(t22(0, 0.5, 3, -2), torch.zeros(1, 1, 2, 2), beta=0.25).item() == pytest.approx(5.125 / 4)


def test_berhu_both_branches() -> None:
    # |x| = .1 .2 .5 1 -> c = 0.2; .1 and .2 are <= c (L1), .5 -> (.25+.04)/.4 = .725, 1 -> 1.04/.4 = 2.6
    got = T.berhu(torch.zeros(1, 1, 2, 2), t22(0.1, 0.2, 0.5, 1.0))
    assert got.item() == pytest.approx((0.1 + 0.2 + 0.725 + 2.6) / 4, abs=1e-6)


def test_berhu_perfect_prediction_has_finite_gradient() -> None:
    pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    loss = T.berhu(pred, pred.detach().clone())
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(pred.grad, torch.zeros_like(pred))  # every |x| = 0 <= c: the L1 branch, gradient sign(0) = 0


def test_gradient_l1_linear_ramps() -> None:
    # ramp of slope 1 along x: d/dx = 1 inside, 0.5 on the two replicated border columns; d/dy = 0
    ramp = torch.arange(4.0).repeat(4, 1).reshape(1, 1, 4, 4)
    assert T.gradient_l1(ramp, torch.zeros_like(ramp)).item() == pytest.approx((2 * 1 + 2 * 0.5) / 4, abs=1e-6)
    # |d/dx| + |d/dy|: the same ramp along y adds the same again
    plane = ramp + ramp.transpose(-1, -2)
    assert T.gradient_l1(plane, torch.zeros_like(plane)).item() == pytest.approx(2 * 0.75, abs=1e-6)
    assert T.gradient_l1(plane, plane + 3.0).item() == pytest.approx(0.0, abs=1e-7)  # offsets have no edges


def test_ssim_identical_zero_and_flat_against_reference() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 16, 16, generator=g)
    assert T.ssim(img, img.clone()).item() == pytest.approx(0.0, abs=1e-5)
    flat = torch.full_like(img, 0.5)
    loss = T.ssim(flat, img)
    assert loss.item() == pytest.approx(1.0 - reference_ssim_map(flat, img).mean().item(), abs=1e-5)
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
    assert T.ssim(a, b, torch.zeros_like(valid)).item() == 0.0  # no valid pixel: 0, as every term


def test_ssim_too_small_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^ssim with a 11x11 window and reflect padding needs H and W > 5, got 4x4$"):
        T.ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_dssim_is_kornias_ssim_loss_and_half_of_ssim() -> None:
    g = torch.Generator().manual_seed(6)
    a, b = torch.rand(2, 1, 16, 20, generator=g), torch.rand(2, 1, 16, 20, generator=g)
    b = 0.6 * a + 0.4 * b
    for window in (11, 3):
        expected = (1.0 - reference_ssim_map(a, b, window).mean().item()) / 2
        got = T.dssim(a, b, window_size=window)
        assert got.item() == pytest.approx(expected, abs=1e-5)
        assert got.item() == pytest.approx(kornia.losses.ssim_loss(a, b, window).item(), abs=1e-6)
    assert T.dssim(a, b).item() == pytest.approx(T.ssim(a, b).item() / 2, abs=1e-6)


def test_densedepth_combination() -> None:
    g = torch.Generator().manual_seed(7)
    a, b = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    expected = kornia.losses.ssim_loss(a, b, 11).item() + T.gradient_l1(a, b).item() + 0.1 * (a - b).abs().mean().item()
    assert T.densedepth(a, b).item() == pytest.approx(expected, abs=1e-5)
    assert T.densedepth(a, b, w_ssim=0, w_edge=0, w_l1=1).item() == pytest.approx((a - b).abs().mean().item())


def test_focal_matches_numpy_formula() -> None:
    x = np.array([0.0, 2.0, -1.0, 3.0])
    t = np.array([0.0, 1.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-x))
    p_t = np.where(t == 1, p, 1 - p)
    a_t = np.where(t == 1, 0.25, 0.75)
    expected = np.mean(-a_t * (1 - p_t) ** 2 * np.log(p_t))
    assert T.focal(t22(*x), t22(*t)).item() == pytest.approx(expected, rel=1e-5)
    # logits 0: p_t = 0.5 -> 0.25 ln 2 times alpha_t
    assert T.focal(torch.zeros(1, 1, 2, 2), t22(1, 1, 0, 0)).item() == pytest.approx(
        (0.25 + 0.75) / 2 * 0.25 * math.log(2), rel=1e-6
    )
    # gamma 0 without alpha is BCE
    assert T.focal(t22(*x), t22(*t), alpha=None, gamma=0.0).item() == pytest.approx(T.bce(t22(*x), t22(*t)).item())


def numpy_lovasz(logits: np.ndarray, labels: np.ndarray) -> float:
    """Binary Lovasz hinge of flat arrays, written out from the paper's algorithm."""
    errors = 1.0 - logits * (2 * labels - 1)
    order = np.argsort(-errors, kind="stable")
    errors, gt = errors[order], labels[order]
    jaccard = 1 - (gt.sum() - np.cumsum(gt)) / (gt.sum() + np.cumsum(1 - gt))
    grad = np.concatenate([jaccard[:1], np.diff(jaccard)])
    return float(np.dot(np.maximum(errors, 0), grad))


def test_lovasz_hinge_by_hand() -> None:
    # errors 1 - x*s = -1, 0, 1.5, 4; sorted 4 (fg), 1.5 (bg), 0, -1; Jaccard .5, 2/3, .75, 1 -> 4*.5 + 1.5/6
    assert T.lovasz_hinge(t22(2, -1, 0.5, -3), t22(1, 0, 0, 1)).item() == pytest.approx(2.25, abs=1e-6)
    zeros = torch.zeros(1, 1, 2, 2)
    assert T.lovasz_hinge(zeros, t22(0, 0, 0, 0)).item() == pytest.approx(1.0)  # empty mask, grad [1, 0, 0, 0]
    assert T.lovasz_hinge(zeros, t22(1, 1, 1, 1)).item() == pytest.approx(1.0)  # all foreground, grad 1/4 each


def test_lovasz_hinge_per_image_and_batch_against_numpy() -> None:
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(3, 1, 5, 6, generator=g) * 2
    target = (torch.rand(3, 1, 5, 6, generator=g) > 0.6).float()
    x, t = logits.numpy().astype(np.float64), target.numpy().astype(np.float64)
    per_image = np.mean([numpy_lovasz(x[i].ravel(), t[i].ravel()) for i in range(3)])
    batch = numpy_lovasz(x.ravel(), t.ravel())
    assert T.lovasz_hinge(logits, target).item() == pytest.approx(per_image, rel=1e-5)
    assert T.lovasz_hinge(logits, target, per_image=False).item() == pytest.approx(batch, rel=1e-5)
    assert per_image != pytest.approx(batch, rel=1e-3)  # the two reductions do differ


def test_focal_by_hand() -> None:
    # logits 0, ln 3, -ln 3, ln 3 -> p = 1/2, 3/4, 1/4, 3/4; targets 1, 1, 1, 0 -> p_t = 1/2, 3/4, 1/4, 1/4.
    # alpha_t (1 - p_t)^2 (-ln p_t): .25 * 1/4 * ln 2, .25 * 1/16 * ln(4/3), .25 * 9/16 * 2 ln 2, .75 * 9/16 * 2 ln 2
    # = (1/16 + 9/32 + 27/32) ln 2 + (1/64) ln(4/3) = 1.1875 ln 2 + 0.015625 ln(4/3); the mean divides by 4.
    logits, target = t22(0.0, math.log(3), -math.log(3), math.log(3)), t22(1, 1, 1, 0)
    expected = (1.1875 * math.log(2) + 0.015625 * math.log(4 / 3)) / 4
    assert T.focal(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # valid keeps the first two pixels: (ln 2 / 16 + ln(4/3) / 64) / 2
    valid = t22(1, 1, 0, 0).bool()
    expected = (math.log(2) / 16 + math.log(4 / 3) / 64) / 2
    assert T.focal(logits, target, valid).item() == pytest.approx(expected, rel=1e-6)
    # alpha None drops alpha_t: 1/4 ln 2 + 1/16 ln(4/3) + 9/8 ln 2 + 9/8 ln 2, over 4
    expected = (2.5 * math.log(2) + math.log(4 / 3) / 16) / 4
    assert T.focal(logits, target, alpha=None).item() == pytest.approx(expected, rel=1e-6)


def test_lovasz_hinge_valid_subset_by_hand() -> None:
    # without the last pixel (fg, error 4): errors 1.5 (bg), 0 (bg), -1 (fg); Jaccard .5, 2/3, 1 -> 1.5 * .5
    logits, target = t22(2, -1, 0.5, -3), t22(1, 0, 0, 1)
    valid = t22(1, 1, 1, 0).bool()
    assert T.lovasz_hinge(logits, target, valid).item() == pytest.approx(0.75, abs=1e-6)
    assert T.lovasz_hinge(logits, target, valid, per_image=False).item() == pytest.approx(0.75, abs=1e-6)
    # image 1 has no valid pixel: it counts 0 in the per-image mean, and nothing in the flat loss
    logits2, target2, valid2 = (torch.cat([a, a]) for a in (logits, target, valid))
    valid2[1] = False
    assert T.lovasz_hinge(logits2, target2, valid2).item() == pytest.approx(0.75 / 2, abs=1e-6)
    assert T.lovasz_hinge(logits2, target2, valid2, per_image=False).item() == pytest.approx(0.75, abs=1e-6)


def pinned_mask_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded [3,1,5,6] logits (std 3), {0,1} target with image 1 all background, and a valid mask (~70 %)."""
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(3, 1, 5, 6, generator=g) * 3
    target = (torch.rand(3, 1, 5, 6, generator=g) > 0.6).float()
    valid = torch.rand(3, 1, 5, 6, generator=g) > 0.3
    target[1] = 0.0
    return logits, target, valid


def numpy_focal(x: np.ndarray, t: np.ndarray, alpha: float | None = 0.25, gamma: float = 2.0) -> float:
    """Mean focal loss of flat logits and {0, 1} labels, written out from the paper's formula (float64)."""
    p = 1 / (1 + np.exp(-x))
    p_t = np.where(t == 1, p, 1 - p)
    a_t = 1.0 if alpha is None else np.where(t == 1, alpha, 1 - alpha)
    return float(np.mean(-a_t * (1 - p_t) ** gamma * np.log(p_t)))


def test_focal_against_numpy_with_valid_pixels() -> None:
    x, t, v = pinned_mask_inputs()
    xs, ts, vs = (a.numpy().astype(np.float64) for a in (x, t, v))
    assert T.focal(x, t).item() == pytest.approx(numpy_focal(xs.ravel(), ts.ravel()), rel=1e-5)
    assert T.focal(x, t, alpha=None).item() == pytest.approx(numpy_focal(xs.ravel(), ts.ravel(), None), rel=1e-5)
    on = vs.astype(bool)
    assert T.focal(x, t, v).item() == pytest.approx(numpy_focal(xs[on], ts[on]), rel=1e-5)
    expected = numpy_focal(xs[on], ts[on], None, 1.5)
    assert T.focal(x, t, v, alpha=None, gamma=1.5).item() == pytest.approx(expected, rel=1e-5)
    assert T.focal(x[1:2], t[1:2]).item() == pytest.approx(numpy_focal(xs[1].ravel(), ts[1].ravel()), rel=1e-5)
    assert T.focal(x, t, torch.zeros_like(v)).item() == 0.0  # no valid pixel


def test_lovasz_hinge_against_numpy_with_valid_pixels() -> None:
    """Per image: the mean over images of each one's valid pixels (0 for an image with none); flat: all valid pixels."""
    x, t, v = pinned_mask_inputs()
    xs, ts = (a.numpy().astype(np.float64) for a in (x, t))

    def expected(valid: torch.Tensor, per_image: bool) -> float:
        on = valid.numpy()
        if not per_image:
            return numpy_lovasz(xs[on], ts[on])
        return float(np.mean([numpy_lovasz(xs[i][on[i]], ts[i][on[i]]) if on[i].any() else 0.0 for i in range(3)]))

    one_image_empty = v.clone()
    one_image_empty[2] = False
    everywhere = torch.ones_like(v)
    for valid in (everywhere, v, one_image_empty):
        for per_image in (True, False):
            got = T.lovasz_hinge(x, t, None if valid is everywhere else valid, per_image=per_image).item()
            assert got == pytest.approx(expected(valid, per_image), rel=1e-5), (per_image, valid.sum())
    all_background = numpy_lovasz(xs[1].ravel(), ts[1].ravel())
    assert T.lovasz_hinge(x[1:2], t[1:2]).item() == pytest.approx(all_background, rel=1e-5)
    for per_image in (True, False):  # no valid pixel
        assert T.lovasz_hinge(x, t, torch.zeros_like(v), per_image=per_image).item() == 0.0


def test_silog_by_hand() -> None:
    target = torch.full((1, 1, 2, 2), 0.5)
    # d = 0, ln 2, -ln 2, 0: mean 0, mean d^2 = ln^2 2 / 2
    assert T.silog(t22(0.5, 1.0, 0.25, 0.5), target).item() == pytest.approx(math.log(2) ** 2 / 2, rel=1e-6)
    # a global scale: d = ln 2 everywhere -> (1 - lam) ln^2 2; 0 when fully scale-invariant
    assert T.silog(2 * target, target).item() == pytest.approx(0.5 * math.log(2) ** 2, rel=1e-6)
    assert T.silog(2 * target, target, lam=1.0).item() == pytest.approx(0.0, abs=1e-7)
    # per image: image 0 has d = ln 2 (x1 px), image 1 has d = 0 -> mean(0, 0) with lam 1; lam 0: mean(ln^2 2, 0)
    pred, tgt = torch.ones(2, 1, 1, 2) * 0.5, torch.ones(2, 1, 1, 2) * 0.5
    pred[0] *= 2
    assert T.silog(pred, tgt, lam=0.0).item() == pytest.approx(math.log(2) ** 2 / 2, rel=1e-6)
    assert T.silog(pred, tgt, lam=1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_silog_unknown_depth_ignored_and_nothing_known_is_zero() -> None:
    pred = t22(0.5, 1.0, 0.9, 0.1).requires_grad_(True)
    target = t22(0.5, 0.5, 0.0, 0.0)  # depth 0 = unknown: only d = 0, ln 2 count -> ln^2 2 / 2 - 0.5 (ln 2 / 2)^2
    expected = math.log(2) ** 2 / 2 - 0.5 * (math.log(2) / 2) ** 2
    assert T.silog(pred, target).item() == pytest.approx(expected, rel=1e-6)
    loss = T.silog(pred, torch.zeros_like(target))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))


def test_silog_bts_form_by_hand() -> None:
    target = torch.full((1, 1, 2, 2), 0.5)
    # d = ln 2 everywhere: 10 sqrt(ln^2 2 - 0.85 ln^2 2)
    got = T.silog(2 * target, target, lam=0.85, root=True).item()
    assert got == pytest.approx(10 * math.sqrt(0.15) * math.log(2), rel=1e-6)
    # d = 0, ln 2, -ln 2, 0: 10 sqrt(ln^2 2 / 2)
    got = T.silog(t22(0.5, 1.0, 0.25, 0.5), target, lam=0.85, root=True).item()
    assert got == pytest.approx(10 * math.log(2) / math.sqrt(2), rel=1e-6)
    assert T.silog(target, target, lam=0.85, root=True).item() == pytest.approx(0.0, abs=1e-5)


def test_log_l1_and_inverse_l1_by_hand() -> None:
    pred, target = t22(0.5, 0.25, 1.0, 0.0005), t22(0.5, 0.5, 0.25, 0.5)
    # |ln(p/t)|: 0, ln 2, ln 4, and pred clamped to eps 1e-3: ln 500
    assert T.log_l1(pred, target).item() == pytest.approx((math.log(2) + math.log(4) + math.log(500)) / 4, rel=1e-6)
    # |1/p - 1/t|: 0, 2, 3, and pred clamped to eps 1e-2: |100 - 2|
    assert T.inverse_l1(pred, target).item() == pytest.approx((2 + 3 + 98) / 4, rel=1e-6)
    valid = t22(0, 1, 1, 0).bool()
    assert T.log_l1(pred, target, valid).item() == pytest.approx(3 * math.log(2) / 2, rel=1e-6)
    assert T.inverse_l1(pred, target, valid).item() == pytest.approx(5 / 2, rel=1e-6)
    # target 0 is unknown depth, as for silog
    unknown = t22(0.5, 0.0, 0.25, 0.0)
    assert T.log_l1(pred, unknown).item() == pytest.approx(math.log(4) / 2, rel=1e-6)
    assert T.inverse_l1(pred, unknown).item() == pytest.approx(3 / 2, rel=1e-6)


def test_ssi_zero_for_scale_and_shift_and_by_hand() -> None:
    g = torch.Generator().manual_seed(6)
    target = torch.rand(2, 1, 16, 16, generator=g) * 0.9 + 0.05
    valid = torch.rand(2, 1, 16, 16, generator=g) > 0.2
    assert T.ssi(3.0 * target - 0.7, target, valid).item() == pytest.approx(0.0, abs=1e-5)
    assert T.ssi(torch.rand(2, 1, 16, 16, generator=g), target, valid).item() > 0.5
    # 2x2 by hand: target 0.1 .. 0.4, lower median 0.2, mean |x - 0.2| = 0.1 -> -1 0 1 2; pred reversed -> 2 1 0 -1.
    # MAE (3 + 1 + 1 + 3) / 4 = 2, halved as MiDaS's 1 / 2M: 1; R = [[3, 1], [-1, -3]]: scale 0 pairs |1-3| + |-3+1| +
    # |-1-3| + |-3-1| = 12 over 4 pixels = 3, coarser scales hold one pixel (no pairs): 1 + 0.5 * 3
    pred, target = t22(0.4, 0.3, 0.2, 0.1), t22(0.1, 0.2, 0.3, 0.4)
    assert T.ssi(pred, target).item() == pytest.approx(2.5, rel=1e-6)
    assert T.ssi(pred, target, alpha=0.0).item() == pytest.approx(1.0, rel=1e-6)


def test_gradient_matching_by_hand() -> None:
    g = torch.Generator().manual_seed(7)
    target = torch.rand(2, 1, 16, 16, generator=g)
    assert T.gradient_matching(target + 0.3, target).item() == pytest.approx(0.0, abs=1e-6)  # constant offset
    # R = [[3, 1], [-1, -3]], pixel (1, 1) invalid: pairs |1 - 3| (row 0) and |-1 - 3| (column 0) over 3 pixels
    r, zero = t22(3, 1, -1, -3), torch.zeros(1, 1, 2, 2)
    assert T.gradient_matching(r, zero).item() == pytest.approx(12 / 4, rel=1e-6)
    assert T.gradient_matching(r, zero, t22(1, 1, 1, 0).bool()).item() == pytest.approx(6 / 3, rel=1e-6)
    # 4x4 ramp R = column index: scale 0, 3 horizontal steps of 1 in each of 4 rows over 16 pixels; scale 1, the
    # pixels (0, 0) (0, 2) (2, 0) (2, 2), one step of 2 in each of 2 rows over 4 pixels
    ramp = torch.arange(4.0).repeat(4, 1)[None, None]
    assert T.gradient_matching(ramp, torch.zeros_like(ramp)).item() == pytest.approx(12 / 16 + 4 / 4, rel=1e-6)


def test_huber_and_bce_dice_by_hand() -> None:
    x = t22(0, 0.5, 3, -2)
    zero = torch.zeros(1, 1, 2, 2)
    # delta 2: 0, 0.5*0.25, 2*(3-1), |-2| is not < 2 -> 2*(2-1)
    assert T.huber(x, zero, delta=2.0).item() == pytest.approx((0.125 + 4 + 2) / 4)
    assert T.huber(x, zero).item() == pytest.approx(T.smooth_l1(x, zero).item())  # delta 1 = beta 1
    logits, target = t22(0.0, 2.0, -1.0, 3.0), t22(0, 1, 1, 0)
    expected = T.bce(logits, target).item() + T.dice(logits, target).item()
    assert T.bce_dice(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # probabilities (sigmoid=False): BCE mean(-ln 0.5, -ln 0.9, -ln 0.2, -ln 0.9) + Dice 1 - 2·1.1 / (1.7 + 2)
    probabilities = t22(0.5, 0.9, 0.2, 0.1)
    by_hand = -(math.log(0.5) + 2 * math.log(0.9) + math.log(0.2)) / 4 + 1 - 2.2 / 3.7
    assert T.bce_dice(probabilities, target, sigmoid=False).item() == pytest.approx(by_hand, rel=1e-5)


def test_dice_on_raw_values() -> None:
    # sigmoid=False compares the map itself (seed 004's depth Dice): 1 - (2*0.5 + 1)/(0.25 + 0.25 + 1 + 1 + 1)
    pred, target = t22(0.5, 0.5, 0, 0), t22(1, 0, 1, 0)
    got = T.dice(pred, target, smooth=1.0, squared=True, sigmoid=False)
    assert got.item() == pytest.approx(1 - 2.0 / 3.5, abs=1e-6)
    assert T.dice(target, target, smooth=1.0, squared=True, sigmoid=False).item() == pytest.approx(0.0, abs=1e-7)


# a confidently wrong prediction (logits -+30 against an all-foreground / empty target), by hand: BCE is
# softplus(30) = 30; Dice and soft IoU are 1 (up to smooth / 72); focal is a_t * 30 with (1 - p_t)^2 = 1, a_t = 0.25
# for foreground and 0.75 for background; Lovasz: every hinge error is 1 + 30, weighted by Jaccard steps summing to 1
WRONG = {
    "bce": (30.0, 30.0),
    "bce_dice": (31.0, 31.0),
    "dice": (1.0, 1.0),
    "focal": (0.75 * 30, 0.25 * 30),
    "lovasz_hinge": (31.0, 31.0),
    "soft_iou": (1.0, 1.0),
}


@pytest.mark.parametrize("name", MASK_TERMS)
@pytest.mark.parametrize("fill", [0.0, 1.0], ids=["empty", "all_foreground"])
def test_mask_terms_on_empty_and_all_foreground_masks(name: str, fill: float) -> None:
    target = torch.full((2, 1, 6, 6), fill)
    confident = torch.full_like(target, 30.0 if fill else -30.0)  # logits of a perfect prediction
    right, wrong = TERMS.get(name)(confident, target), TERMS.get(name)(-confident, target)
    assert right.item() == pytest.approx(0.0, abs=1e-5)
    assert wrong.item() == pytest.approx(WRONG[name][int(fill)], rel=1e-6)


def test_valid_mask_by_hand() -> None:
    pred, target = t22(0.1, 0.5, 0.9, 0.3), t22(0, 1, 1, 0)
    valid = t22(1, 1, 0, 0).bool()
    assert T.mse(pred, target, valid).item() == pytest.approx((0.01 + 0.25) / 2, abs=1e-7)
    assert T.l1(pred, target, valid).item() == pytest.approx((0.1 + 0.5) / 2, abs=1e-7)
    # no valid pixel: 0, not NaN, and still differentiable
    p = pred.clone().requires_grad_(True)
    loss = T.mse(p, target, torch.zeros_like(valid))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(p.grad, torch.zeros_like(p))


@pytest.mark.parametrize("name", ALL_TERMS)
def test_every_term_is_zero_with_finite_gradients_when_no_pixel_is_valid(name: str) -> None:
    g = torch.Generator().manual_seed(4)
    pred = torch.rand(2, 1, 16, 16, generator=g).requires_grad_(True)
    loss = TERMS.get(name)(pred, torch.rand(2, 1, 16, 16, generator=g), torch.zeros(2, 1, 16, 16, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", [n for n in ALL_TERMS if n not in WINDOWED])
def test_invalid_pixels_do_not_change_loss(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    pred, target = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    valid[:, :, :3, :] = False
    valid[1, :, :, 6:] = False
    fn = TERMS.get(name)
    before = fn(pred, target, valid)
    pred2, target2 = pred.clone(), target.clone()
    pred2[~valid] = 5.0
    target2[~valid] = 0.9
    after = fn(pred2, target2, valid)
    assert after.item() == pytest.approx(before.item(), abs=1e-6)
    assert fn(pred2, target2).item() != pytest.approx(before.item(), abs=1e-6)  # they did matter unmasked


@pytest.mark.parametrize("name", ALL_TERMS)
def test_every_term_under_autocast_equals_float32(name: str) -> None:
    """bfloat16 logits under autocast give the float32 scalar, and gradient, of the same values in float32."""
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(2, 1, 16, 16, generator=g).to(torch.bfloat16).requires_grad_(True)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = TERMS.get(name)(pred, target)
    loss.backward()
    pred32 = pred.detach().float().requires_grad_(True)
    expected = TERMS.get(name)(pred32, target)
    expected.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(pred.grad, pred32.grad.to(torch.bfloat16))


def test_an_unknown_term_lists_the_known_names() -> None:
    with pytest.raises(KeyError, match=r"^unknown loss term 'nope'; known loss terms: .*berhu.*ssim"):
        TERMS.get("nope")
    assert "bce" in TERMS.names() and TERMS.get("bce").__name__ == "bce"


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^loss term 'l1': pred \(1, 1, 2, 2\) and target \(1, 1, 2, 3\) differ$"):
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
    """An OmegaConf list of one depth MSE term of weight 2: the total is 2 x the mean squared error over the valid
    pixels, and its gradient 2 x 2 (d - t) / (number of valid pixels) there, 0 elsewhere."""
    cfg = OmegaConf.create([{"name": "d", "target": "depth", "fn": "mse", "weight": 2, "kwargs": {}}])
    outputs, batch = _sample()
    d, t, v = outputs["depth"].requires_grad_(True), batch["depth"], batch["valid"]
    assert 0 < v.sum() < v.numel()  # some pixels left out
    total, parts = LossGroup(cfg)(outputs, batch)
    total.backward()
    error = d.detach() - t
    assert total.item() == pytest.approx(2 * (error**2)[v].mean().item(), rel=1e-6)
    assert parts["d"].item() == pytest.approx(total.item(), rel=1e-6)
    torch.testing.assert_close(d.grad, 2 * 2 * error * v / v.sum(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("terms", "match"),
    [
        ([{"name": "a", "target": "mask", "fn": "bce", "weight": 1}] * 2, "duplicate.*'a'"),
        ([{"name": "mine", "target": "mask", "fn": "wat", "weight": 1}], "'mine'.*'wat'"),
        ([{"name": "x", "target": "rgb", "fn": "l1", "weight": 1}], "'x'.*target 'rgb'"),
        ([{"name": "y", "target": "mask", "fn": "l1", "wieght": 1}], "'y'.*wieght"),
        ([], "at least one"),
        ({"z": {"name": "z", "target": "mask", "fn": "bce"}}, "'z'.*unknown keys \\['name'\\]"),
        ({"w": "bce"}, "'w' must be a mapping"),
        (
            {"d": {"target": "mask", "fn": "dice", "kwargs": {"smoth": 1}}},
            r"'d': dice takes no \['smoth'\]; its .*smooth",
        ),
        ({"b": {"target": "mask", "fn": "bce", "kwargs": {"width": 2}}}, r"'b': bce takes no \['width'\]; .*none"),
        ("bce", "mapping name -> spec or a list"),
        (
            {"n": {"target": "mask", "fn": "bce", "weight": -1}},
            r"^loss term 'n': weight must be >= 0 \(0 turns it off\), got -1$",
        ),
        (
            {"n": {"target": "mask", "fn": "bce", "weight": "abc"}},
            r"^loss term 'n': weight must be a finite number, got 'abc'$",
        ),
        (
            {"n": {"target": "mask", "fn": "bce", "weight": float("nan")}},
            r"^loss term 'n': weight must be a finite number",
        ),
        (  # option values the term cannot use: found when the group is built, not at the first step
            {"d": {"target": "mask", "fn": "dice", "kwargs": {"smooth": "abc"}}},
            r"^loss term 'd': dice with \{'smooth': 'abc'\} fails: TypeError: ",
        ),
        (
            {"s": {"target": "depth", "fn": "ssim", "kwargs": {"window_size": 4}}},
            r"^loss term 's': ssim with \{'window_size': 4\} fails: ",
        ),
        (  # a mask target scored on its raw logits: trained without a word before
            {"m": {"target": "mask", "fn": "mse"}},
            r"^loss term 'm': mse on target mask would score the logits; add kwargs: \{sigmoid: true\}$",
        ),
        (
            {"m": {"target": "mask", "fn": "dice", "kwargs": {"sigmoid": False}}},
            r"^loss term 'm': dice on target mask would score the logits; add kwargs: \{sigmoid: true\}$",
        ),
        (
            {"c": {"target": "mask_coarse", "fn": "silog"}},
            r"^loss term 'c': silog is a depth term, it cannot score target mask_coarse's logits; mask terms: bce, ",
        ),
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


def test_group_mapping_form_equals_list_form() -> None:
    outputs, batch = _sample()
    mapping = {
        "m_focal": {"target": "mask", "fn": "focal", "weight": 0.5, "kwargs": {"gamma": 1.0}},
        "d_silog": {"target": "depth", "fn": "silog", "weight": 2.0},
    }
    listed = [{"name": k, **v} for k, v in mapping.items()]
    by_map, by_list = LossGroup(OmegaConf.create(mapping)), LossGroup(listed)
    assert by_map.names == by_list.names == ["m_focal", "d_silog"]
    (t1, p1), (t2, p2) = by_map(outputs, batch), by_list(outputs, batch)
    assert t1.item() == t2.item() and p1.keys() == p2.keys()
    assert p1["d_silog"].item() == pytest.approx(2.0 * T.silog(outputs["depth"], batch["depth"], batch["valid"]).item())


def test_hydra_overrides_reweight_remove_and_add_terms() -> None:
    overrides = [
        "model=resunet",  # a plain preset: the default refined model adds a coarse-mask term
        "loss=ssim_mse",
        "loss.terms.depth_ssim.weight=0.5",
        "loss.terms.mask_mse.weight=0",
        "~loss.terms.mask_l1",
        "+loss.terms.mask_dice={target: mask, fn: dice, weight: 0.25}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    group = hydra.utils.instantiate(cfg.loss)
    weights = {t.name: t.weight for t in group.terms}
    assert weights == {
        "depth_ssim": 0.5, "mask_ssim": 0.4, "depth_mse": 0.1, "mask_mse": 0.0, "depth_l1": 1e-6, "mask_dice": 0.25,
    }  # fmt: skip
    outputs, batch = _sample(size=16)
    total, parts = group(outputs, batch)
    assert parts["mask_mse"].item() == 0.0  # weight 0: off, still reported
    assert parts["mask_dice"].item() == pytest.approx(0.25 * T.dice(outputs["mask"], batch["mask"]).item())


def _preset(name: str) -> LossGroup:
    return hydra.utils.instantiate(OmegaConf.load(ROOT / "conf" / "loss" / f"{name}.yaml"))


def test_seed_presets_and_the_default_by_hand() -> None:
    """Each seed preset's total (and the default loss's) against its formula written out with torch/reference
    SSIM."""
    outputs, batch = _sample(size=24)
    m, d, v = outputs["mask"], outputs["depth"], batch["valid"]
    tm, td = batch["mask"], batch["depth"]
    p = torch.sigmoid(m)
    bce = F.binary_cross_entropy_with_logits(m, tm)
    edge = T.gradient_l1(d, td, v)  # checked by hand above
    expected = {
        "dice_bce_densedepth": bce
        + 1
        - ((p * tm).sum() + 1e-6) / (p.sum() + tm.sum() - (p * tm).sum() + 1e-6)
        + (1 - reference_ssim_map(d, td, window=3)[v].mean()) / 2
        + (d - td).abs()[v].mean()
        + edge,
        "bce_ssim": bce + (1 - reference_ssim_map(d, td)[v].mean()) / 2,
        "bce_dice_ssim": bce
        + 1
        - (2 * (p * tm).sum() + 1) / (p.sum() + tm.sum() + 1)
        + 1
        - reference_ssim_map(d, td)[v].mean()
        + (d - td).abs()[v].mean()
        + edge,
        "rmse_dice": 1
        - (2 * (p * tm).sum() + 1e-6) / (p.sum() + tm.sum() + 1e-6)
        + torch.sqrt(((d - td) ** 2)[v].mean() + 1e-6),
        "smoothl1_dice": F.smooth_l1_loss(p, tm)
        + 1
        - (2 * (d * td)[v].sum() + 1) / ((d * d)[v].sum() + (td * td)[v].sum() + 1),
    }
    for name, value in expected.items():
        total, parts = _preset(name)(outputs, batch)
        assert total.item() == pytest.approx(value.item(), abs=1e-5), name
        assert sum(x.item() for x in parts.values()) == pytest.approx(total.item(), rel=1e-6), name


def test_every_preset_in_conf_loss_builds() -> None:
    """Each preset's total against its yaml's terms called one by one (depth terms over valid pixels)."""
    names = sorted(p.stem for p in (ROOT / "conf" / "loss").glob("*.yaml"))
    assert names == [
        "bce_dice_silog",
        "bce_dice_ssim",
        "bce_ssim",
        "dice_bce_densedepth",
        "relative_ssi",
        "rmse_dice",
        "smoothl1_dice",
        "ssim_mse",
    ]
    outputs, batch = _sample(size=16)
    for name in names:
        total, parts = _preset(name)(outputs, batch)
        specs = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "loss" / f"{name}.yaml").terms)
        expected = {
            term: spec.get("weight", 1.0)
            * TERMS.get(spec["fn"])(
                outputs[spec["target"]],
                batch[spec["target"]],
                batch["valid"] if spec["target"] == "depth" else None,
                **spec.get("kwargs", {}),
            ).item()
            for term, spec in specs.items()
        }
        assert {k: v.item() for k, v in parts.items()} == pytest.approx(expected, rel=1e-6), name
        assert total.item() == pytest.approx(sum(expected.values()), rel=1e-6), name


def test_a_group_trains_a_target_only_through_a_term_of_weight_above_zero() -> None:
    group = LossGroup(
        {
            "bce": {"target": "mask_coarse", "fn": "bce", "weight": 1.0},
            "l1": {"target": "depth", "fn": "l1", "weight": 0.0},
        }
    )
    assert group.trains("mask") and not group.trains("depth")
    assert LossGroup({"l1": {"target": "depth", "fn": "l1", "weight": 0.5}}).trains("depth")
