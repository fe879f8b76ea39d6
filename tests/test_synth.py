"""The synthetic generator: zip layout, encodings, determinism, CLI and the geometry behind the depth maps."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeas.data import scene as sc
from mdeas.data.synth import depth_to_mm, generate, make_background, make_sample

REPO = Path(__file__).resolve().parents[1]
SIZE, N, PER_BG, MAX_MM = 64, 20, 5, 20000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "d.zip", N, image_size=SIZE, seed=3, fg_per_bg=PER_BG)


def _manifest(archive: zipfile.ZipFile) -> list[list[str]]:
    return list(csv.reader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))


def _image(archive: zipfile.ZipFile, name: str) -> Image.Image:
    image = Image.open(io.BytesIO(archive.read(name)))
    image.load()
    return image


def _entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# --------------------------------------------------------------------------------------------------------------
# Layout and encodings


def test_manifest_lists_every_sample_and_entry(dataset: Path) -> None:
    with zipfile.ZipFile(dataset) as archive:
        rows = _manifest(archive)
        names = set(archive.namelist())
        assert rows[0] == ["id", "bg", "fg_bg", "mask", "depth"]
        assert len(rows) == N + 1
        ids = [row[0] for row in rows[1:]]
        assert len(set(ids)) == N
        for sample_id, bg, fg_bg, mask, depth in rows[1:]:
            assert fg_bg == f"fg_bg/{sample_id}.jpg" and mask == f"mask/{sample_id}.png"
            assert depth == f"depth/{sample_id}.png" and bg.startswith("bg/") and bg.endswith(".jpg")
            assert {bg, fg_bg, mask, depth} <= names
        expected = {"manifest.csv", "meta.json"} | {e for row in rows[1:] for e in row[1:]}
        assert names == expected
        for info in archive.infolist():
            if info.filename.endswith((".jpg", ".png")):
                assert info.compress_type == zipfile.ZIP_STORED


def test_each_background_is_reused_fg_per_bg_times(dataset: Path) -> None:
    with zipfile.ZipFile(dataset) as archive:
        rows = _manifest(archive)[1:]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
        assert row[0].startswith(Path(row[1]).stem + "_f")
    assert len(counts) == math.ceil(N / PER_BG)
    assert set(counts.values()) == {PER_BG}


def test_partial_last_background(tmp_path: Path) -> None:
    path = generate(tmp_path / "p.zip", 7, image_size=32, seed=0, fg_per_bg=3)
    with zipfile.ZipFile(path) as archive:
        rows = _manifest(archive)[1:]
        assert len([n for n in archive.namelist() if n.startswith("bg/")]) == 3
    assert [row[0] for row in rows] == [f"b{b:05d}_f{k:02d}" for b in range(3) for k in range(3)][:7]
    assert [row[1] for row in rows].count("bg/b00002.jpg") == 1


def test_meta_describes_parameters_and_depth_encoding(dataset: Path) -> None:
    with zipfile.ZipFile(dataset) as archive:
        meta = json.loads(archive.read("meta.json"))
    assert meta["depth"] == {"format": "png16", "unit": "mm", "max": MAX_MM}
    assert (meta["seed"], meta["num_samples"], meta["image_size"], meta["fg_per_bg"]) == (3, N, SIZE, PER_BG)
    assert meta["jpeg_quality"] == 75 and "version" in meta


def test_images_have_the_documented_encodings(dataset: Path) -> None:
    with zipfile.ZipFile(dataset) as archive:
        for _, bg, fg_bg, mask_name, depth_name in _manifest(archive)[1:]:
            for name in (bg, fg_bg):
                image = _image(archive, name)
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (SIZE, SIZE)
            mask_image = _image(archive, mask_name)
            assert mask_image.format == "PNG" and mask_image.mode == "L" and mask_image.size == (SIZE, SIZE)
            mask = np.asarray(mask_image)
            assert set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
            depth_image = _image(archive, depth_name)
            assert depth_image.format == "PNG" and depth_image.mode == "I;16" and depth_image.size == (SIZE, SIZE)
            depth = np.asarray(depth_image)
            assert depth.dtype == np.uint16
            assert depth.min() > 0 and depth.max() <= MAX_MM


# --------------------------------------------------------------------------------------------------------------
# Determinism, CLI, argument handling


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path: Path) -> None:
    a = generate(tmp_path / "a.zip", 6, image_size=32, seed=5, fg_per_bg=3)
    b = generate(tmp_path / "b.zip", 6, image_size=32, seed=5, fg_per_bg=3)
    c = generate(tmp_path / "c.zip", 6, image_size=32, seed=6, fg_per_bg=3)
    assert a.read_bytes() == b.read_bytes()
    ea, eb, ec = _entries(a), _entries(b), _entries(c)
    assert list(ea) == list(eb) == list(ec)
    assert all(ea[name] == eb[name] for name in ea)
    for prefix in ("bg/", "fg_bg/", "mask/", "depth/"):
        assert all(ea[n] != ec[n] for n in ea if n.startswith(prefix))


def test_first_samples_do_not_depend_on_the_dataset_size(tmp_path: Path) -> None:
    small = _entries(generate(tmp_path / "s.zip", 3, image_size=32, seed=2, fg_per_bg=2))
    large = _entries(generate(tmp_path / "l.zip", 5, image_size=32, seed=2, fg_per_bg=2))
    for name in ("fg_bg/b00000_f01.jpg", "depth/b00001_f00.png", "mask/b00001_f00.png", "bg/b00001.jpg"):
        assert small[name] == large[name]


def test_cli_writes_only_the_zip(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "mdeas.data.synth", "out=data/x.zip", "num_samples=4", "image_size=32", "seed=1"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "wrote 4 samples to data/x.zip"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["data", "data/x.zip"]
    with zipfile.ZipFile(tmp_path / "data" / "x.zip") as archive:
        assert len(_manifest(archive)) == 5
        assert json.loads(archive.read("meta.json"))["image_size"] == 32


@pytest.mark.parametrize(
    "kwargs", [{"num_samples": 0}, {"image_size": 8}, {"max_depth_mm": 70000}, {"fg_per_bg": 0}, {"seed": -1}]
)
def test_bad_arguments_fail_and_write_nothing(tmp_path: Path, kwargs: dict) -> None:
    args = {"num_samples": 2, "image_size": 32, **kwargs}
    with pytest.raises(ValueError):
        generate(tmp_path / "sub" / "bad.zip", **args)
    assert not (tmp_path / "sub" / "bad.zip").exists()
    assert not (tmp_path / "sub" / "bad.zip.tmp").exists()


def test_no_temporary_file_is_left(dataset: Path) -> None:
    assert dataset.exists() and not dataset.with_name(dataset.name + ".tmp").exists()


# --------------------------------------------------------------------------------------------------------------
# Geometry


def _samples(seed: int = 11, backgrounds: int = 6, per_bg: int = 3, size: int = SIZE):
    for b in range(backgrounds):
        background = make_background(seed, b, size, MAX_MM / 1000.0)
        for k in range(per_bg):
            yield make_sample(background, seed, k)


def test_background_depth_is_planar_depth_of_the_nearest_plane() -> None:
    for b in range(8):
        rgb, depth, info = sc.render_background(np.random.default_rng([4, b]), SIZE, 20.0)
        assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
        assert depth.shape == (SIZE, SIZE) and depth.dtype == np.float32
        cam, room = info.camera, info.room
        dx, dy, dz = (np.broadcast_to(d, depth.shape) for d in cam.ray_dirs())
        t = depth.astype(np.float64)
        ground, wall = info.surface == sc.GROUND, info.surface == sc.BACK_WALL
        assert ground.any()
        unclamped = t < 20.0 - 1e-3
        np.testing.assert_allclose(t[ground], np.minimum(-cam.height / dy[ground], 20.0), rtol=1e-6)
        np.testing.assert_allclose((t * dz)[wall & unclamped], room.wall_dist, rtol=1e-6)
        # the hit point projects back onto its own pixel centre with camera-frame z equal to the depth
        rows, cols = np.nonzero(unclamped & (info.surface != sc.SKY))
        u, v, zc = cam.project(t * dx, t * dy, t * dz)
        np.testing.assert_allclose(u[rows, cols], cols, atol=1e-6)
        np.testing.assert_allclose(v[rows, cols], rows, atol=1e-6)
        np.testing.assert_allclose(zc[rows, cols], t[rows, cols], rtol=1e-6)
        np.testing.assert_array_equal(depth[info.surface == sc.SKY], 20.0)


def test_composite_depth_masks_and_colours_are_consistent() -> None:
    for s in _samples():
        mask = s.mask
        assert mask.any() and 0.005 < mask.mean() < 0.5
        assert (s.depth[mask] <= s.bg_depth[mask]).all()
        np.testing.assert_array_equal(s.depth[~mask], s.bg_depth[~mask])
        np.testing.assert_array_equal(s.depth[mask], np.minimum(s.fg_depth, s.bg_depth)[mask])
        assert np.isinf(s.fg_depth[s.fg_depth > 1000]).all()
        assert s.fg_bg.shape == (SIZE, SIZE, 3) and s.fg_bg.dtype == np.uint8


def test_object_bottom_row_depth_equals_the_ground_depth() -> None:
    for s in _samples():
        row, col = s.contact
        camera = s.background.scene.camera
        assert s.background.scene.surface[row, col] == sc.GROUND
        rows = np.nonzero(s.mask.any(axis=1))[0]
        assert rows.max() == row  # the object stands on its contact row and nothing of it is below
        ground = camera.ground_depth()[row]
        np.testing.assert_allclose(s.depth[row][s.mask[row]], ground, rtol=1e-6)
        np.testing.assert_allclose(s.bg_depth[row][s.mask[row]], ground, rtol=1e-6)


def test_object_size_is_inversely_proportional_to_depth() -> None:
    camera = sc.Camera(size=128, focal=110.0, height=1.6, pitch=0.0)
    sprite = sc.make_sprite(np.random.default_rng(0), "furniture")
    heights, depths = [], []
    for row in (100, 85, 75):
        fg = sc.render_billboard(camera, sprite, (row, 64))
        solid = fg.alpha > 0.5
        assert np.isfinite(fg.depth[solid]).all()
        assert np.ptp(fg.depth[solid]) < 1e-9  # no pitch: the billboard is fronto-parallel at z0
        np.testing.assert_allclose(fg.depth[solid][0], fg.z0)
        rows = np.nonzero(solid.any(axis=1))[0]
        heights.append(rows.max() - rows.min() + 1)
        depths.append(fg.z0)
    solid_rows = np.nonzero((sprite.alpha > 0.5).any(axis=1))[0]
    height_m = sprite.height_m * (solid_rows.max() - solid_rows.min() + 1) / sprite.alpha.shape[0]
    for h, z in zip(heights, depths, strict=True):
        assert abs(h - camera.focal * height_m / z) <= 2.0, (h, camera.focal * height_m / z)
    assert heights[0] > heights[1] > heights[2]


def test_written_files_match_the_geometry(tmp_path: Path) -> None:
    seed, per_bg, num = 8, 3, 9
    path = generate(tmp_path / "g.zip", num, image_size=SIZE, seed=seed, fg_per_bg=per_bg)
    with zipfile.ZipFile(path) as archive:
        rows = _manifest(archive)[1:]
        for i, (_, _, _, mask_name, depth_name) in enumerate(rows):
            background = make_background(seed, i // per_bg, SIZE, MAX_MM / 1000.0, math.ceil(num / per_bg))
            sample = make_sample(background, seed, i % per_bg, per_bg)
            mask = np.asarray(_image(archive, mask_name)) == 255
            depth = np.asarray(_image(archive, depth_name)).astype(np.int64)
            bg_mm = depth_to_mm(background.depth, MAX_MM).astype(np.int64)
            np.testing.assert_array_equal(mask, sample.mask)
            assert (depth[mask] <= bg_mm[mask]).all()
            np.testing.assert_array_equal(depth[~mask], bg_mm[~mask])
            row = sample.contact[0]
            ground_mm = background.scene.camera.ground_depth()[row] * 1000.0
            assert np.abs(depth[row][mask[row]] - ground_mm).max() <= 1.0
