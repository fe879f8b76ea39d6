"""Mask and depth metrics: hand-computed cases, empty cases, and the Metric classes against the functions."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.utilities.data import dim_zero_sum

from mdeas.metrics import (
    DepthMetrics,
    MaskMetrics,
    depth_image_metrics,
    depth_image_sums,
    depth_metrics,
    depth_sums,
    mask_confusion,
    mask_labels,
    mask_metrics,
    median_align,
    scale_shift_align,
    silog_per_image,
)
from mdeas.metrics.functional import DEPTH_KEYS, IMAGE_KEYS, MASK_KEYS, known_depth
from mdeas.metrics.morphology import dilate, erode, outline_band
from mdeas.metrics.per_image import intersection_union, iou
from tests.test_losses import reference_ssim_map


def reference_depth_ssim(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float = 1e-3) -> float:
    """Mean textbook SSIM over counted pixels: pred clamped to [eps, 1], uncounted pixels read as 0 in both maps."""
    counted = valid & (target > 0)
    maps = (torch.where(counted, image, 0.0) for image in (pred.clamp(eps, 1.0), target))
    return reference_ssim_map(*maps)[counted].mean().item()


NO_DEPTH = dict.fromkeys((*DEPTH_KEYS, "count"), 0.0)
"""Depth metrics when no pixel is counted."""
NO_IMAGES = dict.fromkeys((*IMAGE_KEYS, "images"), 0.0)
"""Per-image depth metrics when no image has a counted pixel."""


def all_depth_metrics(*args, **kwargs) -> dict[str, torch.Tensor]:
    """What DepthMetrics computes: the pooled and the per-image metrics of the same data."""
    return depth_metrics(*args, **kwargs) | depth_image_metrics(*args, **kwargs)


# ---------------------------------------------------------------- masks


def hand_mask() -> tuple[torch.Tensor, torch.Tensor]:
    """4x4: target rows 0-1; prediction rows 1-2 plus pixel (3, 0) -> TP 4, FP 5, FN 4, TN 3."""
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    logits = torch.full((1, 1, 4, 4), -3.0)
    logits[..., 1:3, :] = 2.0
    logits[..., 3, 0] = 0.1
    return logits, target


def test_mask_metrics_by_hand() -> None:
    logits, target = hand_mask()
    got = mask_metrics(logits, target)
    expected = {"iou": 4 / 13, "dice": 8 / 17, "accuracy": 7 / 16, "precision": 4 / 9, "recall": 4 / 8}
    assert set(got) == set(MASK_KEYS)
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value, abs=1e-12), key
        assert got[key].dtype == torch.float64


def test_mask_metrics_probabilities_and_threshold() -> None:
    probs = torch.tensor([0.2, 0.5, 0.6, 0.9]).reshape(1, 1, 2, 2)
    target = torch.tensor([0.0, 1.0, 1.0, 1.0]).reshape(1, 1, 2, 2)
    # 0.5 is not above the threshold: TP 2, FN 1, TN 1
    got = mask_metrics(probs, target, from_logits=False)
    assert got["iou"].item() == pytest.approx(2 / 3)
    assert got["accuracy"].item() == pytest.approx(3 / 4)
    assert got["precision"].item() == pytest.approx(1.0)
    got = mask_metrics(probs, target, threshold=0.1, from_logits=False)
    assert got["recall"].item() == pytest.approx(1.0) and got["precision"].item() == pytest.approx(3 / 4)


def test_mask_metrics_valid_pixels() -> None:
    logits, target = hand_mask()
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., :2, :] = True  # rows 0-1: TP 4 (row 1), FN 4 (row 0)
    got = mask_metrics(logits, target, valid=valid)
    assert got["iou"].item() == pytest.approx(0.5) and got["precision"].item() == pytest.approx(1.0)


def test_mask_metrics_empty_cases_never_nan() -> None:
    empty = torch.zeros(2, 1, 4, 4)
    neg, pos = torch.full_like(empty, -5.0), torch.full_like(empty, 5.0)
    perfect = mask_metrics(neg, empty)  # nothing there, nothing predicted: TP FP FN 0, TN 32, every 0/0 is 1
    assert {k: v.item() for k, v in perfect.items()} == dict.fromkeys(MASK_KEYS, 1.0)
    # nothing there, all predicted: FP 32, the rest 0 -> IoU 0/32, Dice 0/32, accuracy 0/32, precision 0/32, and
    # recall 0/0 with an error made: 0
    false_alarm = mask_metrics(pos, empty)
    assert {k: v.item() for k, v in false_alarm.items()} == dict.fromkeys(MASK_KEYS, 0.0)
    # all there, nothing predicted: FN 32 -> every ratio 0 (precision 0/0 with an object missed)
    missed = mask_metrics(neg, torch.ones_like(empty))
    assert {k: v.item() for k, v in missed.items()} == dict.fromkeys(MASK_KEYS, 0.0)
    # no pixel counted at all: every count 0, so every ratio is 0/0 with no error made: 1 (accuracy too)
    uncounted = mask_metrics(pos, empty, valid=torch.zeros_like(empty, dtype=torch.bool))
    assert {k: v.item() for k, v in uncounted.items()} == dict.fromkeys(MASK_KEYS, 1.0)


# ---------------------------------------------------------------- pinned values


def pinned_mask_batch(seed: int = 21, b: int = 2, h: int = 6, w: int = 7) -> tuple[torch.Tensor, ...]:
    """Seeded ``[b,1,h,w]`` logits (std 2), {0,1} target and valid mask (~70 % of pixels)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 1, h, w, generator=g) * 2
    target = (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    valid = torch.rand(b, 1, h, w, generator=g) > 0.3
    return logits, target, valid


def from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """The mask metrics of pixel counts, written out (no 0/0 among the pinned cases)."""
    return {
        "iou": tp / (tp + fp + fn),
        "dice": 2 * tp / (2 * tp + fp + fn),
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
    }


def as_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: v.item() for k, v in metrics.items()}


