"""The synthetic generator: zip layout, encodings, schemes, determinism (seed and workers), CLI, and the geometry
behind the depth maps (the camera priors, solids, occlusion, supports)."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mdeas.synth import default_set
from mdeas.synth import scene as sc
from mdeas.synth.generate import (
    GENERATOR_VERSION,
    Options,
    depth_to_mm,
    generate,
    make_background,
    make_foreground,
    make_sample,
    plan,
)
from mdeas.synth.lighting import Light, billboard_shadow, sample_light, visibility
from mdeas.synth.scene import render_background
from mdeas.synth.sensor import Sensor
from mdeas.synth.shapes import OPEN_KINDS, SPRITE_KINDS, Sprite, make_sprite
from mdeas.synth.solids import Solid
from mdeas.synth.textures import FAMILIES, texture
from tests.conftest import changed_far_from_mask

REPO = Path(__file__).resolve().parents[1]
SIZE, N, PER_BG, MAX_MM = 64, 20, 5, 20000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "d.zip"
    return generate(path, N, image_size=SIZE, seed=3, fg_per_bg=PER_BG, workers=1)


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
    path = generate(tmp_path / "p.zip", 7, image_size=32, seed=0, fg_per_bg=3, workers=1)
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
    assert meta["jpeg_quality"] == 75 and meta["version"] == GENERATOR_VERSION and meta["scheme"] == "random"
    assert meta["camera"] == "metric"
    assert "workers" not in meta


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


def test_seed_scheme_samples_every_object_flip_scale_and_position(tmp_path: Path) -> None:
    options = dict(scheme="seed", num_foregrounds=2, scales=[1.0, 0.4], positions=3, image_size=32, seed=1)
    path = generate(tmp_path / "s.zip", 30, workers=1, **options)
    with zipfile.ZipFile(path) as archive:
        ids = [row[0] for row in _manifest(archive)[1:]]
        meta = json.loads(archive.read("meta.json"))
    per_bg = 2 * 2 * 2 * 3
    expected = [
        f"b{b:05d}_o{o:03d}_m{m}_s{s}_p{p}"
        for b in range(2)
        for o in range(2)
        for m in (0, 1)
        for s in (0, 1)
        for p in range(3)
    ]
    assert ids == expected[:30] and len(expected) == 2 * per_bg
    assert (meta["scheme"], meta["num_foregrounds"], meta["scales"], meta["positions"]) == ("seed", 2, [1.0, 0.4], 3)
    assert meta["num_backgrounds"] == 2 and meta["flips"] is True


def test_seed_scheme_shares_each_object_across_backgrounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two backgrounds of 2 objects x 2 flips: each sample is placed with its object's sprite, the same on both
    backgrounds, and its mirrored variant is that sprite mirrored left-right."""
    opts = Options(8, image_size=SIZE, seed=2, scheme="seed", num_foregrounds=2, scales=(1.0,), positions=1)
    specs = {spec.id: spec for spec in plan(opts)}
    assert len(specs) == 2 * 4 and opts.num_backgrounds == 2  # 2 objects x 2 flips on each background
    a, b = specs["b00000_o001_m0_s0_p0"], specs["b00000_o001_m1_s0_p0"]
    assert (a.foreground, a.flip, a.scale) == (1, False, 1.0) and (b.foreground, b.flip) == (1, True)
    placed: dict[str, list[Sprite]] = {}

    def spy(rng, scene, bg_depth, sprite, *args, **kwargs):
        placed[current].append(sprite)
        return sc.place_foreground(rng, scene, bg_depth, sprite, *args, **kwargs)

    monkeypatch.setattr("mdeas.synth.generate.place_foreground", spy)
    for current, spec in specs.items():
        placed[current] = []
        bg = make_background(opts.seed, spec.bg_index, SIZE, MAX_MM / 1000.0, opts.num_backgrounds)
        assert make_sample(bg, spec, opts).mask.any(), current
    sprite = {name: sprites[0] for name, sprites in placed.items()}
    for o in range(2):
        plain, mirrored = sprite[f"b00000_o00{o}_m0_s0_p0"], sprite[f"b00000_o00{o}_m1_s0_p0"]
        assert np.array_equal(mirrored.alpha, plain.alpha[:, ::-1]) and np.array_equal(mirrored.rgb, plain.rgb[:, ::-1])
        for m in (0, 1):
            first, second = sprite[f"b00000_o00{o}_m{m}_s0_p0"], sprite[f"b00001_o00{o}_m{m}_s0_p0"]
            assert np.array_equal(first.alpha, second.alpha) and np.array_equal(first.rgb, second.rgb), (o, m)
            assert (first.kind, first.height_m, first.width_m) == (second.kind, second.height_m, second.width_m)
    one, other = sprite["b00000_o000_m0_s0_p0"].alpha, sprite["b00000_o001_m0_s0_p0"].alpha
    assert one.shape != other.shape or not np.array_equal(one, other)  # two objects, not one


# --------------------------------------------------------------------------------------------------------------
# Determinism, CLI, argument handling


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path: Path) -> None:
    a = generate(tmp_path / "a.zip", 6, image_size=32, seed=5, fg_per_bg=3, workers=1)
    b = generate(tmp_path / "b.zip", 6, image_size=32, seed=5, fg_per_bg=3, workers=1)
    c = generate(tmp_path / "c.zip", 6, image_size=32, seed=6, fg_per_bg=3, workers=1)
    assert a.read_bytes() == b.read_bytes()
    ea, eb, ec = _entries(a), _entries(b), _entries(c)
    assert list(ea) == list(eb) == list(ec)
    assert all(ea[name] == eb[name] for name in ea)
    for prefix in ("bg/", "fg_bg/", "mask/", "depth/"):
        assert all(ea[n] != ec[n] for n in ea if n.startswith(prefix))


