"""The |fg_bg − bg| threshold baseline: the threshold it fits and the scores it gives, against hand-built pairs."""

import pytest
import torch

from mdeas.baseline import difference, fit_threshold, score


def _batch(step: float) -> dict:
    """One 1×4 pair: fg_bg differs from a grey bg by 0.05, 0.15, 0.25 (wrong: outside the mask) and `step`."""
    bg = torch.full((1, 3, 1, 4), 0.5)
    fg_bg = bg + torch.tensor([0.05, 0.15, 0.25, step]).view(1, 1, 1, 4)
    return {"bg": bg, "fg_bg": fg_bg, "mask": torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 1, 1, 4)}


def test_difference_is_the_mean_absolute_rgb_difference():
    bg, fg_bg = torch.zeros(1, 3, 1, 1), torch.tensor([0.3, -0.3, 0.0]).view(1, 3, 1, 1)
    assert difference(bg, fg_bg).item() == pytest.approx(0.2)


def test_fit_threshold_picks_the_best_iou_over_the_batches_and_score_applies_it():
    batches = [_batch(0.3), _batch(0.4)]
    threshold = fit_threshold(batches, lambda x: x)
    # pooled IoU by threshold t: 1/2 below 0.05 (all four), 2/3 in [0.05, 0.15) (both mask pixels and 0.25),
    # 1/3 in [0.15, 0.25) (0.25 and the step), 1/2 in [0.25, 0.3) (the step alone)
    assert 0.05 <= threshold < 0.15
    scores = score(batches, lambda x: x, threshold)
    assert scores["iou"] == pytest.approx(2 / 3)
    assert score(batches, lambda x: x, 0.2)["iou"] == pytest.approx(1 / 3)  # 0.25, 0.3: one right, one false