def pixel_counts(pred: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor | None) -> tuple[int, ...]:
    """(tp, fp, fn, tn) of bool maps over the valid pixels, counted one pixel at a time."""
    counts = [0, 0, 0, 0]
    for p, t, keep in zip(
        pred.flatten().tolist(),
        truth.flatten().tolist(),
        (torch.ones_like(pred) if valid is None else valid).flatten().tolist(),
        strict=True,
    ):
        if keep:
            counts[(0 if t else 1) if p else (2 if t else 3)] += 1
    return tuple(counts)


# (tp, fp, fn, tn) of pinned_mask_batch()
PINNED_COUNTS = {
    "logits": (29, 12, 22, 21),
    "logits, valid": (22, 6, 15, 16),
    "probabilities > 0.3": (34, 18, 17, 15),
    "probabilities > 0.3, valid": (26, 10, 11, 12),
}


def test_mask_metrics_pinned_values() -> None:
    x, t, v = pinned_mask_batch()
    p = torch.sigmoid(x)
    got = {
        "logits": mask_metrics(x, t),
        "logits, valid": mask_metrics(x, t, valid=v),
        "probabilities > 0.3": mask_metrics(p, t, threshold=0.3, from_logits=False),
        "probabilities > 0.3, valid": mask_metrics(p, t, threshold=0.3, from_logits=False, valid=v),
    }
    truth = t > 0.5
    assert PINNED_COUNTS == {
        "logits": pixel_counts(x > 0, truth, None),
        "logits, valid": pixel_counts(x > 0, truth, v),
        "probabilities > 0.3": pixel_counts(p > 0.3, truth, None),
        "probabilities > 0.3, valid": pixel_counts(p > 0.3, truth, v),
    }
    for case, counts in PINNED_COUNTS.items():
        assert as_floats(got[case]) == pytest.approx(from_counts(*counts), rel=1e-15), case
        assert all(value.dtype == torch.float64 and value.dim() == 0 for value in got[case].values()), case
    assert as_floats(mask_metrics(x, t)) == {  # the same by hand: tp 29, fp 12, fn 22, tn 21
        "iou": 29 / 63,
        "dice": 58 / 92,
        "accuracy": 50 / 84,
        "precision": 29 / 41,
        "recall": 29 / 51,
    }
    assert [c.item() for c in mask_confusion(x, t, valid=v)] == [22, 6, 15, 16]


def test_mask_metrics_logits_and_probabilities_are_never_guessed() -> None:
    """Logits are always thresholded as logits, probabilities as probabilities, whatever their range."""
    _, t, _ = pinned_mask_batch()
    inside = torch.rand(2, 1, 6, 7, generator=torch.Generator().manual_seed(3))  # logits in [0, 1]: all foreground
    assert as_floats(mask_metrics(inside, t)) == pytest.approx(from_counts(51, 33, 0, 0), rel=1e-15)
    x, t, _ = pinned_mask_batch()
    probs = torch.sigmoid(x)
    probs[0, 0, 0, :] = 1.2  # probabilities above 1 are thresholded as they are, the others are left alone
    counts = pixel_counts(probs > 0.5, t > 0.5, None)
    assert as_floats(mask_metrics(probs, t, from_logits=False)) == pytest.approx(from_counts(*counts), rel=1e-15)