@pytest.mark.parametrize(
    "options",
    [
        {"fg_per_bg": 2},
        {"fg_per_bg": 2, "camera": "wide"},
        {"scheme": "seed", "num_foregrounds": 2, "scales": [0.8], "positions": 2, "flips": False},
    ],
)
def test_the_zip_does_not_depend_on_the_number_of_workers(tmp_path: Path, options: dict) -> None:
    one = generate(tmp_path / "one.zip", 8, image_size=32, seed=4, workers=1, **options)
    two = generate(tmp_path / "two.zip", 8, image_size=32, seed=4, workers=2, **options)
    assert one.read_bytes() == two.read_bytes()


def test_first_samples_do_not_depend_on_the_dataset_size(tmp_path: Path) -> None:
    small = _entries(generate(tmp_path / "s.zip", 3, image_size=32, seed=2, fg_per_bg=2, workers=1))
    large = _entries(generate(tmp_path / "l.zip", 5, image_size=32, seed=2, fg_per_bg=2, workers=1))
    for name in ("fg_bg/b00000_f01.jpg", "depth/b00001_f00.png", "mask/b00001_f00.png", "bg/b00001.jpg"):
        assert small[name] == large[name]


def test_cli_writes_only_the_zip(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "mdeas.synth", "out=data/x.zip", "num_samples=4", "image_size=32", "seed=1"]
    command += ["scheme=seed", "num_foregrounds=1", "scales=[1.0,0.5]", "positions=1"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "wrote 4 samples to data/x.zip"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["data", "data/x.zip"]
    with zipfile.ZipFile(tmp_path / "data" / "x.zip") as archive:
        assert [row[0] for row in _manifest(archive)[1:]][-1] == "b00000_o000_m1_s1_p0"
        assert json.loads(archive.read("meta.json"))["scales"] == [1.0, 0.5]
    for bad, said in (("workers=abc", "generator option workers must be a whole number >= 1, got 'abc'"),
                      ("num_samples=4.7", "generator option num_samples must be a whole number >= 1, got 4.7"),
                      ("out=data/y/", "out must name a file, not a folder: data/y/"),
                      ("jpeg_quality=[30,95.9]", "generator option jpeg_quality must be a whole number or a range "
                                                   "[low, high] of them, got [30, 95.9]")):  # fmt: skip
        result = subprocess.run([*command, bad], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == f"error: {said}", result.stderr


IN_UNIT = "must be in [0, 1], got"
DEPTH_RANGE = (
    "max_depth_mm must be in [4000, 65535] (nearer, the generated rooms leave no place for their objects; 16-bit PNG)"
)
QUALITY = "jpeg_quality must be in [1, 100] or a range [low, high] in it, got"


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"num_samples": 0}, "generator option num_samples must be a whole number >= 1, got 0"),
        ({"num_samples": 10**9}, "generator option num_samples must be at most 10,000,000, got 1,000,000,000"),
        ({"image_size": 8}, "image_size must be in [16, 8192] px, got 8"),
        ({"max_depth_mm": 70000}, f"{DEPTH_RANGE}, got 70000"),
        ({"max_depth_mm": 3000}, f"{DEPTH_RANGE}, got 3000"),  # nearer than the generated rooms' nearest objects
        ({"fg_per_bg": 0}, "fg_per_bg must be >= 1, got 0"),
        ({"seed": -1}, "generator option seed must be a whole number >= 0, got -1"),
        ({"scheme": "grid"}, "scheme must be one of random, seed, got 'grid'"),
        ({"workers": 0}, "generator option workers must be a whole number >= 1, got 0"),
        ({"scales": []}, "scales must hold at least one scale, got []"),
        ({"scale_range": [0.9, 0.5]}, "scale_range must be [low, high] with low <= high, got [0.9, 0.5]"),
        ({"scale_range": [0.5]}, "scale_range must be [low, high], got [0.5]"),  # was "not enough values to unpack"
        ({"positions": 0}, "positions must be >= 1, got 0"),  # was blamed on the seed scheme, which was not chosen
        ({"num_foregrounds": 0}, "num_foregrounds must be >= 1, got 0"),
        ({"camera": "fisheye"}, "camera must be one of metric, wide, got 'fisheye'"),
        ({"jpeg_quality": [60, 40]}, f"{QUALITY} [60, 40]"),  # as written (it read (60, 40))
        ({"jpeg_quality": [0, 50]}, f"{QUALITY} [0, 50]"),
        ({"jpeg_quality": [80]}, f"{QUALITY} [80]"),
        ({"rough_edges": 1.5}, f"rough_edges {IN_UNIT} 1.5"),
        ({"camouflage": -0.1}, f"camouflage {IN_UNIT} -0.1"),
        ({"open_objects": 2.0}, f"open_objects {IN_UNIT} 2.0"),
        ({"photo_skins": 1.01}, f"photo_skins {IN_UNIT} 1.01"),
    ],
)
def test_bad_arguments_fail_and_write_nothing(tmp_path: Path, kwargs: dict, said: str) -> None:
    args = {"num_samples": 2, "image_size": 32, **kwargs}
    with pytest.raises(ValueError) as error:
        generate(tmp_path / "sub" / "bad.zip", **args)
    assert str(error.value) == said
    assert not (tmp_path / "sub").exists()


