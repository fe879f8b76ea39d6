"""The outline step: on a band around the predicted outline, alpha solved from the known background decides."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from mdeas.metrics.per_image import boundary
from mdeas.outline import KnownBackgroundOutline, _box_sum, colour_alpha, from_config, inside_colour
from tests.test_native_eval import ROOT

SIZE = 40
OBJECT = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1)


def distance_from_centre() -> torch.Tensor:
    """Each pixel's distance in px from the image centre, float [H, W]."""
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return ((y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2).float().sqrt()


def composite(radius: float = 10.2, colour: torch.Tensor = OBJECT) -> tuple[torch.Tensor, ...]:
    """(alpha [1, 1, H, W], bg, fg_bg [1, 3, H, W]): a disc of `colour` whose opacity falls from 1 to 0 over the
    px around `radius`, pasted on a textured background: fg_bg = alpha·colour + (1 − alpha)·bg exactly."""
    r = distance_from_centre()
    alpha = (radius + 0.5 - r).clamp(0, 1)[None, None]
    bg = 0.3 + 0.2 * torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return alpha, bg, alpha * colour + (1 - alpha) * bg


def disc_logits(radius: float) -> torch.Tensor:
    """A model's logits [1, 1, H, W]: +5 inside a disc of `radius`, −5 outside."""
    r = distance_from_centre()
    return torch.where(r <= radius, 5.0, -5.0)[None, None]


@pytest.mark.parametrize("predicted", [9.5, 11.0])  # the outline placed a px too far in, or out
def test_the_band_takes_the_alpha_of_the_composite(predicted):
    alpha, bg, fg_bg = composite()
    logits = disc_logits(predicted)
    out = KnownBackgroundOutline(band=1, radius=4)(logits, bg, fg_bg)
    truth = alpha > 0.5
    assert not torch.equal(logits > 0, truth)  # the model's outline is off ...
    assert torch.equal(out > 0, truth)  # ... and the colours put it back
    changed = out != logits
    soft = changed & (alpha > 0.01) & (alpha < 0.99)
    assert soft.any()  # there F is the disc's colour exactly, so the solved alpha is the composite's
    assert torch.allclose(torch.sigmoid(out[soft]), alpha[soft], atol=1e-4)
    inside, outside = disc_logits(predicted - 2) > 0, disc_logits(predicted + 2) <= 0
    assert not changed[inside | outside].any()  # off the band the logits stay


def test_a_known_object_colour_replaces_the_estimate():
    """A disc whose rim is dark and inside bright: the colour estimated from the inside misreads the rim's alpha,
    the true colour per pixel reads it exactly."""
    r = distance_from_centre()[None, None]
    colour = torch.where(r > 8.5, 0.1, 0.95) * torch.ones(1, 3, 1, 1)  # a dark rim from 8.5 px out
    alpha, bg, _ = composite()
    fg_bg = alpha * colour + (1 - alpha) * bg
    logits, step = disc_logits(11.0), KnownBackgroundOutline(band=1, radius=2)
    truth = alpha > 0.5
    assert not torch.equal(step(logits, bg, fg_bg) > 0, truth)  # F from the bright inside: the rim reads as bg
    known = step(logits, bg, fg_bg, colour=colour)
    assert torch.equal(known > 0, truth)
    soft = (known != logits) & (alpha > 0.01) & (alpha < 0.99)
    assert soft.any() and torch.allclose(torch.sigmoid(known[soft]), alpha[soft], atol=1e-4)


def test_an_object_in_its_background_colours_keeps_the_model_mask():
    alpha, bg, fg_bg = composite(colour=torch.full((1, 3, 1, 1), 0.4))  # |F − B| ≤ 0.1·√3 < 0.235
    logits = disc_logits(11.0)
    assert torch.equal(KnownBackgroundOutline()(logits, bg, fg_bg), logits)


def test_without_confident_foreground_nearby_the_model_mask_stays():
    alpha, bg, fg_bg = composite()
    logits = disc_logits(11.0) * 0.1  # ±0.5: foreground, but nowhere above the confident logit 1
    assert torch.equal(KnownBackgroundOutline()(logits, bg, fg_bg), logits)
    thin = KnownBackgroundOutline(band=1, radius=2)
    ring = disc_logits(11.0) - (disc_logits(9.0) > 0).float() * 10  # a 2 px ring: all of it on the band
    assert torch.equal(thin(ring, bg, fg_bg), ring)


def test_batches_are_refined_image_by_image():
    alpha, bg, fg_bg = composite()
    logits = torch.cat([disc_logits(11.0), disc_logits(9.0)])
    step = KnownBackgroundOutline()
    both = step(logits, bg.expand(2, -1, -1, -1), fg_bg.expand(2, -1, -1, -1))
    for i in range(2):
        assert torch.equal(both[i : i + 1], step(logits[i : i + 1], bg, fg_bg))


def test_bad_sizes_are_refused():
    bad = [
        ({"band": 0}, "outline.band must be a whole number >= 1, got 0"),
        ({"radius": 1.5}, "outline.radius must be a whole number >= 1, got 1.5"),
        ({"radius": True}, "outline.radius must be a whole number >= 1, got True"),
        ({"radius": 100_000}, "outline.radius must be at most 64 px, got 100000"),
        ({"confident": "abc"}, "outline.confident must be a finite number, got 'abc'"),
        ({"confident": float("nan")}, "outline.confident must be a finite number, got nan"),
        ({"min_contrast": -0.5}, "outline.min_contrast must be positive, got -0.5"),
        ({"min_contrast": "abc"}, "outline.min_contrast must be a finite number, got 'abc'"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError) as caught:
            KnownBackgroundOutline(**options)
        assert str(caught.value) == message


@pytest.mark.parametrize("name", ["evaluate", "predict", "compare"])
def test_the_clis_refine_the_outline_unless_told_not_to(name):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        on = compose(name)
        off = compose(name, ["outline=none"])
    step = from_config(on.outline)
    assert isinstance(step, KnownBackgroundOutline) and (step.band, step.radius) == (1, 6)
    assert from_config(off.get("outline")) is None
    with pytest.raises(ValueError, match=r"^unknown outline options \['radus'\]; known: band, radius, "):
        from_config({**on.outline, "radus": 4})


def test_window_sums_count_only_pixels_inside_the_image():
    sums = _box_sum(torch.ones(1, 1, 4, 5), 1)[0, 0]
    assert sums.tolist() == [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]]
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(_box_sum(x, 2), torch.nn.functional.avg_pool2d(x, 5, 1, 2) * 25, atol=1e-5)


def test_the_object_colour_comes_from_pixels_more_than_band_px_inside():
    """Confident foreground counts for F only more than `band` px inside the predicted outline: with `radius` 1,
    an outline pixel's neighbours (1 px in) give it a colour at band 1, none at band 2."""
    alpha, bg, fg_bg = composite()
    logits = disc_logits(10.0)
    outline = boundary(logits > 0)
    _, _, weight_1 = colour_alpha(logits, bg, fg_bg, band=1, radius=1)
    _, _, weight_2 = colour_alpha(logits, bg, fg_bg, band=2, radius=1)
    assert (weight_1[outline] > 0).float().mean() > 0.5
    assert not (weight_2[outline] > 0).any()


def test_the_inside_colour_is_the_mean_over_confident_pixels_in_the_window():
    """A 6×6 predicted square, its left half red and right half blue; confident are the pixels more than 1 px inside
    its outline (the middle 4×4). With radius 2, pixel (6, 3) on the outline reaches 4 rows × 2 red columns of them,
    pixel (6, 5) 4 rows × 2 red and 2 blue columns; a corner pixel none."""
    logits = torch.full((1, 1, 12, 12), -5.0)
    logits[..., 3:9, 3:9] = 5.0
    fg_bg = torch.zeros(1, 3, 12, 12)
    fg_bg[0, 0, 3:9, 3:6] = 1.0
    fg_bg[0, 2, 3:9, 6:9] = 1.0
    colour, count = inside_colour(logits, fg_bg, band=1, radius=2)
    assert count[0, 0, 6, 3].item() == 4 * 2 and count[0, 0, 0, 0].item() == 0
    assert torch.allclose(colour[0, :, 6, 3], torch.tensor([1.0, 0.0, 0.0]))
    assert count[0, 0, 6, 5].item() == 4 * 4
    assert torch.allclose(colour[0, :, 6, 5], torch.tensor([0.5, 0.0, 0.5]))
    assert torch.equal(colour[0, :, 0, 0], torch.zeros(3))