def test_logits_are_cut_at_the_thresholds_logit_not_through_a_rounding_sigmoid() -> None:
    logits = torch.tensor([1e-9, -1e-9, math.log(3) + 1e-6, math.log(3) - 1e-6]).reshape(1, 1, 2, 2)
    target = torch.ones(1, 1, 2, 2)
    assert torch.sigmoid(logits[0, 0, 0, 0]).item() == 0.5  # what the sigmoid would have called background
    assert mask_labels(logits, target)[0].flatten().tolist() == [1, 0, 1, 1]
    assert mask_labels(logits, target, threshold=0.75)[0].flatten().tolist() == [0, 0, 1, 0]  # sigmoid(log 3) = 0.75
    assert mask_labels(logits, target, threshold=0.0)[0].flatten().tolist() == [1, 1, 1, 1]
    assert mask_labels(logits, target, threshold=1.0)[0].flatten().tolist() == [0, 0, 0, 0]


def test_mask_metric_class_pinned_accumulation() -> None:
    metric = MaskMetrics()
    steps = [(8, 9, 10, 14), (22, 22, 16, 25), (36, 29, 29, 35)]  # running (tp, fp, fn, tn), recorded
    running = (0, 0, 0, 0)
    for seed, (b, h, w), counts in zip((31, 32, 33), [(3, 5, 4), (1, 8, 8), (2, 3, 9)], steps, strict=True):
        x, t, v = pinned_mask_batch(seed, b, h, w)
        running = tuple(a + c for a, c in zip(running, pixel_counts(x > 0, t > 0.5, v), strict=True))
        assert running == counts, seed  # the recorded counts, counted pixel by pixel
        metric.update(x, t, v)
        assert as_floats(metric.compute()) == pytest.approx(from_counts(*counts), rel=1e-15), seed
    assert as_floats(metric.compute()) == {  # by hand: tp 36, fp 29, fn 29, tn 35
        "iou": 36 / 94,
        "dice": 72 / 130,
        "accuracy": 71 / 129,
        "precision": 36 / 65,
        "recall": 36 / 65,
    }
    metric.reset()
    metric.update(torch.full((2, 1, 4, 4), -5.0), torch.zeros(2, 1, 4, 4))  # empty target predicted empty
    assert as_floats(metric.compute()) == dict.fromkeys(MASK_KEYS, 1.0)


# ---------------------------------------------------------------- depth


