"""The learned-edge-colour experiment's pieces: seed-way pastes with their truths, crops, an untrained head."""

import numpy as np
import torch

from experiments.edge_colour import ColourHead, crops, paste
from mdeas.synth.generate import Options, make_background, make_sample, plan


def test_a_paste_is_alpha_blended_in_the_stored_colours_with_its_truths():
    """At JPEG quality 100 the stored fg_bg's brightness is that of α·F + (1 − α)·bg to within a level or two, on the
    blended edge too (JPEG halves the colour's resolution, not the brightness'), and its mask is the generator's
    own for the same sample."""
    opts = Options(2, image_size=64, seed=3, jpeg_quality=100, paste_fraction=1.0, fg_per_bg=2)
    for spec in plan(opts):
        one = paste(opts, spec)
        alpha = one["alpha"][..., None]
        assert one["bg"].shape == one["fg_bg"].shape == (64, 64, 3) and one["fg_bg"].dtype == np.uint8
        background = make_background(opts.seed, spec.bg_index, 64, opts.max_depth_mm / 1000.0)
        np.testing.assert_array_equal(alpha[..., 0] > 0.5, make_sample(background, spec, opts).mask)
        luma = np.array([0.299, 0.587, 0.114])
        error = np.abs((one["fg_bg"] - (alpha * one["colour"] + (1 - alpha) * one["bg"])) @ luma)
        edge = (alpha[..., 0] > 0) & (alpha[..., 0] < 1)
        assert edge.sum() > 10 and error[edge].mean() < 2.0 and error.mean() < 1.0


def test_crops_are_slices_shifted_inside_the_image():
    maps = torch.arange(2 * 2 * 10 * 10, dtype=torch.float16).view(2, 2, 10, 10)
    out = crops({"x": maps}, torch.tensor([[1, 5, 5], [0, 0, 9]]), 4)["x"]
    assert out.dtype == torch.float32 and out.shape == (2, 2, 4, 4)
    assert torch.equal(out[0], maps[1, :, 3:7, 3:7].float())
    assert torch.equal(out[1], maps[0, :, 0:4, 6:10].float())  # the centre (0, 9) moved inside


def test_the_head_corrects_the_estimate_only_where_it_is_known():
    head = ColourHead(width=8, dilations=(1, 2))
    images = [torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    known, logits = torch.ones(2, 1, 12, 12), torch.randn(2, 1, 12, 12)
    assert torch.equal(head(images[0], images[1], images[2], known, logits), images[2])  # untrained: F̂ itself
    torch.nn.init.normal_(head.net[-1].weight)
    known[0, :, :6] = 0
    out = head(images[0], images[1], images[2], known, logits)
    assert torch.equal(out[0, :, :6], images[2][0, :, :6])
    assert (out[0, :, 6:] != images[2][0, :, 6:]).all() and (out[1] != images[2][1]).all()
