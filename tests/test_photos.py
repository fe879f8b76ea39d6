"""Photo skins (mdeas.synth.photos): crops of shipped photographs worn by generated backgrounds and objects. The
photos are stood in for by arrays made here, so no photo package is needed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mdeas.synth import generate as gen
from mdeas.synth import photos
from mdeas.synth.generate import Options, make_background, make_sample, plan
from tests.conftest import changed_far_from_mask

MAGENTA = (np.ones((40, 60, 3), np.float32) * np.array([1.0, 0.0, 1.0], np.float32),)


def _coordinates(height: int, width: int) -> np.ndarray:
    """A photo whose red channel is its row / height and green its column / width."""
    rows, cols = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    return np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.float32)


@pytest.mark.parametrize("size", [(16, 16), (12, 30), (30, 12)])
def test_a_crop_has_the_asked_size_and_is_a_smooth_piece_of_the_photo(size: tuple[int, int]) -> None:
    photo = _coordinates(90, 120)
    for seed in range(8):  # every quarter turn and mirroring comes up
        crop = photos.photo_crop(np.random.default_rng(seed), (photo,), *size)
        assert crop.shape == (*size, 3) and crop.dtype == np.float32
        assert (crop[..., 2] == 0).all() and crop.min() >= 0 and crop.max() <= 1
        # neighbours in the crop are neighbours in the photo: coordinates move by at most a few photo px per step
        steps = np.abs(np.diff(crop[..., :2], axis=0)).max(), np.abs(np.diff(crop[..., :2], axis=1)).max()
        assert max(steps) < 8 / 90
        # the crop spans at least a quarter of the photo's shorter side along its longer axis
        assert max(np.ptp(crop[..., 0]), np.ptp(crop[..., 1])) > 0.2 * 90 / 120
    first = photos.photo_crop(np.random.default_rng(1), (photo,), *size)
    np.testing.assert_array_equal(first, photos.photo_crop(np.random.default_rng(1), (photo,), *size))


def test_wearing_a_photo_blends_it_over_the_render_by_a_weight_of_0_6_to_0_95() -> None:
    rgb = np.full((10, 14, 3), 0.2, np.float32)
    for seed in range(10):
        out = photos.wear_photo(rgb, np.random.default_rng(seed), MAGENTA)
        assert out.shape == rgb.shape and out.dtype == rgb.dtype
        weight = (out[..., 0] - 0.2) / (1.0 - 0.2)  # red goes 0.2 → 1 as the weight goes 0 → 1
        assert np.ptp(weight) < 1e-6 and 0.6 - 1e-6 <= weight.mean() <= 0.95 + 1e-6
        np.testing.assert_allclose(out[..., 1], 0.2 * (1 - weight), atol=1e-6)  # green goes 0.2 → 0


def test_without_a_photo_package_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(photos, "package_folder", lambda name: None)
    with pytest.raises(ValueError, match=r"matplotlib or sklearn.*pip install -e '\.\[photos\]'$"):
        photos.shipped_photo_paths()


def test_generating_skins_without_a_photo_package_fails_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(photos, "package_folder", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[photos\]'$"):
        gen.generate(tmp_path / "sub" / "skins.zip", 2, workers=1, image_size=32, photo_skins=0.5)
    assert not (tmp_path / "sub").exists()


def test_the_shipped_photos_are_found_in_the_package_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sklearn" / "datasets" / "images").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (6, 4), (255, 0, 0)).save(tmp_path / "sklearn" / "datasets" / "images" / "china.jpg")
    monkeypatch.setattr(photos, "package_folder", lambda name: tmp_path / name)
    assert photos.shipped_photo_paths() == [tmp_path / "sklearn" / "datasets" / "images" / "china.jpg"]


def test_photo_skins_recolour_objects_and_backgrounds_and_keep_masks_and_depth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gen, "shipped_photos", lambda: MAGENTA)
    seed, size = 11, 64
    opts = Options(4, image_size=size, seed=seed, fg_per_bg=4, paste_fraction=1.0)
    skinned = dataclasses.replace(opts, photo_skins=1.0)
    plain_bg = make_background(seed, 0, size, 20.0)
    photo_bg = make_background(seed, 0, size, 20.0, photo_skins=1.0)
    np.testing.assert_array_equal(plain_bg.render.depth, photo_bg.render.depth)
    green_share = lambda rgb: rgb[..., 1].mean() / rgb.mean()  # noqa: E731  magenta has no green
    assert green_share(photo_bg.rgb.astype(float)) < 0.5 * green_share(plain_bg.rgb.astype(float))
    for spec in plan(opts):
        plain, worn = make_sample(plain_bg, spec, opts), make_sample(plain_bg, spec, skinned)
        np.testing.assert_array_equal(plain.mask, worn.mask)
        np.testing.assert_array_equal(plain.depth, worn.depth)
        inside = lambda s: s.fg_bg[s.mask].astype(float)  # noqa: E731
        assert green_share(inside(worn)) < 0.5 * green_share(inside(plain))
        assert changed_far_from_mask(worn) == 0.0  # still a paste: nothing changes away from the object