def hand_depth() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8x8 maps; 4 valid pixels, with (in scale-4 units) gt 1 2 4 3 and pred 1 1 4 2; the rest is noise."""
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(1, 1, 8, 8, generator=g)
    target = torch.rand(1, 1, 8, 8, generator=g)
    valid = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    where = [(0, 0), (2, 5), (7, 7), (4, 1)]
    for (r, c), gt, pr in zip(where, [1, 2, 4, 3], [1, 1, 4, 2], strict=True):
        target[0, 0, r, c], pred[0, 0, r, c], valid[0, 0, r, c] = gt / 4, pr / 4, True
    return pred, target, valid


def test_depth_metrics_by_hand() -> None:
    """Every depth metric against a hand computation, at scales where the errors are 1 m and 2 m."""
    pred, target, valid = hand_depth()
    got = depth_metrics(pred, target, valid, scale=4.0)
    ln2, ln15 = math.log(2.0), math.log(1.5)
    expected = {
        "rmse": math.sqrt((0 + 1 + 0 + 1) / 4),
        "abs_rel": (0 + 1 / 2 + 0 + 1 / 3) / 4,
        "sq_rel": (0 + 1 / 2 + 0 + 1 / 3) / 4,
        "rmse_log": math.sqrt((ln2**2 + ln15**2) / 4),
        "log10": (math.log10(2) + math.log10(1.5)) / 4,
        "delta1": 2 / 4,  # ratios 1, 2, 1, 1.5
        "delta2": 3 / 4,  # 1.5 < 1.5625
        "delta3": 3 / 4,  # 2 > 1.953
        "count": 4,
    }
    assert set(got) == set(DEPTH_KEYS) | {"count"}
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value, rel=1e-6), key
        assert got[key].dtype == torch.float64
    assert got["ssim"].item() == pytest.approx(reference_depth_ssim(pred, target, valid), abs=1e-5)
    # scale 8: gt 2 4 8 6 m, pred 2 2 8 4 m, errors 0 2 0 2 m, so that err² = 4 differs from |err| = 2:
    # abs_rel = (0 + 2/4 + 0 + 2/6) / 4 = 5/24, sq_rel = (0 + 4/4 + 0 + 4/6) / 4 = 5/12, rmse = sqrt(8/4) = sqrt(2);
    # the ratio metrics (log errors, deltas) do not depend on the scale
    metres = depth_metrics(pred, target, valid, scale=8.0)
    expected |= {"rmse": math.sqrt(2.0), "abs_rel": 5 / 24, "sq_rel": 5 / 12}
    for key, value in expected.items():
        assert metres[key].item() == pytest.approx(value, rel=1e-6), key


def test_depth_invalid_and_zero_target_pixels_ignored() -> None:
    pred, target, valid = hand_depth()
    before = depth_metrics(pred, target, valid, scale=4.0)
    pred2, target2 = pred.clone(), target.clone()
    pred2[~valid], target2[~valid] = 0.9, 0.05
    after = depth_metrics(pred2, target2, valid, scale=4.0)
    for key in DEPTH_KEYS:
        if key != "ssim":  # SSIM windows reach across invalid neighbours
            assert after[key].item() == pytest.approx(before[key].item(), rel=1e-9), key
    # target <= 0 means unknown even without a valid mask
    target3 = torch.where(valid, target, torch.zeros_like(target))
    unmasked = depth_metrics(pred, target3, None, scale=4.0)
    for key in DEPTH_KEYS:
        if key != "ssim":
            assert unmasked[key].item() == pytest.approx(before[key].item(), rel=1e-9), key


def test_depth_no_valid_pixels_no_nan() -> None:
    pred, target, _ = hand_depth()
    got = depth_metrics(pred, target, torch.zeros_like(pred, dtype=torch.bool), scale=20.0)
    assert {k: v.item() for k, v in got.items()} == NO_DEPTH
    got = depth_metrics(pred, torch.zeros_like(target))
    assert {k: v.item() for k, v in got.items()} == NO_DEPTH


def test_depth_perfect_prediction_and_clamping() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 16, 16, generator=g) * 0.9 + 0.05
    got = depth_metrics(target.clone(), target, scale=20.0)
    assert got["rmse"].item() == pytest.approx(0.0, abs=1e-6)
    assert got["delta1"].item() == 1.0
    assert got["ssim"].item() == pytest.approx(1.0, abs=1e-5)
    # pred is clamped to [eps*scale, scale]: 2.0 -> 1.0, -1 -> eps
    hi = depth_metrics(torch.full_like(target, 2.0), torch.ones_like(target), scale=20.0)
    assert hi["rmse"].item() == pytest.approx(0.0, abs=1e-9)
    lo = depth_metrics(torch.full_like(target, -1.0), torch.ones_like(target), scale=20.0)
    assert lo["rmse"].item() == pytest.approx(20.0 - 20e-3, rel=1e-6)
    assert lo["rmse_log"].item() == pytest.approx(math.log(20.0 / 20e-3), rel=1e-6)  # |ln 20 - ln 0.02| everywhere


# ---------------------------------------------------------------- Metric classes


def random_batches(seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in (3, 2):
        target = torch.rand(b, 1, 12, 16, generator=g)
        pred = (target + 0.2 * torch.randn(b, 1, 12, 16, generator=g)).clamp(0, 1)
        valid = torch.rand(b, 1, 12, 16, generator=g) > 0.3
        out.append((pred, target, valid))
    return out


def test_mask_metric_class_equals_functional_on_concatenation() -> None:
    metric = MaskMetrics()
    batches = random_batches(2)
    logits = [torch.logit(p.clamp(0.01, 0.99)) for p, _, _ in batches]
    targets = [(t > 0.5).float() for _, t, _ in batches]
    for lg, tg in zip(logits, targets, strict=True):
        metric.update(lg, tg)
    got = metric.compute()
    expected = mask_metrics(torch.cat(logits), torch.cat(targets))
    assert set(got) == set(MASK_KEYS)
    for key in MASK_KEYS:
        assert got[key].item() == pytest.approx(expected[key].item(), rel=1e-12), key
    metric.reset()
    metric.update(*hand_mask())
    assert metric.compute()["iou"].item() == pytest.approx(4 / 13)


def test_depth_metric_class_equals_functional_on_concatenation() -> None:
    metric = DepthMetrics(scale=20.0)
    batches = random_batches(3)
    for pred, target, valid in batches:
        metric.update(pred, target, valid)
    got = metric.compute()
    preds, targets, valids = (torch.cat(x) for x in zip(*batches, strict=True))
    expected = all_depth_metrics(preds, targets, valids, scale=20.0)
    assert set(got) == set(expected)
    for key in expected:  # SSIM too: each image's map depends on that image only
        assert got[key].item() == pytest.approx(expected[key].item(), rel=1e-9), key
        assert got[key].dtype == torch.float64
    # the epoch value is per pixel, not a mean of per-batch values
    per_batch = [depth_metrics(p, t, v, scale=20.0)["rmse"].item() for p, t, v in batches]
    assert got["rmse"].item() != pytest.approx(sum(per_batch) / 2, rel=1e-9)


def test_a_prediction_in_another_range_is_scored_in_metres() -> None:
    """A model trained on depth up to 20 m scored on a set stored up to 40 m: 0.5 and 0.25 are both 10 m."""
    pred, target = torch.full((1, 1, 8, 8), 0.5), torch.full((1, 1, 8, 8), 0.25)
    metric = DepthMetrics(scale=40.0, pred_scale=20.0)
    metric.update(pred, target)
    got = metric.compute()
    assert got["rmse"].item() == pytest.approx(0.0, abs=1e-9) and got["delta1"].item() == 1.0
    same_range = DepthMetrics(scale=40.0)
    same_range.update(pred, target)
    assert same_range.compute()["rmse"].item() == pytest.approx(10.0)  # 20 m against 10 m
    beyond = DepthMetrics(scale=40.0, pred_scale=20.0)  # a raw output of 1.2 is 20 m, as predict writes it, not 24 m
    beyond.update(torch.full((1, 1, 8, 8), 1.2), torch.full((1, 1, 8, 8), 0.6))  # truth 24 m
    assert beyond.compute()["rmse"].item() == pytest.approx(4.0)


def test_depth_metric_class_empty_epoch_no_nan() -> None:
    metric = DepthMetrics()
    pred, target, _ = hand_depth()
    metric.update(pred, target, torch.zeros_like(pred, dtype=torch.bool))
    assert {k: v.item() for k, v in metric.compute().items()} == NO_DEPTH | NO_IMAGES


def test_metric_classes_under_bf16_autocast() -> None:
    batches = random_batches(4)
    mask, depth = MaskMetrics(), DepthMetrics(scale=10.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for pred, target, valid in batches:
            logits = torch.logit(pred.clamp(0.01, 0.99)).to(torch.bfloat16)
            mask.update(logits, (target > 0.5).float())
            depth.update(pred.to(torch.bfloat16), target, valid)
        got_mask, got_depth = mask.compute(), depth.compute()
    # the same bfloat16 values, in float32 without autocast
    ref_mask, ref_depth = MaskMetrics(), DepthMetrics(scale=10.0)
    for pred, target, valid in batches:
        ref_mask.update(torch.logit(pred.clamp(0.01, 0.99)).to(torch.bfloat16).float(), (target > 0.5).float())
        ref_depth.update(pred.to(torch.bfloat16).float(), target, valid)
    for got, expected in ((got_mask, ref_mask.compute()), (got_depth, ref_depth.compute())):
        assert set(got) == set(expected)
        for key in expected:
            assert got[key].dtype == torch.float64, key
            assert got[key].item() == pytest.approx(expected[key].item(), rel=1e-9), key


# ---------------------------------------------------------------- per-image depth metrics (aligned, SILog)


def test_depth_off_by_a_scale_is_perfect_after_median_and_ssi_alignment() -> None:
    pred, target, valid = hand_depth()
    target = torch.where(valid, target, target.clamp_min(0.05))
    scaled = 0.5 * target  # every valid pixel off by 2: plain delta1 0
    assert depth_metrics(scaled, target, valid, scale=4.0)["delta1"].item() == 0.0
    got = depth_image_metrics(scaled, target, valid, scale=4.0)
    assert got["delta1_median"].item() == 1.0 and got["delta1_ssi"].item() == 1.0
    assert got["abs_rel_median"].item() == pytest.approx(0.0, abs=1e-7)
    assert got["abs_rel_ssi"].item() == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(median_align(scaled, target, valid, 4.0)[valid], 4.0 * target[valid].double())
    # scale and shift: only the least-squares fit recovers it
    shifted = 0.5 * target + 0.1
    got = depth_image_metrics(shifted, target, valid, scale=4.0)
    assert got["delta1_ssi"].item() == 1.0 and got["abs_rel_ssi"].item() == pytest.approx(0.0, abs=1e-6)
    assert got["delta1_median"].item() < 1.0
    assert depth_metrics(shifted, target, valid, scale=4.0)["delta1"].item() < 1.0
    aligned = scale_shift_align(shifted, target, valid, 4.0)
    torch.testing.assert_close(aligned[valid], 4.0 * target[valid].double())


def test_median_alignment_takes_the_mean_of_the_two_middle_values() -> None:
    target = torch.tensor([0.1, 0.2, 0.3, 0.4]).reshape(1, 1, 2, 2)  # median 0.25
    pred = torch.tensor([0.1, 0.2, 0.4, 0.8]).reshape(1, 1, 2, 2)  # median 0.3: the ratio is 0.25 / 0.3 = 5/6
    torch.testing.assert_close(median_align(pred, target), (pred * 5 / 6).double())


def test_ssi_inverse_alignment_fits_scale_and_shift_of_disparity() -> None:
    target = torch.tensor([0.1, 0.2, 0.4, 0.8]).reshape(1, 1, 2, 2)
    pred = 1.0 / (0.5 / target + 2.0)  # disparity 0.5 / target + 2: affine in the target's disparity
    inverse = depth_image_metrics(pred, target, scale=10.0, align="inverse")
    assert inverse["delta1_ssi"].item() == 1.0 and inverse["abs_rel_ssi"].item() == pytest.approx(0.0, abs=1e-6)
    assert depth_image_metrics(pred, target, scale=10.0)["abs_rel_ssi"].item() > 0.05  # not affine in depth
    # normalised disparities 4 3 2.5 0.2 fit 10 5 2.5 1.25 as 2.064 x - 0.317: depth 1 / 0.095 at the last pixel,
    # beyond the range: its aligned disparity is clamped to 1 / scale, depth 10 (in scale units)
    x = torch.tensor([4.0, 3.0, 2.5, 0.2]).reshape(1, 1, 2, 2)
    aligned = scale_shift_align(1.0 / x, target, scale=10.0, align="inverse")
    assert aligned[0, 0, 1, 1].item() == 10.0
    assert aligned[0, 0, 0, 0].item() == pytest.approx(10.0 / (2.063888 * 4 - 0.31742839), rel=1e-5)
    with pytest.raises(ValueError, match=r"^align must be one of \('depth', 'inverse'\), got 'disparity'$"):
        DepthMetrics(align="disparity")


def test_ssi_of_a_constant_prediction_is_the_mean_target() -> None:
    """A constant prediction cannot be scaled: the least-squares fit is the mean target (s = 0)."""
    target = torch.tensor([0.1, 0.2, 0.3, 0.0]).reshape(1, 1, 2, 2)  # the 0 is unknown depth
    got = depth_image_metrics(torch.full_like(target, 0.7), target, scale=10.0)
    assert got["abs_rel_ssi"].item() == pytest.approx((1 / 1 + 0 + 1 / 3) / 3, rel=1e-6)
    assert got["delta1_ssi"].item() == 1 / 3


def test_silog_by_hand_and_scale_invariant() -> None:
    pred, target, valid = hand_depth()  # gt 1 2 4 3, pred 1 1 4 2: d = 0, -ln 2, 0, ln(2/3)
    d = [0.0, -math.log(2.0), 0.0, math.log(2 / 3)]
    mean_d, mean_d2 = sum(d) / 4, sum(x * x for x in d) / 4
    assert silog_per_image(pred, target, valid).item() == pytest.approx(100 * math.sqrt(mean_d2 - mean_d**2))
    assert depth_image_metrics(pred, target, valid, scale=4.0)["silog"].item() == pytest.approx(
        100 * math.sqrt(mean_d2 - mean_d**2)
    )
    for k in (0.5, 3.0):  # pred x k adds ln k to every d: the variance (lambda = 1) does not change
        scaled = silog_per_image(k * pred, target, valid).item()
        assert scaled == pytest.approx(100 * math.sqrt(mean_d2 - mean_d**2), rel=1e-9)
        shifted_d = [x + math.log(k) for x in d]
        m, m2 = sum(shifted_d) / 4, sum(x * x for x in shifted_d) / 4
        assert silog_per_image(k * pred, target, valid, lam=0.85).item() == pytest.approx(
            100 * math.sqrt(m2 - 0.85 * m**2), rel=1e-9
        )


def two_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """6x6 maps of normalised depth 0.5 (unit 1). Image 0: 3 valid pixels, pred 1 1 2 (x 0.5); image 1: 1 valid
    pixel, pred 0.25; image 2: no valid pixel."""
    target = torch.full((3, 1, 6, 6), 0.5)
    pred = torch.full((3, 1, 6, 6), 0.5)
    valid = torch.zeros(3, 1, 6, 6, dtype=torch.bool)
    valid[0, 0, 0, :2] = valid[0, 0, 1, 0] = True
    pred[0, 0, 1, 0] = 1.0
    valid[1, 0, 0, 0] = True
    pred[1, 0, 0, 0] = 0.25
    return pred, target, valid


def test_per_image_average_differs_from_pooling_and_skips_empty_images() -> None:
    pred, target, valid = two_images()
    got = depth_image_metrics(pred, target, valid)
    # medians 1 and 1 in image 0 (ratio 1): ratios 1 1 2 -> delta1 2/3, AbsRel 1/3; image 1 is exact once scaled
    assert got["delta1_median"].item() == pytest.approx((2 / 3 + 1) / 2)
    assert got["abs_rel_median"].item() == pytest.approx((1 / 3 + 0) / 2)
    assert got["images"].item() == 2  # image 2 has no valid pixel: not counted
    pooled_delta1 = 3 / 4  # the same four pixels pooled
    assert got["delta1_median"].item() != pytest.approx(pooled_delta1)
    # image 2 alone: nothing counted, no NaN
    alone = depth_image_metrics(pred[2:], target[2:], valid[2:])
    assert {k: v.item() for k, v in alone.items()} == NO_IMAGES


def test_per_image_metrics_accumulate_like_one_update_on_the_concatenation() -> None:
    metric = DepthMetrics(scale=20.0, align="inverse")
    batches = random_batches(8)
    batches[1][2][0] = False  # an image without valid pixels
    for pred, target, valid in batches:
        metric.update(pred, target, valid)
    got = metric.compute()
    preds, targets, valids = (torch.cat(x) for x in zip(*batches, strict=True))
    expected = depth_image_metrics(preds, targets, valids, scale=20.0, align="inverse")
    assert got["images"].item() == 4  # 3 + 2 images, one of them empty
    for key in expected:
        assert got[key].item() == pytest.approx(expected[key].item(), rel=1e-9), key


# ---------------------------------------------------------------- edge cases and DDP


def test_mask_metrics_all_foreground() -> None:
    full = torch.ones(2, 1, 4, 4)
    perfect = mask_metrics(torch.full_like(full, 5.0), full)
    assert all(perfect[k].item() == 1.0 for k in MASK_KEYS)
    half = torch.full_like(full, -5.0)
    half[..., :2, :] = 5.0  # half of every image predicted: TP 16, FN 16, no background at all
    got = mask_metrics(half, full)
    expected = {"iou": 0.5, "dice": 2 / 3, "accuracy": 0.5, "precision": 1.0, "recall": 0.5}
    assert {k: got[k].item() for k in MASK_KEYS} == pytest.approx(expected)


def test_depth_invalid_pixels_with_garbage_values_no_nan() -> None:
    """Unknown target pixels (valid False) may hold any value, even inf, without changing the result."""
    pred, target, valid = hand_depth()
    before = depth_metrics(pred, target, valid, scale=4.0)
    pred2, target2 = pred.clone(), target.clone()
    pred2[~valid], target2[~valid] = -7.0, float("inf")
    after = depth_metrics(pred2, target2, valid, scale=4.0)
    for key in DEPTH_KEYS:  # SSIM too: the prediction at an unknown pixel is not scored, even in a window
        assert after[key].item() == pytest.approx(before[key].item(), rel=1e-9), key
    for align in ("depth", "inverse"):
        before = depth_image_metrics(pred, target, valid, scale=4.0, align=align)
        after = depth_image_metrics(pred2, target2, valid, scale=4.0, align=align)
        assert {k: v.item() for k, v in after.items()} == pytest.approx({k: v.item() for k, v in before.items()})


@pytest.mark.parametrize("cls", [MaskMetrics, DepthMetrics])
def test_metric_states_are_summed_in_sync_and_reset(cls: type) -> None:
    """The states are the functional sums, reduced by summing across processes, and reset to zero."""
    metric = cls()
    pred, target, valid = random_batches(7)[0]
    if cls is MaskMetrics:
        target = (target > 0.5).float()
        expected = dict(zip(("tp", "fp", "fn", "tn"), mask_confusion(pred, target, valid=valid), strict=True))
    else:
        sums = depth_sums(pred, target, valid) | depth_image_sums(pred, target, valid)
        expected = {f"sum_{k}": v for k, v in sums.items()}
    assert cls.full_state_update is False
    assert set(metric._reductions) == set(expected)
    assert all(metric._reductions[name] is dim_zero_sum for name in expected)
    metric.update(pred, target, valid)
    assert {name: getattr(metric, name).item() for name in expected} == {k: v.item() for k, v in expected.items()}
    metric.reset()
    assert {name: getattr(metric, name).item() for name in expected} == dict.fromkeys(expected, 0)


@pytest.mark.parametrize("cls", [MaskMetrics, DepthMetrics])
def test_metric_states_are_sums_that_merge_like_one_process(cls: type) -> None:
    """Two ranks' states combined by the states' reduction (as DDP sync does) give the metrics of all the data."""
    batches = random_batches(5)
    ranks = [cls(), cls()]
    args = [(8 * p - 4, (t > 0.5).float(), v) if cls is MaskMetrics else (p, t, v) for p, t, v in batches]  # logits
    for metric, (pred, target, valid) in zip(ranks, args, strict=True):
        metric.update(pred, target, valid)
    ranks[0].merge_state(ranks[1])
    whole = cls()
    for pred, target, valid in args:
        whole.update(pred, target, valid)
    got, expected = ranks[0].compute(), whole.compute()
    for key in expected:
        assert got[key].item() == pytest.approx(expected[key].item(), rel=1e-12), key


def _ddp_rank(rank: int, port: int, out_dir: str) -> None:
    """One process of a 2-process gloo group: update with its own batch, compute (which syncs), save the result."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    pred, target, valid = random_batches(6)[rank]
    mask, depth = MaskMetrics(), DepthMetrics(scale=20.0)
    mask.update(8 * pred - 4, (target > 0.5).float(), valid)  # logits on both sides of 0
    depth.update(pred, target, valid)
    values = {f"mask/{k}": v.item() for k, v in mask.compute().items()}
    values |= {f"depth/{k}": v.item() for k, v in depth.compute().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(values))
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes; test_metric_states_are_sums_that_merge_like_one_process covers the sums
def test_metrics_sync_across_two_ddp_processes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    batches = random_batches(6)
    preds, targets, valids = (torch.cat(x) for x in zip(*batches, strict=True))
    masks = mask_metrics(8 * preds - 4, (targets > 0.5).float(), valid=valids)
    expected = {f"mask/{k}": v.item() for k, v in masks.items()}
    expected |= {f"depth/{k}": v.item() for k, v in all_depth_metrics(preds, targets, valids, scale=20.0).items()}
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == pytest.approx(expected, rel=1e-9), rank


