"""Per-image mask scores against hand-made cases."""

import pytest
import torch

from mdeas.metrics.per_image import PerImageMaskMetrics, boundary, boundary_f_score, boundary_tolerance, iou_per_image


def square(size: int, top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., top : top + side, left : left + side] = True
    return mask


def test_boundary_of_a_square_is_its_outline():
    outline = boundary(square(8, 2, 2, 4))[0, 0]
    assert outline.sum() == 12  # a 4x4 square: 16 pixels, 4 inside
    assert not outline[3:5, 3:5].any() and outline[2, 2:6].all() and outline[5, 2:6].all()


def test_boundary_f_score_hand_cases():
    a = square(16, 4, 4, 6)
    assert boundary_f_score(a, a, tolerance=1).item() == 1.0
    shifted = square(16, 4, 5, 6)  # one pixel to the right: every boundary pixel is within 1 px of the other's
    assert boundary_f_score(shifted, a, tolerance=1).item() == 1.0
    # with no tolerance: of 20 outline pixels each, the shared ones are the top and bottom rows minus one column
    # (2 x 5) and no column pixels; P = R = 10/20
    assert boundary_f_score(shifted, a, tolerance=0).item() == pytest.approx(0.5)
    # precision and recall apart: a 2x2 square in the corner of a 4x4 one, no tolerance. Of the 2x2's 4 outline
    # pixels 3 lie on the 4x4's outline (its inner corner is the 4x4's interior): P = 3/4; of the 4x4's 12, the
    # same 3: R = 3/12. F = 2PR / (P + R) = 2 * 3/16 / 1 = 0.375 (their mean would be 0.5, their minimum 0.25)
    corner, target = square(12, 4, 4, 2), square(12, 4, 4, 4)
    assert boundary_f_score(corner, target, tolerance=0).item() == pytest.approx(0.375)
    assert boundary_f_score(target, corner, tolerance=0).item() == pytest.approx(0.375)  # P and R swap
    far = square(16, 0, 12, 3)
    assert boundary_f_score(far, a, tolerance=1).item() == 0.0
    empty = torch.zeros_like(a)
    assert boundary_f_score(empty, empty).tolist() == [1.0]
    assert boundary_f_score(empty, a).tolist() == [0.0]
    full = torch.ones_like(a)  # no boundary either (beyond the border counts as inside), but not empty
    assert boundary_f_score(full, full).tolist() == [1.0]
    assert boundary_f_score(empty, full).tolist() == [0.0] and boundary_f_score(full, empty).tolist() == [0.0]


def test_tolerance_follows_the_diagonal():
    assert boundary_tolerance(16, 16) == 1
    assert boundary_tolerance(224, 224) == 2  # 0.0075 x 316.8
    assert boundary_tolerance(1080, 1920) == 17  # 0.0075 x 2202.9


def test_the_metric_scores_boundaries_at_the_sizes_tolerance():
    a, shifted = square(16, 4, 4, 6), square(16, 4, 5, 6)  # 1 px apart: F 1.0 at 16x16's tolerance (1 px), 0.5 at 0
    metric = PerImageMaskMetrics(from_logits=False)
    metric.update(shifted.float(), a.float())
    assert metric.compute()["boundary_f"].item() == 1.0
    # 2 px apart: of the 20 outline pixels of either square, 12 lie within 1 px of the other's outline (8 on the two
    # edges along the shift, 4 on the edge inside the other square), so F = 0.6; a tolerance of 2 px would give 1.0
    metric = PerImageMaskMetrics(from_logits=False)
    metric.update(square(16, 4, 6, 6).float(), a.float())
    assert metric.compute()["boundary_f"].item() == pytest.approx(0.6)


def test_per_image_mean_differs_from_pooling():
    big, small = square(10, 0, 0, 10), square(10, 0, 0, 2)
    pred = torch.cat([big, torch.zeros_like(small)])
    target = torch.cat([big, small])
    assert iou_per_image(pred, target).tolist() == [1.0, 0.0]
    metric = PerImageMaskMetrics(from_logits=False)
    metric.update(pred.float(), target.float())
    assert metric.compute()["iou_per_image"].item() == 0.5  # pooled IoU would be 100 / 104


def test_updates_of_different_sizes_accumulate():
    metric = PerImageMaskMetrics()
    a = square(8, 2, 2, 4)
    metric.update(torch.where(a, 5.0, -5.0), a.float())  # logits: perfect
    b = square(12, 0, 0, 6)
    metric.update(torch.full((1, 1, 12, 12), -5.0), b.float())  # predicted empty
    scores = metric.compute()
    assert scores["iou_per_image"].item() == 0.5 and scores["boundary_f"].item() == 0.5
    metric.reset()
    assert metric.images.item() == 0
