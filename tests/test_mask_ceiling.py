import numpy as np

from experiments.mask_ceiling import oracle, outline_band


def test_the_pixel_oracle_reads_the_opacity_of_an_exact_blend():
    bg = np.full((1, 4, 3), 100.0)
    colour = np.array([[[200.0, 100, 100], [100, 0, 100], [100, 100, 100], [150, 150, 150]]])
    alpha = np.array([[0.6, 0.4, 1.0, 0.51]])
    fg_bg = bg * (1 - alpha[..., None]) + colour * alpha[..., None]
    # α 0.6 → object; 0.4 → background; object the colour of the background → background; 0.51 → object
    assert oracle(fg_bg, bg, colour).tolist() == [[True, False, False, True]]
    noisy = fg_bg + np.array([0.0, 0.0, 15.0])  # noise across the contrast (blue) does not move α̂ of the red pixel
    assert oracle(noisy, bg, colour)[0, 0]


def test_the_outline_band_is_one_pixel_on_each_side_of_the_outline():
    mask = np.zeros((5, 6), bool)
    mask[:, 3:] = True
    band = outline_band(mask)
    assert np.flatnonzero(band[2]).tolist() == [2, 3]
    assert band.sum() == 10
    assert not outline_band(np.ones((4, 4), bool)).any()