def test_dilation_and_erosion_by_hand() -> None:
    """A 3×3 block in the corner of a 5×5 mask: dilated by 1 px it covers 4×4; eroded by 1 px, 2×2 stays in the
    corner (beyond the border counts for nothing: the block loses its inner sides only)."""
    mask = torch.zeros(1, 1, 5, 5)
    mask[..., :3, :3] = 1
    grown, shrunk = torch.zeros(5, 5), torch.zeros(5, 5)
    grown[:4, :4] = 1
    shrunk[:2, :2] = 1
    assert torch.equal(dilate(mask, 1)[0, 0], grown)
    assert torch.equal(erode(mask, 1)[0, 0], shrunk)
    assert torch.equal(outline_band(mask, 1)[0, 0], grown.bool() & ~shrunk.bool())  # the 4×4 less the 2×2


def test_intersection_union_and_iou_by_hand() -> None:
    pred = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    target = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    inter, union = intersection_union(pred, target)
    assert inter.tolist() == [1.0, 0.0] and union.tolist() == [3.0, 0.0]
    assert iou(inter, union).tolist() == [1 / 3, 1.0]  # both empty: 1


def test_known_depth_needs_valid_and_a_positive_depth():
    depth = torch.tensor([[[[0.0, 0.5], [0.2, 0.7]]]])
    valid = torch.tensor([[[[1, 1], [0, 1]]]], dtype=torch.uint8)
    assert known_depth(depth).flatten().tolist() == [False, True, True, True]
    assert known_depth(depth, valid).flatten().tolist() == [False, True, False, True]
    assert known_depth(depth.expand(2, 1, 2, 2), valid).shape == (2, 1, 2, 2)  # valid broadcast
