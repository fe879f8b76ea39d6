"""The compose tool: pairing of inputs, the seeds' sampling, masks, depth (declared or not), determinism, CLI."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from mdeas.synth.compose import compose, composite_depth, find_sources, load_depth, mask_opacity

compose_module = importlib.import_module("mdeas.synth.compose")  # the module, not its `compose` function

REPO = Path(__file__).resolve().parents[1]
SIZE = 48
OPTIONS = {"image_size": SIZE, "scales": [1.0, 0.5], "positions": 2, "seed": 3}
RED, BLUE = (250, 10, 10), (10, 10, 250)


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _cutout(h: int, w: int, margin: int = 5) -> np.ndarray:
    """RGBA [h + 2 margin, w + 2 margin]: an opaque block, red on the left half and blue on the right, in a
    transparent frame (whose colour is green, which must never show)."""
    rgba = np.zeros((h + 2 * margin, w + 2 * margin, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[margin : margin + h, margin : margin + w] = (*RED, 255)
    rgba[margin : margin + h, margin + w // 2 : margin + w] = (*BLUE, 255)
    return rgba


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    bg_dir, fg_dir = tmp_path / "bg", tmp_path / "fg"
    _save(bg_dir / "room.jpg", np.full((60, 80, 3), 120, np.uint8))
    _save(bg_dir / "street.png", rng.integers(90, 160, (100, 50, 3), dtype=np.uint8))
    _save(fg_dir / "block.png", _cutout(40, 20))
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[:] = RED
    rgb[:, 15:] = BLUE
    _save(fg_dir / "photo.jpg", rgb, quality=95)
    mask = np.zeros((30, 30), np.uint8)
    mask[5:25, 8:22] = 255
    _save(fg_dir / "photo_mask.png", mask)
    return {"bg_dir": bg_dir, "fg_dir": fg_dir}


def _rows(archive: zipfile.ZipFile) -> list[list[str]]:
    return list(csv.reader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))


def _array(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(archive.read(name))))


def test_every_background_gets_every_object_flip_scale_and_position(tmp_path: Path, inputs: dict) -> None:
    path = compose(tmp_path / "c.zip", workers=1, **inputs, **OPTIONS)
    with zipfile.ZipFile(path) as archive:
        rows = _rows(archive)
        meta = json.loads(archive.read("meta.json"))
        names = set(archive.namelist())
    expected = [
        f"b{b:05d}_o{o:03d}_m{m}_s{s}_p{p}"
        for b in range(2)
        for o in range(2)
        for m in (0, 1)
        for s in (0, 1)
        for p in (0, 1)
    ]
    assert rows[0] == ["id", "bg", "fg_bg", "mask", "depth"] and [r[0] for r in rows[1:]] == expected
    assert all(r[4] == "" for r in rows[1:])  # no depth declared
    assert not any(n.startswith("depth/") for n in names)
    assert {r[1] for r in rows[1:]} == {"bg/b00000.jpg", "bg/b00001.jpg"} <= names
    assert meta["depth"] is None and meta["num_samples"] == 32 and meta["scales"] == [1.0, 0.5]
    assert meta["backgrounds"] == ["room.jpg", "street.png"] and meta["foregrounds"] == ["block.png", "photo.jpg"]
    index = load_index(str(path))
    assert len(index.samples) == 32 and all(s.depth is None for s in index.samples)


def test_masks_have_the_seeds_size_and_the_object_shows_inside_only(tmp_path: Path, inputs: dict) -> None:
    path = compose(tmp_path / "c.zip", workers=1, jpeg_quality=95, **inputs, **OPTIONS)
    checked = 0
    with zipfile.ZipFile(path) as archive:
        for sample_id, bg_name, fg_bg_name, mask_name, _ in _rows(archive)[1:]:
            if "_o000_" not in sample_id:  # the RGBA block: 40 x 20 px, opaque
                continue
            checked += 1
            mask = _array(archive, mask_name)
            assert set(np.unique(mask)) == {0, 255}
            rows, cols = np.nonzero(mask)
            scale = 1.0 if "_s0_" in sample_id else 0.5
            side = round(150 / 224 * SIZE * scale)  # 32 or 16 px
            assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (side, side // 2)
            assert mask.sum() // 255 == side * (side // 2)  # a full rectangle
            fg_bg, bg = _array(archive, fg_bg_name).astype(int), _array(archive, bg_name).astype(int)
            inside = mask == 255
            assert np.abs(fg_bg - bg)[~inside].mean() < 4  # JPEG noise only
            left = inside & (np.arange(SIZE)[None, :] < cols.min() + side // 4)
            right = inside & (np.arange(SIZE)[None, :] > cols.max() - side // 4)
            sign = -1 if "_m1_" in sample_id else 1  # red left, blue right, unless mirrored
            assert sign * (fg_bg[left][:, 0] - fg_bg[left][:, 2]).mean() > 80
            assert sign * (fg_bg[right][:, 2] - fg_bg[right][:, 0]).mean() > 80
            assert fg_bg[inside][:, 1].mean() < 40  # the transparent green frame never shows
    assert checked == 16


def test_a_jpeg_with_a_mask_file_or_a_mask_folder_is_an_object(tmp_path: Path, inputs: dict) -> None:
    sources = find_sources(**inputs)
    assert [p.name for p in sources.foregrounds] == ["block.png", "photo.jpg"]
    assert sources.masks == (None, inputs["fg_dir"] / "photo_mask.png") and sources.depths is None
    mask_dir = tmp_path / "masks"
    _save(mask_dir / "block.png", np.full((50, 30), 255, np.uint8))
    with pytest.raises(DataError, match=r"masks: photo.png: missing mask of foreground photo.jpg"):
        find_sources(**inputs, mask_dir=mask_dir)
    _save(mask_dir / "photo.png", np.full((30, 30), 255, np.uint8))
    assert find_sources(**inputs, mask_dir=mask_dir).masks == (mask_dir / "block.png", mask_dir / "photo.png")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d["fg_dir"] / "photo_mask.png").unlink(), r"photo.jpg: no alpha channel and no mask"),
        (
            lambda d: _save(d["fg_dir"] / "photo_mask.png", np.zeros((30, 30), np.uint8)),
            r"fg/photo_mask\.png: the object's opacity is 0 everywhere$",
        ),
        (
            lambda d: _save(d["fg_dir"] / "photo_mask.png", np.ones((9, 30), np.uint8)),
            r"photo_mask.png: size 30x9 differs from its foreground photo.jpg \(30x30\)",
        ),
        (lambda d: (d["bg_dir"] / "room.jpg").write_bytes(b"not an image"), r"room.jpg: cannot decode image"),
        (
            lambda d: _save(d["bg_dir"] / "deep.png", np.full((20, 20), 40000, np.uint16)),
            r"deep.png: expected an 8-bit image \(colour or grey\), got mode I;16",
        ),  # read as RGB it would turn white
    ],
)
def test_bad_inputs_fail_with_the_file_named_and_write_nothing(tmp_path: Path, inputs: dict, change, message) -> None:
    """A bad input stops compose with an error naming its file, and the output folder holds nothing: no zip and no
    temporary file of the interrupted write."""
    change(inputs)
    with pytest.raises(DataError, match=message):
        compose(tmp_path / "out" / "c.zip", workers=1, **inputs, **OPTIONS)
    out = tmp_path / "out"
    assert not out.exists() or not list(out.iterdir())  # neither the zip nor a temporary file beside it


def test_a_file_above_the_size_limit_is_refused_before_reading(tmp_path: Path, inputs: dict, monkeypatch) -> None:
    monkeypatch.setenv("MDEAS_MAX_ENTRY_MB", "0.0001")  # 105 bytes
    read_bytes = Path.read_bytes
    monkeypatch.setattr(  # not one input file is read
        Path, "read_bytes", lambda path: pytest.fail(f"read {path}") if tmp_path in path.parents else read_bytes(path)
    )
    with pytest.raises(DataError, match=r"\.(jpg|png): refused: [\d.]+ MiB, above the 0.0001 MiB limit"):
        compose(tmp_path / "out" / "c.zip", workers=1, **inputs, **OPTIONS)


def test_an_unknown_option_is_named_with_the_known_ones(tmp_path: Path, inputs: dict) -> None:
    with pytest.raises(ValueError, match=r"^fg_max_side must be > 0 \(px at 224\), got -5"):
        compose(tmp_path / "c.zip", workers=1, fg_max_side=-5, **inputs)
    with pytest.raises(ValueError, match=r"^fg_max_side=300 \(px at 224\) at scale 1 is larger than the image"):
        compose(tmp_path / "c.zip", workers=1, fg_max_side=300, **inputs)  # the scales are fine
    with pytest.raises(ValueError, match=r"^scales must be > 0, got \[1.0, 0.0\]"):
        compose(tmp_path / "c.zip", workers=1, scales=[1.0, 0.0], **inputs)
    with pytest.raises(  # refused before its list of samples is made (10**9 of them would exhaust the memory)
        ValueError,
        match=r"^compose would write 16,000,000,000 samples \(2 backgrounds x 2 objects x 2 flips x 2 scales x "
        r"1,000,000,000 positions\), above 10,000,000: lower positions or scales$",
    ):
        compose(tmp_path / "c.zip", workers=1, **inputs, **{**OPTIONS, "positions": 10**9})
    with pytest.raises(ValueError, match=r"^unknown compose options \['scale'\]; known: image_size, seed, .*scales"):
        compose(tmp_path / "c.zip", workers=1, scale=[1.0], **inputs)


def test_an_image_above_the_pixel_limit_is_refused_before_decoding(tmp_path: Path, inputs: dict, monkeypatch) -> None:
    monkeypatch.setenv("MDEAS_MAX_MEGAPIXELS", "0.0001")  # 100 pixels
    monkeypatch.setattr("mdeas.synth.compose.to_pillow", lambda *args: pytest.fail("an image was decoded"))
    with pytest.raises(DataError, match=r"\.(jpg|png): refused: declares \d+x\d+ pixels, above the 0.0001-megapixel"):
        compose(tmp_path / "out" / "c.zip", workers=1, **inputs, **OPTIONS)


def test_depth_maps_give_the_object_the_depth_of_its_contact_row(tmp_path: Path, inputs: dict) -> None:
    depth_dir = tmp_path / "depth"
    for name, (h, w) in (("room", (60, 80)), ("street", (100, 50))):
        rows = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
        _save(depth_dir / f"{name}.png", np.rint(12000 - rows * 8000 / h).astype(np.uint16))  # nearer below
    path = compose(tmp_path / "d.zip", workers=1, depth_dir=depth_dir, max_depth_mm=15000, **inputs, **OPTIONS)
    images = (inputs["bg_dir"] / "room.jpg", inputs["bg_dir"] / "street.png")
    backgrounds = [load_depth(depth_dir / f"{p.stem}.png", SIZE, "resize", p) for p in images]
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("meta.json"))
        assert meta["depth"] == {"format": "png16", "unit": "mm", "max": 15000}
        for sample_id, _, _, mask_name, depth_name in _rows(archive)[1:]:
            assert depth_name == f"depth/{sample_id}.png"
            mask = _array(archive, mask_name) == 255
            depth = _array(archive, depth_name)
            bg = backgrounds[int(sample_id[1:6])]
            np.testing.assert_array_equal(depth[~mask], bg[~mask])
            bottom = np.nonzero(mask.any(axis=1))[0].max()
            contact = np.median(bg[bottom][mask[bottom]])  # the bg depth on the object's lowest row...
            assert (depth[mask] == np.uint16(contact)).all()  # ...is the whole object's (it is the nearest)
            assert (depth[mask] < bg[mask]).sum() > 0.5 * mask.sum()
    assert backgrounds[0][0, 0] == 12000 and backgrounds[0][-1, 0] < 4200  # nearer at the bottom


def test_depth_beyond_the_declared_max_is_refused_naming_the_file(tmp_path: Path, inputs: dict, monkeypatch) -> None:
    depth_dir = tmp_path / "depth"
    _save(depth_dir / "room.png", np.full((60, 80), 9000, np.uint16))
    _save(depth_dir / "street.png", np.full((100, 50), 30000, np.uint16))  # 30 m: the zip would say 15 m
    with monkeypatch.context() as patched:  # the last background's depth is read before any sample is rendered
        patched.setattr(compose_module, "_render", lambda unit: pytest.fail(f"rendered background {unit.bg}"))
        with pytest.raises(DataError, match=r"street.png: depth up to 30000 mm, beyond max_depth_mm=15000"):
            compose(tmp_path / "d.zip", workers=1, depth_dir=depth_dir, max_depth_mm=15000, **inputs, **OPTIONS)
    assert not (tmp_path / "d.zip").exists()
    far_top = np.full((100, 50), 9000, np.uint16)
    far_top[:10] = 30000  # rows that bg_fit=crop cuts away (the centre 50 x 50 is kept) and resizing keeps
    _save(depth_dir / "street.png", far_top)
    compose(tmp_path / "d.zip", workers=1, depth_dir=depth_dir, max_depth_mm=15000, bg_fit="crop", **inputs, **OPTIONS)
    with pytest.raises(DataError, match=r"street.png: depth up to 30000 mm"):
        compose(tmp_path / "e.zip", workers=1, depth_dir=depth_dir, max_depth_mm=15000, **inputs, **OPTIONS)


def test_a_depth_map_of_another_size_than_its_background_is_refused(tmp_path: Path, inputs: dict) -> None:
    depth_dir = tmp_path / "depth"
    _save(depth_dir / "room.png", np.full((60, 80), 9000, np.uint16))
    _save(depth_dir / "street.png", np.full((50, 100), 9000, np.uint16))  # turned on its side
    with pytest.raises(DataError, match=r"street.png: size 100x50 differs from its background street.png \(50x100\)"):
        compose(tmp_path / "d.zip", workers=1, depth_dir=depth_dir, **inputs, **OPTIONS)
    assert not (tmp_path / "d.zip").exists()


def test_composite_depth_by_hand() -> None:
    bg = np.array([[9000, 9000, 9000], [5000, 0, 7000], [4000, 3000, 0]], np.uint16)
    mask = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], bool)
    # lowest mask row 2: known bg depths 3000 (the 0 is unknown) -> object at 3000, capped by nearer bg
    expected = np.array([[3000, 3000, 9000], [3000, 3000, 7000], [4000, 3000, 3000]], np.uint16)
    np.testing.assert_array_equal(composite_depth(bg, mask), expected)
    halfway = np.array([[0, 0], [2999, 3000]], np.uint16)  # median 2999.5 mm: rounded to 3000, not cut to 2999
    np.testing.assert_array_equal(composite_depth(halfway, np.array([[0, 0], [1, 1]], bool))[1], [2999, 3000])
    unknown = np.array([[0, 0], [0, 0]], np.uint16)
    np.testing.assert_array_equal(composite_depth(unknown, np.ones((2, 2), bool)), unknown)


def test_same_seed_same_bytes_for_any_number_of_workers(tmp_path: Path, inputs: dict) -> None:
    a = compose(tmp_path / "a.zip", workers=1, **inputs, **OPTIONS)
    b = compose(tmp_path / "b.zip", workers=2, **inputs, **OPTIONS)
    c = compose(tmp_path / "c.zip", workers=1, **inputs, **{**OPTIONS, "seed": 4})
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_cli_writes_only_the_zip_and_reports_bad_input_on_one_line(tmp_path: Path, inputs: dict) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    base = [sys.executable, "-m", "mdeas.synth.compose", f"bg_dir={inputs['bg_dir']}", "image_size=32", "positions=1"]
    work = tmp_path / "work"
    work.mkdir()
    ok = subprocess.run(
        [*base, f"fg_dir={inputs['fg_dir']}", "out=out/c.zip", "scales=[0.5]", "flips=false"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "wrote 4 samples to out/c.zip"
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == ["out", "out/c.zip"]
    bad = subprocess.run(
        [*base, f"fg_dir={tmp_path / 'nowhere'}", "out=out/d.zip"], cwd=work, env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert bad.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"
    for value, said in (("workers=1.7", "workers must be a whole number >= 1, got 1.7"),
                        ("jpeg_quality=true", "compose option jpeg_quality must be a whole number or a range [low, "
                                              "high] of them, got True")):  # fmt: skip
        bad = subprocess.run([*base, f"fg_dir={inputs['fg_dir']}", "out=out/e.zip", value], cwd=work, env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == f"error: {said}", bad.stderr


@pytest.mark.slow
def test_the_real_check_set_builds_from_the_installed_photos(tmp_path: Path) -> None:
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image (the real extra) is not installed")
    from experiments.real_check_set import build

    a = build(tmp_path / "a.zip", image_size=64, workers=1)
    b = build(tmp_path / "b.zip", image_size=64, workers=2)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as archive:
        meta = json.loads(archive.read("meta.json"))
        masks = [_array(archive, row[3]) for row in _rows(archive)[1:]]
    assert meta["depth"] is None and meta["num_samples"] == 10 * 8 * 2 * 4 and meta["jpeg_quality"] == 50
    assert meta["foregrounds"] == [f"coin_{i}.png" for i in range(4)] + [
        "horse.png",
        "logo.png",
        "motorcycle.png",
        "retina.png",
    ]
    coverage = np.array([(m == 255).mean() for m in masks])
    assert 0.01 < coverage.min() and coverage.max() < 0.6


@pytest.mark.slow
def test_the_real_check_set_takes_a_range_of_jpeg_qualities(tmp_path: Path) -> None:
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image (the real extra) is not installed")
    from experiments.real_check_set import main

    main(["--out", str(tmp_path / "q.zip"), "--image-size", "32", "--jpeg-quality", "30", "95", "--workers", "1"])
    with zipfile.ZipFile(tmp_path / "q.zip") as archive:
        meta = json.loads(archive.read("meta.json"))
        rows = _rows(archive)[1:]
        tables = {  # a JPEG's luminance quantisation table is set by its quality
            kind: {tuple(Image.open(io.BytesIO(archive.read(row[column]))).quantization[0]) for row in rows}
            for kind, column in (("bg", 1), ("fg_bg", 2))
        }
    assert meta["jpeg_quality"] == [30, 95]
    assert len(tables["bg"]) > 5 and len(tables["fg_bg"]) > 30  # 10 backgrounds, 640 composites: each its own


@pytest.mark.parametrize(
    ("qualities", "message"),
    [
        (["1", "2", "3"], "--jpeg-quality takes one quality or LOW HIGH, got 3 values"),
        (["60", "40"], "jpeg_quality must be in [1, 100] or a range [low, high] in it, got [60, 40]"),
    ],
)
def test_the_real_check_set_refuses_a_bad_jpeg_quality_in_one_line(
    qualities: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from experiments.real_check_set import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "q.zip"), "--jpeg-quality", *qualities])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(f": error: {message}")  # after the program name, which argparse takes from argv
    assert not (tmp_path / "q.zip").exists()


def test_a_mask_file_reads_as_the_dataset_readers_read_masks() -> None:
    """Grey as stored; 0/1 scaled to 0/1.0; a red or palette-coloured mask by its brightest channel; a white mask
    whose shape is in its alpha channel by that alpha."""
    shape = np.zeros((4, 6), np.uint8)
    shape[1:3, 2:5] = 1
    expected = shape.astype(np.float64)
    soft = (shape * 200).astype(np.uint8)
    np.testing.assert_array_equal(mask_opacity(Image.fromarray(soft)), soft / 255.0)
    np.testing.assert_array_equal(mask_opacity(Image.fromarray(shape)), expected)
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = shape * 255
    np.testing.assert_array_equal(mask_opacity(Image.fromarray(red)), expected)
    palette = Image.fromarray(shape, "P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC's first class colour on black
    np.testing.assert_array_equal(mask_opacity(palette), expected)
    white = np.dstack([np.full((4, 6, 3), 255, np.uint8), shape * 255])
    np.testing.assert_array_equal(mask_opacity(Image.fromarray(white, "RGBA")), expected)


def test_objects_whose_mask_would_be_empty_and_files_sharing_a_stem_are_refused(tmp_path: Path, inputs: dict) -> None:
    faint = np.zeros((30, 30, 4), np.uint8)
    faint[..., 3] = 100  # opacity 0.39 everywhere: pasted, never in the mask
    _save(inputs["fg_dir"] / "block.png", faint)
    with pytest.raises(
        DataError, match=r"block.png: the object's opacity is at most 0.5 everywhere: its mask is empty"
    ):
        compose(tmp_path / "c.zip", workers=1, **inputs, **OPTIONS)
    _save(inputs["fg_dir"] / "block.jpg", np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(DataError, match=r"fg: block.png: same name as block.jpg: give each file a name of its own"):
        find_sources(**inputs)
    (inputs["fg_dir"] / "block.jpg").unlink()
    with pytest.raises(ValueError, match=r"^out must name a file, not a folder: .*/z/$"):
        compose(f"{tmp_path / 'z'}/", workers=1, **inputs, **OPTIONS)  # it would be written as a file named z
    (inputs["bg_dir"] / "._room.jpg").write_bytes(b"\x00\x05\x16\x07")  # what macOS leaves on other disks
    assert "._room.jpg" not in [p.name for p in find_sources(**inputs).backgrounds]
    for name in ("block.png", "photo.jpg"):
        (inputs["fg_dir"] / name).unlink()
    with pytest.raises(DataError, match=r"fg: no images other than masks \(\*_mask\.\*\)"):
        find_sources(**inputs)
