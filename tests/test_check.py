import io
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdeas.cli import exit_on_data_error
from mdeas.data.check import check, report
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.dataset import load_sample
from mdeas.data.decode import binarise, decode_rgb
from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from mdeas.data.sampler import EpochSampler
from mdeas.data.stats import dataset_stats, format_stats, write_norm
from mdeas.native_eval import full_size_samples
from tests.conftest import encode, without_depth, write_canonical_zip
from tests.layouts_fixtures import encode as encode_jpeg
from tests.layouts_fixtures import grey_depth, make_samples, replace_entry, write_seed002

ROOT = Path(__file__).resolve().parents[1]

TRUNCATED = "fg_bg/b001_f02.jpg"
MISSING = "depth/b002_f04.png"
RESIZED = "mask/b003_f06.png"
GREY = "mask/b004_f08.png"
FAINT = "mask/b005_f10.png"
DIM = "mask/b000_f00.png"
FAINT_RIM = "mask/b001_f02.png"


def _damaged(tmp_path: Path, *defects: str) -> Path:
    """The 12-sample canonical zip with the named entries truncated, removed, resized, made grey, stored as 0/1,
    dimmed to 100 or to 100 with a rim at 50."""
    src = write_canonical_zip(tmp_path / "clean.zip")
    out = tmp_path / "bad.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data, name = zin.read(info), info.filename
            if name not in defects:
                zout.writestr(info, data)
            elif name == TRUNCATED:
                zout.writestr(info, data[: len(data) // 3])
            elif name == RESIZED:
                zout.writestr(info, encode(np.zeros((16, 16), np.uint8), "PNG"))
            elif name == GREY:
                zout.writestr(info, encode(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1)), "PNG"))
            elif name == FAINT:
                zout.writestr(info, encode(np.asarray(Image.open(io.BytesIO(data))) // 255, "PNG"))
            elif name == DIM:
                zout.writestr(
                    info, encode((np.asarray(Image.open(io.BytesIO(data))) >= 128).astype(np.uint8) * 100, "PNG")
                )
            elif name == FAINT_RIM:
                inside = np.asarray(Image.open(io.BytesIO(data))) >= 128
                rim = inside & ~np.roll(inside, 1, axis=1)
                zout.writestr(info, encode((inside * 100 - rim * 50).astype(np.uint8), "PNG"))
    return out


def _check_cli(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mdeas.data.check", f"path={path}", "num_workers=0"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_cli_names_every_bad_entry_and_fails(tmp_path):
    bad = _damaged(tmp_path, TRUNCATED, MISSING, RESIZED, GREY)
    done = _check_cli(bad, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert out[0] == f"{bad}: layout canonical, 11 samples with all their entries"
    assert out[1] == "4 problems:"
    assert f"    {bad}: {MISSING}: listed for sample b002_f04 but missing (manifest.csv line 6)" in out
    assert any(line.startswith(f"    {bad}: {TRUNCATED}: cannot decode image") for line in out)
    assert f"    {bad}: {RESIZED}: size 16x16 differs from fg_bg/b003_f06.jpg (32x32)" in out
    grey = f"    {bad}: {GREY}: not a binary mask: 75% of its pixels are mid-grey (at most 10% expected)"
    assert grey in out
    assert {"  missing: 1", "  decode: 1", "  size: 1", "  mask: 1"} <= set(out)
    assert done.stderr.strip().splitlines()[-1] == f"error: 4 problems in {bad}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "clean.zip"]  # no logs, no outputs/


def test_check_cli_passes_a_clean_dataset_and_reports_unreadable_zips(tmp_path):
    clean = write_canonical_zip(tmp_path / "clean.zip")
    done = _check_cli(clean, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"{clean}: layout canonical, 12 samples with all their entries", "no problems"]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match=f"^error: {re.escape(str(tmp_path / 'junk.zip'))}: not a readable zip"):
        with exit_on_data_error():
            check(str(tmp_path / "junk.zip"))


def test_check_lists_the_first_problems_of_each_kind(tmp_path):
    src = write_canonical_zip(tmp_path / "clean.zip")
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(cut, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[:50] if info.filename.startswith("fg_bg/") else data)
    text = report(check(str(cut)), listed=2)
    lines = text.splitlines()
    assert lines[1:3] == ["12 problems:", "  decode: 12"]
    assert lines[3].startswith(f"    {cut}: fg_bg/b000_f00.jpg: cannot decode image")
    assert lines[-1] == "    ... and 10 more" and len(lines) == 6


def test_a_broken_background_shared_by_several_samples_is_one_problem(tmp_path):
    src = write_canonical_zip(tmp_path / "clean.zip", fg_per_bg=3)
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(cut, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[:50] if info.filename == "bg/b001.jpg" else data)
    lines = report(check(str(cut))).splitlines()
    assert lines[1:3] == ["1 problems:", "  decode: 1"] and "bg/b001.jpg: cannot decode image" in lines[3]


@pytest.mark.parametrize("entry", [FAINT, DIM, FAINT_RIM])
def test_a_mask_stored_under_255_reads_scaled_to_its_brightest_value(tmp_path, entry):
    """A mask stored as 0/1 (a boolean array saved as it is), 0/100, or 100 with a rim at 50: scaled to its brightest
    value, the object reads as the 0/255 mask it came from (it read as all background, an empty truth that scored
    IoU 1), the rim at half range as foreground; check finds nothing to flag."""
    damaged = _damaged(tmp_path, entry)
    assert check(str(damaged)).problems == []
    clean, read = (load_index(str(path)) for path in (tmp_path / "clean.zip", damaged))
    sample = next(i for i, s in enumerate(read.samples) if s.mask == entry)
    original = load_sample(clean, clean.samples[sample])["mask"]
    assert 0 < (original == 255).sum() < original.size and set(np.unique(original)) == {0, 255}
    assert np.array_equal(binarise(load_sample(read, read.samples[sample])["mask"]), binarise(original))


def test_check_flags_an_eight_bit_depth_map_in_colour_not_grey_in_three_channels(tmp_path):
    """A colour-mapped depth map reads as its luminance, which is not depth; grey saved as RGB JPEG is fine."""
    records = make_samples()
    written = write_seed002(tmp_path / "seed.zip", records)
    depth = records[0].depth
    coloured = np.stack([255 * depth, np.full_like(depth, 128), 255 * (1 - depth)], axis=-1).astype(np.uint8)
    grey = np.repeat(grey_depth(records[1].depth)[..., None], 3, axis=-1)
    names = [name.replace("/overlay/", "/depth/") for name in written]
    replace_entry(tmp_path / "seed.zip", tmp_path / "one.zip", names[0], encode_jpeg(coloured))
    replace_entry(tmp_path / "one.zip", tmp_path / "two.zip", names[1], encode_jpeg(grey))
    problems = check(str(tmp_path / "two.zip")).problems
    assert [(p.entry, p.category) for p in problems] == [(names[0], "depth")], problems
    assert re.fullmatch(r"a depth map in colour \(channels \d+ apart on average\): read as its grey; store it as grey",
                        problems[0].problem)  # fmt: skip
    assert Image.open(io.BytesIO(zipfile.ZipFile(tmp_path / "two.zip").read(names[1]))).mode == "RGB"


@pytest.mark.parametrize(
    ("defect", "message", "num_workers"),
    [
        (TRUNCATED, f"{TRUNCATED}: cannot decode image", 2),  # raised in a worker, re-raised by PyTorch
        (RESIZED, f"{RESIZED}: size 16x16 differs from fg_bg/b003_f06.jpg (32x32)", 0),
    ],
)
def test_training_stops_with_one_line_naming_the_entry(tmp_path, defect, message, num_workers):
    bad = _damaged(tmp_path, defect)
    dm = MaskDepthDataModule(
        path=str(bad), image_size=16, batch_size=12, num_workers=num_workers, split=(1.0, 0.0, 0.0)
    )
    dm.setup()
    with pytest.raises(DataError) as caught:
        next(iter(dm._loader("train")))
    assert str(caught.value).startswith(f"{bad}: {message}") and "\n" not in str(caught.value)
    with pytest.raises(SystemExit, match=f"^error: {re.escape(str(bad))}: {re.escape(message)}"), exit_on_data_error():
        raise caught.value


def test_training_with_a_missing_partner_stops_at_setup(tmp_path):
    bad = _damaged(tmp_path, MISSING)
    dm = MaskDepthDataModule(path=str(bad), image_size=16, num_workers=0)
    with pytest.raises(DataError, match=f"^{bad}: {MISSING}: listed for sample b002_f04 but missing"):
        dm.setup()


def test_skip_leaves_bad_samples_out_and_counts_them(tmp_path, caplog):
    bad = _damaged(tmp_path, TRUNCATED, MISSING, RESIZED)
    dm = MaskDepthDataModule(
        path=str(bad), image_size=16, batch_size=4, num_workers=2, split=(1.0, 0.0, 0.0), on_error="skip"
    )
    with caplog.at_level(logging.WARNING):
        dm.setup()
        loader = dm._loader("train")
        ids = [i for batch in loader for i in batch["id"]]
    assert len(dm.datasets["train"]) == 11 and loader.skipped == 2
    assert len(ids) == 9 and not {"b001_f02", "b002_f04", "b003_f06"} & set(ids)
    assert "left out the samples of 1 indexing problems (data.on_error=skip)" in caplog.text
    assert "train: skipped 2 bad samples in this pass (data.on_error=skip)" in caplog.text


def test_skip_refills_emptied_training_batches_so_an_epoch_keeps_its_length(tmp_path):
    """Batches of one: two bad samples empty two batches. Training serves the batch before (or after) in their
    place, since Lightning validates only after len(loader) batches; evaluation leaves them out."""
    bad = _damaged(tmp_path, TRUNCATED, RESIZED)
    dm = MaskDepthDataModule(path=str(bad), image_size=16, batch_size=1, num_workers=0, split=(1.0, 0.0, 0.0),
                             on_error="skip")  # fmt: skip
    dm.setup()
    training = dm._loader("train", EpochSampler(dm.datasets["train"], 0, 1, 0))
    ids = [batch["id"][0] for batch in training]
    assert len(ids) == len(training) == 12 and training.skipped == 2
    assert len(set(ids)) == 10 and "b001_f02" not in ids and "b003_f06" not in ids
    twice = [i for i in set(ids) if ids.count(i) == 2]
    assert len(twice) == 2 and all(ids.index(i) + 1 == ids.index(i, ids.index(i) + 1) for i in twice)  # neighbours
    assert len([batch for batch in dm._loader("train")]) == 10  # no sampler: an evaluation loader


def test_stats_match_hand_computed_values(tmp_path):
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=6, size=32, fg_per_bg=2)
    stats = dataset_stats(str(path))
    with zipfile.ZipFile(path) as zf:
        fg = np.stack([decode_rgb(zf.read(n), "", "") for n in zf.namelist() if n.startswith("fg_bg/")]) / 255.0
    assert stats["fg_bg"]["mean"] == pytest.approx(fg.reshape(-1, 3).mean(0).tolist(), abs=1e-9)
    assert stats["fg_bg"]["std"] == pytest.approx(fg.reshape(-1, 3).std(0).tolist(), abs=1e-9)
    assert stats["mask_fraction"] == pytest.approx(144 / 1024)  # a 12x12 square in 32x32
    # depth: 880 pixels at 0.5, 144 at (2000 + 100 i) / 20000, pixel (0, 0) unknown (it is never in the square)
    values = np.concatenate([np.r_[np.full(879, 0.5), np.full(144, (2000 + 100 * i) / 20000)] for i in range(6)])
    assert stats["depth"]["mean"] == pytest.approx(values.mean()) and stats["depth"]["std"] == pytest.approx(
        values.std()
    )
    assert stats["depth"]["known"] == pytest.approx(1023 / 1024)
    out = write_norm(stats, tmp_path / "norm" / "d.yaml", str(path))
    assert out.read_text().splitlines()[0] == "# @package data"


def test_stats_of_a_set_without_depth_say_none_is_known(tmp_path):
    path = without_depth(write_canonical_zip(tmp_path / "d.zip", num_samples=4, size=32), tmp_path / "no_depth.zip")
    stats = dataset_stats(str(path))
    assert stats["depth"] == {"mean": None, "std": None, "known": 0.0}
    assert stats["mask_fraction"] == pytest.approx(144 / 1024)
    lines = format_stats(stats).splitlines()
    assert lines[-2] == "depth   none known in this set" and lines[-1].startswith("data.mean=[")


def test_full_size_scoring_skips_bad_samples_only_when_told(tmp_path):
    bad = _damaged(tmp_path, TRUNCATED, RESIZED)
    for on_error in ("raise", "skip"):
        dm = MaskDepthDataModule(path=str(bad), image_size=16, split=(1.0, 0.0, 0.0), on_error=on_error)
        dm.setup()
        samples = full_size_samples(dm.datasets["train"])
        if on_error == "raise":
            with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}: {TRUNCATED}: cannot decode image "):
                list(samples)
        else:
            assert len(list(samples)) == len(dm.datasets["train"]) - 2


def test_check_lists_the_problems_that_leave_no_sample(tmp_path):
    src, out = write_canonical_zip(tmp_path / "clean.zip"), tmp_path / "no_masks.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if not info.filename.startswith("mask/"):
                zout.writestr(info, zin.read(info))
    done = _check_cli(out, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[:3] == [f"{out}: layout canonical, 0 samples with all their entries", "12 problems:", "  missing: 12"]
    assert lines[3] == f"    {out}: mask/b000_f00.png: listed for sample b000_f00 but missing (manifest.csv line 2)"
    assert done.stderr.strip().splitlines()[-1] == f"error: 12 problems in {out}"


def test_an_unknown_on_error_is_refused_before_any_data_is_read():
    with pytest.raises(ValueError, match=r"^data\.on_error must be one of \('raise', 'skip'\), got 'ignore'$"):
        MaskDepthDataModule(path="never-read.zip", on_error="ignore")


@pytest.mark.parametrize("entry", ["mdeas.data.check", "mdeas.data.stats"])
def test_a_dataset_entry_without_a_path_says_how_to_give_one(tmp_path, entry):
    done = subprocess.run([sys.executable, "-m", entry], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "error: give the dataset: path=ZIP or 'path=[A.zip,B.zip]'"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("listed=abc", "listed must be a whole number >= 0, got 'abc'"),
        ("max_mid_grey=abc", "max_mid_grey must be a finite number, got 'abc'"),
        ("max_mid_grey=2", "max_mid_grey (a share of a mask's pixels) must be in [0, 1), got 2"),
        ("max_mid_grey=nan", "max_mid_grey must be a finite number, got nan"),
        ("path=2024", "path must be a zip or a list of zips, got 2024 (quote a name made of digits: 'path=\"2024\"')"),
    ],
)
def test_check_options_are_named_when_bad(tmp_path, option, message):
    data = write_canonical_zip(tmp_path / "ok.zip", num_samples=4)
    cmd = [sys.executable, "-m", "mdeas.data.check", f"path={data}", "num_workers=0", option]  # the last path= wins
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == f"error: {message}"


@pytest.mark.parametrize("where", ["folder", "slash", "under_a_file"])
def test_stats_refuses_an_output_it_cannot_write_before_the_scan(tmp_path, where):
    data = write_canonical_zip(tmp_path / "ok.zip", num_samples=4)
    # a folder; a new name written as a folder; a place under a file
    out = {"folder": tmp_path, "slash": f"{tmp_path / 'new'}/", "under_a_file": data / "x.yaml"}[where]
    cmd = [sys.executable, "-m", "mdeas.data.stats", f"path={data}", "num_workers=0", f"out={out}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "samples (layout" not in done.stdout  # nothing was scanned
    expected = (
        f"error: out (the yaml file to write, e.g. out=conf/data/norm/my.yaml) must name a file, not a folder: {out}"
        if where != "under_a_file"
        else f"error: {data}: a file, not a folder"
    )
    assert done.stderr.strip().splitlines()[-1] == expected