def test_the_cached_default_set_is_keyed_by_options_and_generator_code(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "synth"
    shutil.copytree(default_set.SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert default_set.source_fingerprint(copy) == default_set.source_fingerprint()
    shapes = copy / "shapes.py"
    shapes.write_text(shapes.read_text() + "\n# an edit\n")
    assert default_set.source_fingerprint(copy) != default_set.source_fingerprint()

    cache = tmp_path / "cache"
    path = default_set.GeneratedSet(num_samples=10, image_size=32, seed=0).path(cache)
    assert path.parent == cache and path.name.startswith("synth-10x32-") and path.suffix == ".zip"
    assert default_set.GeneratedSet(num_samples=10, image_size=32, seed=1).path(cache) != path
    monkeypatch.setattr(default_set, "SOURCE", copy)  # the same options with the edited generator: a new set
    assert default_set.GeneratedSet(num_samples=10, image_size=32, seed=0).path(cache) != path


def test_no_temporary_file_is_left(dataset: Path) -> None:
    assert dataset.exists() and not list(dataset.parent.glob(f".{dataset.name}.*.tmp"))


# --------------------------------------------------------------------------------------------------------------
# Textures and sprites


def test_every_texture_family_gives_colours_in_range_and_fades_when_a_pixel_is_large() -> None:
    g = np.linspace(0, 3, 40)
    u, v = (a.ravel() for a in np.meshgrid(g, g))
    for family, physical in itertools.product(FAMILIES, (False, True)):
        fine = texture(np.random.default_rng(1), u, v, np.full(u.size, 0.001), (family,), physical)
        again = texture(np.random.default_rng(1), u, v, np.full(u.size, 0.001), (family,), physical)
        coarse = texture(np.random.default_rng(1), u, v, np.full(u.size, 50.0), (family,), physical)
        assert fine.shape == (u.size, 3) and 0 <= fine.min() and fine.max() <= 1, family
        np.testing.assert_array_equal(fine, again)
        if family != "gradient":  # a gradient has no detail to lose
            assert coarse.std(0).max() < 0.6 * fine.std(0).max() + 1e-3, family


def test_every_sprite_kind_stands_on_its_last_row() -> None:
    for kind in SPRITE_KINDS:
        for i in range(5):
            sprite = make_sprite(np.random.default_rng(i), kind, rows=48)
            assert sprite.alpha.shape[0] == 48 and sprite.rgb.shape == (*sprite.alpha.shape, 3)
            assert sprite.alpha[-1].max() > 0.5, kind
            flipped = sprite.flipped()
            np.testing.assert_array_equal(flipped.alpha, sprite.alpha[:, ::-1])
            assert sprite.scaled(2.0).height_m == 2 * sprite.height_m


def test_open_sprite_kinds_have_holes_the_background_shows_through() -> None:
    """A cycle's wheels and a frame's gaps are background enclosed by the object: regions of alpha < 0.5 that do
    not reach the canvas border (a solid kind such as a vase has none)."""

    def holes(alpha: np.ndarray) -> int:
        count, labels = cv2.connectedComponents((alpha < 0.5).astype(np.uint8), connectivity=4)
        outside = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
        return len(set(range(1, count)) - outside)

    for i in range(5):
        assert holes(make_sprite(np.random.default_rng(i), "cycle").alpha) >= 2  # one or more per wheel
        assert holes(make_sprite(np.random.default_rng(i), "vase").alpha) == 0
    assert sum(holes(make_sprite(np.random.default_rng(i), "frame").alpha) >= 1 for i in range(10)) >= 5


def test_open_share_decides_whether_open_kinds_are_drawn_and_leaves_solid_draws_alone() -> None:
    solid = [make_sprite(np.random.default_rng(i), rows=24) for i in range(40)]
    assert not {s.kind for s in solid} & set(OPEN_KINDS)
    assert {make_sprite(np.random.default_rng(i), rows=24, open_share=1.0).kind for i in range(40)} == set(OPEN_KINDS)
    mixed = [make_sprite(np.random.default_rng(i), rows=24, open_share=0.5).kind in OPEN_KINDS for i in range(200)]
    assert 70 < sum(mixed) < 130
    # at share 0 the kinds are the draws the generator made before open kinds existed (its datasets stay the same)
    names = [k for k in SPRITE_KINDS if k not in OPEN_KINDS]
    weights = np.array([SPRITE_KINDS[k][3] for k in names])
    before = [names[int(np.random.default_rng(i).choice(len(names), p=weights / weights.sum()))] for i in range(40)]
    assert [s.kind for s in solid] == before


# --------------------------------------------------------------------------------------------------------------
# Geometry


def test_a_sprite_seen_small_is_area_averaged_and_keeps_its_ground_line() -> None:
    alpha = np.zeros((40, 20))
    alpha[:, 8:10] = 1.0  # a pole 2 of 20 columns wide, standing on the last row
    rgb = np.zeros((40, 20, 3))
    rgb[:, 8:10] = (1.0, 0.5, 0.0)
    small = Sprite("pole", alpha, rgb, 2.0, 1.0).resampled(10)
    assert small.alpha.shape == (10, 5) and (small.height_m, small.width_m) == (2.0, 1.0)
    np.testing.assert_allclose(small.alpha.sum(axis=1), 0.5, atol=1e-6)  # coverage kept: 2 / 20 of 5 columns
    assert small.alpha[-1].max() == pytest.approx(0.5)  # the pole's cell: half covered
    np.testing.assert_allclose(small.rgb[small.alpha > 0], np.tile([1.0, 0.5, 0.0], (10, 1)), atol=1e-6)  # no fringe


def test_solids_intersect_rays_where_hand_computation_says() -> None:
    forward = ((0.0, 0.0, 0.0), (np.array([0.0]), np.array([0.0]), np.array([1.0])))
    down = ((np.array([0.0]), np.array([5.0]), np.array([5.0])), (np.array([0.0]), np.array([-1.0]), np.array([0.0])))
    solids = [
        Solid("box", 0.0, 5.0, -1.0, 2.0, 0.5, 1.0),
        Solid("cylinder", 0.0, 5.0, -1.0, 2.0, 1.0, 1.0),
        Solid("sphere", 0.0, 5.0, -1.0, 2.0, 1.0, 1.0),
    ]
    for solid in solids:  # every solid's near side is at z = 4 on the optical axis, facing the camera
        t, normal = solid.intersect(*forward)
        np.testing.assert_allclose(t, [4.0])
        np.testing.assert_allclose(np.concatenate(normal), [0.0, 0.0, -1.0], atol=1e-12)
    for solid in solids:  # straight down from y = 5 onto the tops at y = 1
        t, normal = solid.intersect(*down)
        np.testing.assert_allclose(t, [4.0])
        np.testing.assert_allclose(np.concatenate(normal), [0.0, 1.0, 0.0], atol=1e-12)
    turned = Solid("box", 0.0, 5.0, -1.0, 2.0, 1.0, 1.0, yaw=math.pi / 4)  # a corner points at the camera
    t, normal = turned.intersect(*forward)
    np.testing.assert_allclose(t, [5.0 - math.sqrt(2.0)])
    miss, _ = solids[0].intersect((0.0, 0.0, 0.0), (np.array([1.0]), np.array([0.0]), np.array([0.0])))
    assert np.isinf(miss).all()


@pytest.mark.parametrize(
    ("prior", "heights", "fovs", "pitches"),
    [("metric", (1.3, 1.8), (55, 70), (5, 20)), ("wide", (0.3, 2.2), (45, 80), (0, 32))],
)
def test_cameras_lie_in_their_prior_s_bands(prior: str, heights: tuple, fovs: tuple, pitches: tuple) -> None:
    cameras = [sc.sample_camera(np.random.default_rng(i), SIZE, prior) for i in range(300)]
    for values, (low, high) in (
        ([c.height for c in cameras], heights),
        ([math.degrees(2 * math.atan(SIZE / 2 / c.focal)) for c in cameras], fovs),
        ([math.degrees(c.pitch) for c in cameras], pitches),
    ):
        assert low <= min(values) and max(values) <= high
        assert min(values) < low + 0.1 * (high - low) and max(values) > high - 0.1 * (high - low)  # the whole band


def test_metric_rooms_and_solids_do_not_depend_on_the_camera_height() -> None:
    low, high = sc.Camera(SIZE, 50.0, 1.3, 0.2), sc.Camera(SIZE, 50.0, 1.8, 0.2)
    count = 0
    for i in range(20):
        rooms = [sc.sample_room(np.random.default_rng(i), camera, "metric") for camera in (low, high)]
        assert rooms[0] == rooms[1]
        solids = [
            [dataclasses.replace(s, ground_y=0.0) for s in sc.sample_room_solids(rng, camera, rooms[0], 20.0, "metric")]
            for rng, camera in ((np.random.default_rng([i, 1]), low), (np.random.default_rng([i, 1]), high))
        ]
        assert solids[0] == solids[1]
        count += len(solids[0])
    assert count >= 20
    wide = [sc.sample_room(np.random.default_rng(0), camera, "wide") for camera in (low, high)]
    assert wide[0] != wide[1]  # the wide prior scales the world with the camera


def test_a_metric_object_keeps_its_size_and_stands_where_its_image_has_the_target_size() -> None:
    camera = sc.Camera(size=128, focal=110.0, height=1.6, pitch=0.0)
    scene, depth = _scene_with((), camera)
    sprite = _full_sprite(1.7, 0.7, rows=96)
    for target in (30.0, 45.0, 60.0):
        fg = sc.place_foreground(np.random.default_rng(0), scene, depth, sprite, target, resize=False)
        assert (fg.sprite.height_m, fg.sprite.width_m) == (1.7, 0.7)
        rows = np.nonzero((fg.alpha > 0.5).any(axis=1))[0]
        height_px = rows.max() - rows.min() + 1
        assert abs(height_px - camera.focal * 1.7 / fg.z0) <= 2.0  # image height = focal x height / depth
        assert abs(math.log(height_px / target)) < math.log(1.3)
    far = sc.place_foreground(np.random.default_rng(0), scene, depth, _full_sprite(0.3, 0.2), 60.0, resize=False)
    assert far.sprite.height_m == 0.3  # too small for 60 px where the ground is seen: it stands as near as it can
    assert far.z0 < 1.15 * camera.plane_depth(0.0)[-1]


@pytest.mark.parametrize("prior", sc.CAMERA_PRIORS)
def test_background_depth_is_planar_depth_of_the_nearest_surface(prior: str) -> None:
    seen, ceilings = set(), 0
    for b in range(10):
        render = sc.render_background(np.random.default_rng([4, b]), SIZE, 20.0, prior)
        depth, info = render.depth, render.scene
        assert render.clean.shape == (SIZE, SIZE, 3) and depth.shape == (SIZE, SIZE) and depth.dtype == np.float32
        cam, room = info.camera, info.room
        dx, dy, dz = (np.broadcast_to(d, depth.shape) for d in cam.ray_dirs())
        t = depth.astype(np.float64)
        unclamped = t < 20.0 - 1e-3
        ground, wall = info.surface == sc.GROUND, info.surface == sc.BACK_WALL
        ceiling = (info.surface == sc.CEILING) & unclamped
        seen |= set(np.unique(info.surface).tolist())
        assert ground.any()
        np.testing.assert_allclose(t[ground], np.minimum(-cam.height / dy[ground], 20.0), rtol=1e-6)
        np.testing.assert_allclose((t * dz)[wall & unclamped], room.wall_dist, rtol=1e-6)
        np.testing.assert_allclose((t * dy)[ceiling], room.ceiling - cam.height, rtol=1e-6)
        ceilings += bool(ceiling.any())
        for i, solid in enumerate(info.solids):
            sel = (info.solid_id == i) & unclamped
            hit, _ = solid.intersect((0.0, 0.0, 0.0), (dx[sel], dy[sel], dz[sel]))
            np.testing.assert_allclose(t[sel], hit, rtol=1e-5)
            visible_from_camera = np.isfinite(solid.intersect((0.0, 0.0, 0.0), (dx, dy, dz))[0])
            assert (visible_from_camera | ~sel).all()
        # the hit point projects back onto its own pixel centre with camera-frame z equal to the depth
        rows, cols = np.nonzero(unclamped & (info.surface != sc.SKY))
        u, v, zc = cam.project(t * dx, t * dy, t * dz)
        np.testing.assert_allclose(u[rows, cols], cols, atol=1e-6)
        np.testing.assert_allclose(v[rows, cols], rows, atol=1e-6)
        np.testing.assert_allclose(zc[rows, cols], t[rows, cols], rtol=1e-6)
        np.testing.assert_array_equal(depth[info.surface == sc.SKY], 20.0)
    assert {sc.GROUND, sc.SOLID, sc.SKY, sc.BACK_WALL} <= seen and ceilings > 0


def _samples(seed: int = 11, backgrounds: int = 8, per_bg: int = 3, size: int = SIZE):
    opts = Options(backgrounds * per_bg, image_size=size, seed=seed, fg_per_bg=per_bg)
    for spec in plan(opts):
        yield make_sample(make_background(seed, spec.bg_index, size, MAX_MM / 1000.0), spec, opts)


def test_composite_depth_masks_and_colours_are_consistent() -> None:
    coverages, with_solids = [], 0
    for s in _samples():
        mask = s.mask
        coverages.append(mask.mean())
        with_solids += len(s.background.scene.solids) > 0
        assert mask.any()
        assert (s.depth[mask] <= s.bg_depth[mask]).all()
        np.testing.assert_array_equal(s.depth[~mask], s.bg_depth[~mask])
        np.testing.assert_array_equal(s.depth[mask], np.minimum(s.fg_depth, s.bg_depth)[mask])
        assert np.isinf(s.fg_depth[s.fg_depth > 1000]).all()
        assert s.fg_bg.shape == (SIZE, SIZE, 3) and s.fg_bg.dtype == np.uint8
    assert with_solids >= 6 and 0.03 < np.median(coverages) < 0.3 and max(coverages) > 0.1


def test_pasted_samples_equal_their_background_away_from_the_object() -> None:
    seed, size = 11, 96
    pasted_opts = Options(12, image_size=size, seed=seed, fg_per_bg=3, paste_fraction=1.0)
    photo_opts = Options(12, image_size=size, seed=seed, fg_per_bg=3)
    pasted, photos = [], []
    for spec in plan(pasted_opts):
        background = make_background(seed, spec.bg_index, size, MAX_MM / 1000.0)
        pasted.append(changed_far_from_mask(make_sample(background, spec, pasted_opts)))
        photos.append(changed_far_from_mask(make_sample(background, spec, photo_opts)))
    assert max(pasted) == 0.0  # the background's own pixels and noise
    assert np.mean(photos) > 0.1  # own noise (half of them) and shadows change the rest of the image
    with pytest.raises(ValueError, match="paste_fraction must be in"):
        generate("x.zip", 1, paste_fraction=1.5)
    with pytest.raises(ValueError, match=r"^unknown generator options \['camuflage'\]; known: .*camouflage"):
        generate("x.zip", 1, camuflage=0.3)
    for scales, said in ((["big"], "'big'"), ([True], "True"), (["0.5"], "'0.5'")):  # [true] was taken for [1.0]
        with pytest.raises(ValueError, match=rf"^generator option scales\[0\] must be a finite number, got {said}$"):
            generate("x.zip", 1, scales=scales)
    with pytest.raises(ValueError, match=r"^generator option scales: expected a list of numbers, got 0\.5$"):
        generate("x.zip", 1, scales=0.5)


def test_a_paste_is_its_foreground_blended_over_the_background_under_its_camera() -> None:
    """make_sample's pure paste is make_foreground's object, over the background's scene colour by its alpha (where it
    is in front), through the background's camera with the background's noise: the object's colour F and alpha
    known at every pixel."""
    seed, size = 11, 96
    opts = Options(6, image_size=size, seed=seed, fg_per_bg=3, paste_fraction=1.0, camouflage=0.5)
    for spec in plan(opts):
        background = make_background(seed, spec.bg_index, size, MAX_MM / 1000.0)
        fg, pasted = make_foreground(background, spec, opts, np.random.default_rng(spec.key))
        alpha = np.where(sc.in_front(fg, background.depth), fg.alpha, 0.0)[..., None]
        scene = background.render.clean * (1 - alpha) + fg.rgb * alpha
        expected = background.sensor.apply(scene, np.random.default_rng(background.noise_key))
        sample = make_sample(background, spec, opts)
        assert pasted and 0 < alpha.mean() < 0.5
        np.testing.assert_array_equal(sample.fg_bg, expected)
        np.testing.assert_array_equal(sample.mask, alpha[..., 0] > 0.5)


def test_object_bottom_row_depth_equals_its_support_depth() -> None:
    for s in _samples():
        row, col = s.contact
        scene = s.background.scene
        assert np.isfinite(scene.support_base()[row, col])
        assert s.base == scene.support_base()[row, col]
        rows = np.nonzero(s.mask.any(axis=1))[0]
        assert rows.max() == row  # the object stands on its contact row and nothing of it is below
        support = scene.camera.plane_depth(s.base)[row]
        np.testing.assert_allclose(s.depth[row][s.mask[row]], support, rtol=1e-6)
        np.testing.assert_allclose(s.bg_depth[row][s.mask[row]], support, rtol=1e-6)


def _scene_with(solids: tuple[Solid, ...], camera: sc.Camera) -> tuple[sc.SceneInfo, np.ndarray]:
    room = sc.Room(wall_dist=12.0)
    depth, surface, solid_id, normal = sc.trace_scene(camera, room, solids, 20.0)
    light = sc.sample_light(np.random.default_rng(0), outdoor=False)
    return sc.SceneInfo(camera, room, solids, light, surface, solid_id, normal, 20.0, 100.0, np.ones(3)), depth


def _full_sprite(height: float, width: float, rows: int = 40) -> Sprite:
    cols = max(4, round(rows * width / height))
    return Sprite("block", np.ones((rows, cols)), np.full((rows, cols, 3), 0.5), height, width)


def test_an_object_behind_a_solid_loses_the_hidden_pixels_from_its_mask() -> None:
    camera = sc.Camera(size=64, focal=60.0, height=1.5, pitch=0.1)
    box = Solid("box", -0.4, 4.0, -1.5, 1.0, 0.5, 0.3)  # in front of and to the left of the object
    scene, depth = _scene_with((box,), camera)
    row = int(np.argmin(np.abs(camera.plane_depth(0.0) - 6.0)))  # ground 6 m away, behind the box
    fg = sc.render_billboard(camera, _full_sprite(1.8, 1.6), (row, 32))
    rgb, mask, out_depth = sc.composite(np.zeros((64, 64, 3)), depth, fg)
    solid_alpha = fg.alpha > 0.5
    hidden = solid_alpha & (scene.surface == sc.SOLID) & (depth < fg.depth)
    assert hidden.sum() > 20 and (solid_alpha & ~hidden).sum() > 20  # partly hidden, partly visible
    np.testing.assert_array_equal(mask, solid_alpha & (fg.depth <= depth * (1 + 1e-6)))
    assert not (mask & hidden).any()
    np.testing.assert_array_equal(out_depth[~mask], depth[~mask])
    assert (out_depth[mask] <= depth[mask]).all()
    np.testing.assert_allclose(out_depth[mask], fg.depth[mask])
    np.testing.assert_array_equal(rgb[hidden], 0.0)


def test_an_object_on_a_box_stands_at_the_depth_of_the_box_top() -> None:
    camera = sc.Camera(size=64, focal=60.0, height=1.6, pitch=0.35)
    box = Solid("box", 0.0, 4.0, -1.6, 0.8, 1.5, 1.0)
    scene, depth = _scene_with((box,), camera)
    base = scene.support_base()
    rows, cols = np.nonzero(base == 0.8)
    assert rows.size > 50  # the top face is seen and is a support 0.8 m up
    row, col = int(np.median(rows)), 32
    assert base[row, col] == 0.8
    fg = sc.render_billboard(camera, _full_sprite(0.6, 0.4), (row, col), base=0.8)
    _, mask, out_depth = sc.composite(np.zeros((64, 64, 3)), depth, fg)
    assert np.nonzero(mask.any(axis=1))[0].max() == row and mask[row].sum() >= 2
    top = camera.plane_depth(0.8)[row]
    np.testing.assert_allclose(out_depth[row][mask[row]], top, rtol=1e-6)
    np.testing.assert_allclose(depth[row][mask[row]], top, rtol=1e-6)
    assert top < camera.plane_depth(0.0)[row]
    np.testing.assert_array_equal(out_depth[~mask], depth[~mask])


def test_fit_scale_sizes_the_bounding_box_to_the_target() -> None:
    camera = sc.Camera(size=128, focal=100.0, height=1.2, pitch=0.3)
    for width, height in ((0.5, 1.8), (2.0, 0.6)):
        sprite = _full_sprite(height, width, rows=200)
        rows, cols = np.array([120, 110, 100]), np.array([64, 50, 70])
        k, inside = sc.fit_scale(camera, sprite, rows, cols, np.zeros(3), 60.0)
        for i in range(3):
            fg = sc.render_billboard(camera, sprite.scaled(float(k[i])), (int(rows[i]), int(cols[i])))
            r, c = np.nonzero(fg.alpha > 0.5)
            assert inside[i]
            assert abs(max(r.max() - r.min(), c.max() - c.min()) + 1 - 60) <= 2


def test_object_size_is_inversely_proportional_to_depth() -> None:
    camera = sc.Camera(size=128, focal=110.0, height=1.6, pitch=0.0)
    sprite = _full_sprite(1.1, 0.8, rows=96)
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
    for h, z in zip(heights, depths, strict=True):
        assert abs(h - camera.focal * sprite.height_m / z) <= 2.0, (h, camera.focal * sprite.height_m / z)
    assert heights[0] > heights[1] > heights[2]


def test_written_files_match_the_geometry(tmp_path: Path) -> None:
    seed, per_bg, num = 8, 3, 9
    path = generate(tmp_path / "g.zip", num, image_size=SIZE, seed=seed, fg_per_bg=per_bg, workers=1)
    opts = Options(num, image_size=SIZE, seed=seed, fg_per_bg=per_bg)
    with zipfile.ZipFile(path) as archive:
        rows = _manifest(archive)[1:]
        for spec, (_, _, _, mask_name, depth_name) in zip(plan(opts), rows, strict=True):
            background = make_background(seed, spec.bg_index, SIZE, MAX_MM / 1000.0, opts.num_backgrounds)
            sample = make_sample(background, spec, opts)
            mask = np.asarray(_image(archive, mask_name)) == 255
            depth = np.asarray(_image(archive, depth_name)).astype(np.int64)
            bg_mm = depth_to_mm(background.depth, MAX_MM).astype(np.int64)
            np.testing.assert_array_equal(mask, sample.mask)
            assert (depth[mask] <= bg_mm[mask]).all()
            np.testing.assert_array_equal(depth[~mask], bg_mm[~mask])
            row = sample.contact[0]
            support_mm = background.scene.camera.plane_depth(sample.base)[row] * 1000.0
            assert np.abs(depth[row][mask[row]] - support_mm).max() <= 1.0


def _jpeg_quality(data: bytes) -> int:
    """The quality a libjpeg-saved JPEG was written at: its luminance table against the standard one."""
    table = Image.open(io.BytesIO(data)).quantization[0]
    scale = table[0] / 16  # the standard table's first entry is 16
    return round(100 - 50 * scale) if scale < 1 else round(50 / scale)


def test_a_quality_range_saves_bg_and_each_fg_bg_at_independent_qualities(tmp_path: Path) -> None:
    out = generate(tmp_path / "q.zip", 30, image_size=32, fg_per_bg=10, jpeg_quality=[30, 90], workers=1)
    with zipfile.ZipFile(out) as archive:
        bgs = [_jpeg_quality(archive.read(n)) for n in archive.namelist() if n.startswith("bg/")]
        fg_bgs = [_jpeg_quality(archive.read(n)) for n in archive.namelist() if n.startswith("fg_bg/")]
        assert json.loads(archive.read("meta.json"))["jpeg_quality"] == [30, 90]
    assert all(28 <= q <= 92 for q in bgs + fg_bgs)  # the estimate is within 2 of the quality saved
    assert len(set(fg_bgs)) >= 10 and len(bgs) == 3 and len(set(bgs)) >= 2
    fixed = generate(tmp_path / "f.zip", 10, image_size=32, jpeg_quality=50, workers=1)
    with zipfile.ZipFile(fixed) as archive:
        assert {_jpeg_quality(archive.read(n)) for n in archive.namelist() if n.endswith(".jpg")} == {50}


def half_opaque(width: int, opaque: int) -> sc.Foreground:
    """A grey (0.5) foreground 9 px tall and `width` wide: its first `opaque` columns fully opaque at depth 2 m,
    the rest transparent and infinitely far."""
    fg = sc.Foreground(
        None, np.full((9, width, 3), 0.5), np.zeros((9, width)), np.full((9, width), np.inf), (8, 4), 0, 0
    )
    fg.alpha[:, :opaque], fg.depth[:, :opaque] = 1.0, 2.0
    return fg


def test_rough_edges_feather_the_outline_and_keep_mask_depth_and_colours_consistent() -> None:
    from mdeas.synth.rough_edges import rough_edges

    seed, size = 3, 96
    opts = Options(4, image_size=size, seed=seed, fg_per_bg=4, paste_fraction=1.0)
    rough = dataclasses.replace(opts, rough_edges=1.0)
    for spec in plan(opts):
        background = make_background(seed, spec.bg_index, size, MAX_MM / 1000.0)
        clean, edged = make_sample(background, spec, opts), make_sample(background, spec, rough)
        overlap = (clean.mask & edged.mask).sum() / (clean.mask | edged.mask).sum()
        assert 0.85 < overlap < 1.0  # the outline moved by about a pixel, the object did not
        np.testing.assert_array_equal(edged.depth[~edged.mask], edged.bg_depth[~edged.mask])
        assert (edged.depth[edged.mask] <= edged.bg_depth[edged.mask]).all()
        assert changed_far_from_mask(edged) == 0.0  # still a paste: nothing changes away from it
    # by hand: a 1-pixel-wide change in alpha becomes a ramp, the ring beyond the object gets its depth
    out = rough_edges(half_opaque(9, 5), np.random.default_rng(0))
    assert out.alpha[4, 0] > 0.95 and 0.0 < out.alpha[4, 5] < 0.5 and out.alpha[4, 8] == 0
    assert out.depth[4, 5] == 2.0 and out.depth[4, 6] == 2.0 and np.isinf(out.depth[4, 8])
    assert (0 <= out.rgb).all() and (out.rgb <= 1).all()


def test_rough_edges_rim_tints_the_outermost_opaque_pixels_and_keeps_the_inside() -> None:
    from mdeas.synth.rough_edges import rough_edges

    # this draw: a rim, no fringe, a backdrop of red 0.99
    out = rough_edges(half_opaque(12, 7), np.random.default_rng(8))
    outermost = int(np.flatnonzero(out.alpha[4] > 0.5).max())
    assert outermost == 6 and out.alpha[4, 6] < 0.9  # the feathered outline: its outermost px is part blend
    assert out.rgb[4, outermost, 0] > out.rgb[4, outermost - 1, 0] > 0.55  # tinted most at the outline
    np.testing.assert_array_equal(out.rgb[:, :4], 0.5)  # more than 2.5 px inside: untouched
    np.testing.assert_array_equal(out.rgb[:, outermost + 1 :], 0.5)  # no fringe in this draw


def test_camouflage_hides_the_object_in_the_background_s_colours_and_keeps_its_outline() -> None:
    from mdeas.synth.camouflage import camouflage

    seed, size = 3, 96
    opts = Options(6, image_size=size, seed=seed, fg_per_bg=6, paste_fraction=1.0)
    disguised = dataclasses.replace(opts, camouflage=1.0)
    inside_plain, inside_disguised = [], []
    for spec in plan(opts):
        background = make_background(seed, spec.bg_index, size, MAX_MM / 1000.0)
        plain, hidden = make_sample(background, spec, opts), make_sample(background, spec, disguised)
        np.testing.assert_array_equal(plain.mask, hidden.mask)
        np.testing.assert_array_equal(plain.depth, hidden.depth)
        assert changed_far_from_mask(hidden) == 0.0  # still a paste: nothing changes away from it
        for sample, inside in ((plain, inside_plain), (hidden, inside_disguised)):
            difference = np.abs(sample.fg_bg.astype(float) - background.rgb.astype(float)).mean(-1)
            inside.append(difference[sample.mask].mean())
    assert np.mean(inside_disguised) < 0.7 * np.mean(inside_plain)
    # by hand: a white object on a black background keeps 5-40 % of its own colour, and all of its alpha and depth
    fg = sc.Foreground(None, np.ones((8, 8, 3)), np.zeros((8, 8)), np.full((8, 8), np.inf), (7, 4), 0, 0)
    fg.alpha[2:6, 2:6], fg.depth[2:6, 2:6] = 1.0, 3.0
    out = camouflage(fg, np.zeros((8, 8, 3)), np.random.default_rng(0))
    assert ((0.05 <= out.rgb) & (out.rgb <= 0.4)).all() and np.ptp(out.rgb) == 0
    assert out.alpha is fg.alpha and out.depth is fg.depth


def test_the_sensor_vignettes_a_wide_image_by_its_own_rows_and_columns():
    """Corners darkened by (1 − v·(x² + y²)·2) with x, y the centred pixel coordinates as fractions of width, height."""
    sensor = Sensor(gain=1.0, balance=(1.0, 1.0, 1.0), gamma=1.0, vignette=0.4, blur=0.0, noise=0.0, shot=0.0, jpeg=0)
    out = sensor.apply(np.full((20, 30, 3), 0.5), np.random.default_rng(0))
    assert out.shape == (20, 30, 3)
    x, y = (0.5 / 30 - 0.5), (0.5 / 20 - 0.5)  # the top-left pixel's centre
    assert out[0, 0, 0] == round(0.5 * (1 - 0.4 * (x * x + y * y) * 2) * 255)
    assert out[10, 15, 0] == round(0.5 * (1 - 0.4 * ((0.5 / 30) ** 2 + (0.5 / 20) ** 2) * 2) * 255)


def test_a_background_is_rendered_once_for_the_samples_that_share_it(tmp_path, monkeypatch):
    """make_background is cached per process: the seed scheme asks for it once per (background, object), and
    renders it once for all of them."""
    first = make_background(0, 3, 32, 20.0)
    assert make_background(0, 3, 32, 20.0) is first and make_background(0, 4, 32, 20.0) is not first
    rendered = []

    def counted(rng, *args):
        rendered.append(args)
        return render_background(rng, *args)

    make_background.cache_clear()
    monkeypatch.setattr("mdeas.synth.generate.render_background", counted)
    options = {"scheme": "seed", "num_foregrounds": 2, "scales": [1.0], "positions": 1, "image_size": 32}
    generate(tmp_path / "seed.zip", 8, workers=1, **options)  # 2 objects × 2 flips: 4 samples on each of 2 backgrounds
    make_background.cache_clear()  # other tests must not get the counted renders
    assert len(rendered) == 2


def _light(*directions: tuple[float, float, float]) -> Light:
    return Light(np.array(directions, float), sun=np.ones(3), ambient=np.full(3, 0.3))


def test_lambert_is_the_cosine_towards_the_source_with_wrap():
    light = _light((0, 1, 0), (0, 1, 0))
    normals = (np.array([0.0, 1.0, 0.0, 0.6]), np.array([1.0, 0.0, -1.0, 0.8]), np.zeros(4))  # x, y, z
    assert light.lambert(normals).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.8])  # up, sideways, down, 37° off
    assert light.lambert(normals, wrap=1.0).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.9])  # (cos + 1) / 2


def test_shadow_rays_count_the_directions_a_solid_blocks():
    box = Solid("box", x=0.0, z=5.0, ground_y=-1.0, height=2.0, rx=0.5, rz=1.0)  # x ±0.5, y −1..1, z 4..6
    light = _light((0, 0, 1), (0, 1, 0))  # towards the box, and straight up
    points, normal = (np.zeros(2), np.zeros(2), np.array([0.0, 7.0])), (np.zeros(2), np.zeros(2), np.ones(2))
    assert visibility(points, normal, light, [box]).tolist() == [0.5, 1.0]  # in front of the box; behind it
    assert visibility(points, normal, light, []).tolist() == [1.0, 1.0]


def test_a_billboard_hides_the_source_from_points_behind_it_only():
    light = _light((0, 0.6, 0.8), (1, 0, 0))  # the second ray runs parallel to the plane: never hidden
    points = (np.zeros(2), np.zeros(2), np.array([5.0, 7.0]))  # before and beyond the plane z = 6
    opaque = billboard_shadow(points, light, 6.0, lambda x, y: np.ones_like(x))
    assert opaque.tolist() == [0.5, 0.0]
    half = billboard_shadow(points, light, 6.0, lambda x, y: np.where(y > 1.0, 1.0, 0.5))  # the ray meets y = 0.75
    assert half.tolist() == [0.25, 0.0]


def test_sampled_lights_are_unit_directions_above_the_horizon():
    for seed, outdoor in itertools.product(range(20), (False, True)):
        light = sample_light(np.random.default_rng(seed), outdoor)
        assert light.directions.shape == (6, 3)
        assert np.allclose(np.linalg.norm(light.directions, axis=1), 1.0) and (light.directions[:, 1] > 0).all()
        assert (light.ambient >= 0).all() and (light.sun > 0).all()


def test_the_seed_scheme_lists_only_the_samples_kept() -> None:
    """positions=10**8 built every background's full list before cutting it to num_samples (killed for memory);
    here a million positions must cost no more than a few samples (the full list would take over 100 MB)."""
    tracemalloc.start()
    try:
        specs = plan(Options(3, scheme="seed", positions=10**6, num_foregrounds=2, flips=True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [s.id for s in specs] == ["b00000_o000_m0_s0_p0", "b00000_o000_m0_s0_p1", "b00000_o000_m0_s0_p2"]
    assert peak < 1_000_000, f"{peak} bytes"
