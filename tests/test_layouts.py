import logging
import shutil
import unicodedata
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.dataset import load_sample
from mdeas.data.decode import binarise
from mdeas.data.errors import DataError
from mdeas.data.layouts import DepthEncoding, kinds_named, load_index
from tests.conftest import write_canonical_zip
from tests.layouts_fixtures import _images as sample_entries
from tests.layouts_fixtures import _write as write_entries
from tests.layouts_fixtures import drop_entry as drop
from tests.layouts_fixtures import (
    encode,
    make_samples,
    replace_entry,
    write_by_kind,
    write_seed000,
    write_seed002,
    write_seed003,
)


def _seed002(tmp: Path):
    return [tmp / "s002.zip"], write_seed002(tmp / "s002.zip", make_samples())


def _seed003(tmp: Path):
    paths = (tmp / "part1.zip", tmp / "part2.zip")
    return list(paths), write_seed003(paths, make_samples())


def _seed000(tmp: Path):
    return [tmp / "s000.zip"], write_seed000(tmp / "s000.zip", make_samples())


def _by_kind(tmp: Path):
    return write_by_kind(tmp, make_samples())


LAYOUTS = {"seed002": _seed002, "seed003": _seed003, "seed000": _seed000, "by_kind": _by_kind}


def _assert_same_as_written(index, written) -> None:
    assert len(index.samples) == len(written) == 6
    for sample in index.samples:
        record = written[index.store.name(sample.fg_bg)]
        raw = load_sample(index, sample)
        assert np.abs(raw["fg_bg"].astype(int) - record.fg_bg).mean() < 3  # JPEG quality 95
        assert np.abs(raw["bg"].astype(int) - record.bg).mean() < 3
        assert (binarise(raw["mask"]) == record.mask).all()
        assert np.abs(raw["depth"] - record.depth).max() < 0.05 and raw["valid"].all()
        assert raw["depth"][record.mask].mean() == pytest.approx(record.depth[record.mask][0], abs=0.01)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_reads_back_what_was_written(tmp_path, layout):
    paths, written = LAYOUTS[layout](tmp_path)
    index = load_index([str(p) for p in paths])
    assert index.layout == layout and not index.problems
    assert index.depth == DepthEncoding(format="gray8", unit="relative", max=255.0, inverted=True)
    _assert_same_as_written(index, written)


def test_forced_layout_and_depth_not_inverted(tmp_path):
    paths, written = _seed000(tmp_path)
    index = load_index(str(paths[0]), layout="seed000", depth_inverted=False)
    sample = index.samples[0]
    raw = load_sample(index, sample)
    record = written[index.store.name(sample.fg_bg)]
    assert np.abs(raw["depth"] - (1 - record.depth)).max() < 0.05  # grey / 255: bright = far
    with pytest.raises(DataError, match=r"s000.zip: labels.txt line 1: expected 5 fields separated by tabs, got 4"):
        load_index(str(paths[0]), layout="seed003")
    with pytest.raises(DataError, match="unknown layout 'nope'"):
        load_index(str(paths[0]), layout="nope")


def test_relative_depth_reports_fractions_of_the_range():
    seed = DepthEncoding(format="gray8", unit="relative", max=255.0, inverted=True)
    assert seed.metres_per_unit == pytest.approx(1 / 255) and seed.scale == pytest.approx(1.0)
    assert DepthEncoding().scale == pytest.approx(20.0)  # 20000 mm


def test_seed_zips_batch_through_the_datamodule(tmp_path):
    paths, _ = _seed003(tmp_path)
    dm = MaskDepthDataModule(path=[str(p) for p in paths], image_size=16, batch_size=2, num_workers=0, split=(1, 0, 0))
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["fg_bg"].shape == (2, 3, 16, 16) and batch["valid"].all()
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0} and 0 <= batch["depth"].min() < batch["depth"].max() <= 1


@pytest.mark.parametrize(
    ("prefix", "rule"),
    [
        ("./", "24 where listed (24 after removing './', '/' or '\\')"),
        ("/content/drive/MyDrive/", "24 without their first 3 folder(s) (24 after removing './', '/' or '\\')"),
    ],
)
def test_manifest_names_with_extra_folders_resolve(tmp_path, caplog, prefix, rule):
    written = write_seed002(tmp_path / "s.zip", make_samples(), prefix=prefix)
    with caplog.at_level(logging.INFO, logger="mdeas.data.layouts"):
        index = load_index(str(tmp_path / "s.zip"))
    assert len(index.samples) == 6
    assert {index.store.name(s.fg_bg) for s in index.samples} == set(written)
    (line,) = [r.getMessage() for r in caplog.records if "names resolved" in r.getMessage()]
    assert line.endswith(f"24 names resolved: {rule}")


def test_manifest_folder_missing_from_the_zip_resolves(tmp_path, caplog):
    paths = (tmp_path / "a.zip", tmp_path / "b.zip")
    written = write_seed003(paths, make_samples(), part_folders_in_zip=False)
    with caplog.at_level(logging.INFO, logger="mdeas.data.layouts"):
        index = load_index([str(p) for p in paths])
    _assert_same_as_written(index, written)
    assert "6 where listed, 18 without their first 1 folder(s)" in caplog.text  # bg exact; data_k/ dropped


def test_parts_that_reuse_file_names_resolve_to_the_zip_their_folder_names(tmp_path):
    """Two seed003 parts stored without their data_k/ folder and with the same file names in each: a row naming
    data_2/... is read from data_2.zip, not from the manifest's own zip."""
    records = make_samples(backgrounds=2, per_bg=2)
    parts, rows, written = [{}, {}], [], {}
    for k, part in enumerate((records[:2], records[2:])):
        for j, r in enumerate(part, 1):
            stored = [f"{d}/{stem}{j}.jpg" for d, stem in (("Fg-Bg", "fg-bg"), ("Fg-Bg-Mask", "fg-bg-mask"),
                                                             ("Depth", "depth"))]  # fmt: skip
            parts[k].update(sample_entries(r, *stored))
            parts[0][f"Bg/bg{r.b}.jpg"] = encode(r.bg)
            rows.append("\t".join([f"Bg/bg{r.b}.jpg", f"Fg/fg{r.f}.png", *(f"data_{k + 1}/{n}" for n in stored)]))
            written[(k, stored[0])] = r
    parts[0]["labels.txt"] = ("\n".join(rows) + "\n").encode()
    paths = [write_entries(tmp_path / f"data_{k + 1}.zip", entries) for k, entries in enumerate(parts)]
    index = load_index([str(p) for p in paths], layout="seed003")
    assert len(index.samples) == 4
    for sample in index.samples:
        record, raw = written[index.store.locate(sample.fg_bg)], load_sample(index, sample)
        assert np.abs(raw["fg_bg"].astype(int) - record.fg_bg).mean() < 3, sample.id
        assert np.abs(raw["bg"].astype(int) - record.bg).mean() < 3, sample.id  # paired with its own background
    assert sorted(index.store.locate(s.fg_bg)[0] for s in index.samples) == [0, 0, 1, 1]


def test_seed003_with_fg_listed_before_bg(tmp_path):
    paths = (tmp_path / "a.zip", tmp_path / "b.zip")
    written = write_seed003(paths, make_samples(), fg_first=True)
    _assert_same_as_written(load_index([str(p) for p in paths]), written)


def test_a_name_matching_several_entries_is_an_error(tmp_path):
    src = tmp_path / "s.zip"
    write_seed000(src, make_samples())
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(twice, "w") as zout:
        for info in zin.infolist():
            for root in ("a/", "b/"):
                zout.writestr(root + info.filename, zin.read(info))
    with pytest.raises(DataError, match=r"bg_images/Image_1.JPEG: matches several entries \(a/bg_images/Image_1.JPEG"):
        load_index(str(twice), layout="seed000")


def with_manifest(src: Path, dst: Path, edit) -> Path:
    """The zip `src` written to `dst` with its manifest.csv's text passed through `edit` (text → text)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, edit(data.decode()).encode() if info.filename == "manifest.csv" else data)
    return dst


def test_repeated_manifest_rows_are_read_once_and_counted(tmp_path, caplog):
    src = write_canonical_zip(tmp_path / "d.zip", num_samples=4, fg_per_bg=1)
    rows = zipfile.ZipFile(src).read("manifest.csv").decode().splitlines()
    repeated = with_manifest(src, tmp_path / "repeated.zip", lambda _: "\n".join([*rows, rows[1], rows[2], rows[1]]))
    with caplog.at_level(logging.INFO, logger="mdeas.data.layouts"):
        index = load_index(str(repeated))
    assert [s.id for s in index.samples] == [s.id for s in load_index(str(src)).samples]
    assert index.resolution.endswith("; 3 rows repeat an earlier one (read once)") and "3 rows repeat" in caplog.text


def test_a_manifest_giving_two_samples_one_id_is_a_problem_naming_it(tmp_path):
    """Two samples of one zip under one id would share their outputs (predict writes <id>_mask.png)."""
    src = write_canonical_zip(tmp_path / "d.zip", num_samples=4, fg_per_bg=2)
    rows = zipfile.ZipFile(src).read("manifest.csv").decode().splitlines()
    rows[2] = ",".join([rows[1].split(",")[0], *rows[2].split(",")[1:]])  # row 2 takes row 1's id
    dup = with_manifest(src, tmp_path / "dup.zip", lambda _: "\n".join(rows))
    first, second = (row.split(",") for row in zipfile.ZipFile(dup).read("manifest.csv").decode().splitlines()[1:3])
    with pytest.raises(DataError, match=rf"dup\.zip: {second[2]}: sample id {first[0]} used twice in the manifest"):
        load_index(str(dup))
    kept = load_index(str(dup), strict=False)
    assert len(kept.samples) == 3 and [s.id for s in kept.samples].count(first[0]) == 1
    after = load_index([str(src), str(dup)], strict=False)  # its ids already taken by an earlier zip: the same
    assert [str(p.problem) for p in after.problems] == [f"sample id {first[0]} used twice in the manifest"]
    copy = shutil.copy(src, tmp_path / "copy.zip")
    two = load_index([str(src), str(copy)], strict=False)  # the same ids in two zips: the second's under copy/
    assert len(two.samples) == 8 and not two.problems and sum("copy/" in s.id for s in two.samples) == 4


def test_zip_folder_missing_from_the_manifest_resolves(tmp_path, caplog):
    src = tmp_path / "s.zip"
    written = write_seed000(src, make_samples())
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(nested, "w") as zout:
        for info in zin.infolist():
            zout.writestr(f"tiny_data/{info.filename}", zin.read(info))
    with caplog.at_level(logging.INFO, logger="mdeas.data.layouts"):
        index = load_index(str(nested))
    assert "24 names resolved: 24 under 'tiny_data/'" in caplog.text
    assert {index.store.name(s.fg_bg) for s in index.samples} == {f"tiny_data/{n}" for n in written}


def test_missing_partners_are_named(tmp_path):
    paths, _ = _seed002(tmp_path)
    lean = drop(paths[0], tmp_path / "lean.zip", "bg1/fg_1/mask/2.jpg")
    with pytest.raises(DataError, match=r"lean.zip: bg1/fg_1/mask/2.jpg: listed for sample bg1/fg_1/overlay/2.jpg"):
        load_index(str(lean))
    paths, _ = _seed000(tmp_path)
    lean = drop(paths[0], tmp_path / "lean0.zip", "fg_bg_depth/Image_2_1_5.JPEG")
    with pytest.raises(DataError, match=r"fg_bg_depth/Image_2_1_5.JPEG: listed for sample fg_bg/Image_2_1_5.JPEG"):
        load_index(str(lean))
    index = load_index(str(lean), strict=False)
    assert len(index.samples) == 5 and [p.category for p in index.problems] == ["missing"]


def test_by_kind_missing_and_orphan_partners_are_named(tmp_path):
    paths, _ = _by_kind(tmp_path)
    depth_zip = next(p for p in paths if p.name == "depth.zip")
    drop(depth_zip, tmp_path / "d.zip", "depth/bg1_fg1_2.jpg")
    paths = [p for p in paths if p != depth_zip] + [tmp_path / "d.zip"]
    index = load_index([str(p) for p in paths], strict=False)
    assert [str(p) for p in index.problems] == [
        f"{tmp_path / 'fg_bg.zip'}: fg_bg/bg1_fg1_2.jpg: no depth partner (nothing named like bg1_fg1_2)"
    ]
    mask_zip = next(p for p in paths if p.name == "mask.zip")
    drop(next(p for p in paths if p.name == "fg_bg.zip"), tmp_path / "f.zip", "fg_bg/bg2_fg2_1.jpg")
    with pytest.raises(DataError, match="mask.zip: mask/bg2_fg2_1.jpg: mask without a fg_bg partner"):
        load_index([str(tmp_path / "bg.zip"), str(tmp_path / "f.zip"), str(mask_zip), str(depth_zip)])


@pytest.mark.parametrize(
    ("zip_names", "folders"),
    [
        ({"bg": "a.zip", "fg_bg": "b.zip", "mask": "c.zip", "depth": "d.zip"}, None),  # folders tell
        (
            {"bg": "bg_images.zip", "fg_bg": "fgbg.zip", "mask": "masks.zip", "depth": "depths.zip"},
            dict.fromkeys(("bg", "fg_bg", "mask", "depth"), "images"),
        ),  # zip names tell
        (
            {"bg": "1.zip", "fg_bg": "2.zip", "mask": "3.zip", "depth": "4.zip"},
            {"bg": "Background", "fg_bg": "Fg-Bg", "mask": "Fg-Bg-Mask", "depth": "Fg-Bg-Depth"},
        ),
    ],
)
def test_kind_of_each_zip_is_detected_from_names(tmp_path, zip_names, folders):
    paths, written = write_by_kind(tmp_path, make_samples(), zip_names, folders)
    index = load_index([str(p) for p in paths])
    assert index.layout == "by_kind"
    _assert_same_as_written(index, written)


def test_one_zip_of_kind_folders_is_read_whatever_its_own_name_says(tmp_path):
    """A zip named like one kind (`depth_set.zip`) whose folders hold the four kinds: the folders decide."""
    names = {"bg": "a.zip", "fg_bg": "b.zip", "mask": "c.zip", "depth": "d.zip"}
    paths, written = write_by_kind(tmp_path, make_samples(), names)
    with zipfile.ZipFile(tmp_path / "depth_set.zip", "w") as merged:
        for path in paths:
            with zipfile.ZipFile(path) as part:
                for info in part.infolist():
                    merged.writestr(info, part.read(info))
    index = load_index(str(tmp_path / "depth_set.zip"))
    assert index.layout == "by_kind"
    _assert_same_as_written(index, written)


def test_undecidable_kind_is_a_clear_error(tmp_path):
    names = {"bg": "a.zip", "fg_bg": "b.zip", "mask": "c.zip", "depth": "d.zip"}
    paths, _ = write_by_kind(tmp_path, make_samples(), names, {"bg": "x", "fg_bg": "y", "mask": "z", "depth": "w"})
    with pytest.raises(
        DataError, match=r"no mask images found \(a.zip: bg; b.zip: fg_bg; c.zip: fg_bg; d.zip: fg_bg\); name each zip"
    ):
        load_index([str(p) for p in paths])
    assert kinds_named("fg_bg_mask") == {"mask"} and kinds_named("fg_bg_depth") == {"depth"}
    assert kinds_named("Fg-Bg") == {"fg_bg"} and kinds_named("bg_images") == {"bg"}
    assert kinds_named("mask_and_depth") == {"mask", "depth"} and kinds_named("data_1") == set()


def test_canonical_zips_with_the_same_names_form_one_dataset(tmp_path):
    a = write_canonical_zip(tmp_path / "a.zip", num_samples=4, size=16, seed=0)
    b = write_canonical_zip(tmp_path / "b.zip", num_samples=4, size=16, seed=1)
    index = load_index([str(a), str(b)])
    assert len(index.samples) == 8 and len({s.id for s in index.samples}) == 8
    assert len({s.bg for s in index.samples}) == 4  # 2 backgrounds per zip, kept apart
    first, second = index.samples[0], index.samples[4]
    assert index.store.name(first.bg) == index.store.name(second.bg) == "bg/b000.jpg"
    assert index.store.source(second.bg) == b and second.id == "b/b000_f00"
    assert not np.array_equal(load_sample(index, first)["bg"], load_sample(index, second)["bg"])


def test_grey_and_rgba_inputs_are_converted_and_16_bit_masks_rejected(tmp_path):
    src = tmp_path / "s.zip"
    record = write_seed002(src, make_samples())["bg1/fg_1/overlay/1.jpg"]
    grey = replace_entry(src, tmp_path / "g.zip", "bg/bg1.jpg", encode(record.bg[..., 0]))
    rgba = np.dstack([record.fg_bg, np.full(record.mask.shape, 255, np.uint8)])
    converted = replace_entry(grey, tmp_path / "c.zip", "bg1/fg_1/overlay/1.jpg", encode(rgba, "PNG"))
    index = load_index(str(converted))
    raw = load_sample(index, next(s for s in index.samples if s.fg_bg == "bg1/fg_1/overlay/1.jpg"))
    assert raw["bg"].shape == (24, 24, 3) and (raw["bg"][..., 0] == raw["bg"][..., 2]).all()
    assert (raw["fg_bg"] == record.fg_bg).all()  # PNG: exact, alpha dropped

    wide = replace_entry(src, tmp_path / "w.zip", "bg2/fg_1/mask/1.jpg", encode(np.zeros((24, 24), np.uint16), "PNG"))
    index = load_index(str(wide))
    sample = next(s for s in index.samples if s.mask == "bg2/fg_1/mask/1.jpg")
    with pytest.raises(
        DataError, match=r"w.zip: bg2/fg_1/mask/1.jpg: expected an 8-bit mask \(grey or colour\), got mode I;16"
    ):
        load_sample(index, sample)


def test_mixed_sizes_in_one_dataset_are_resized(tmp_path):
    records = [r for r in make_samples(size=24) if r.b == 1] + [r for r in make_samples(size=40) if r.b == 2]
    write_seed002(tmp_path / "s.zip", records)
    dm = MaskDepthDataModule(path=str(tmp_path / "s.zip"), image_size=16, batch_size=6, num_workers=0, split=(1, 0, 0))
    dm.setup()
    batch = next(iter(dm._loader("train")))
    assert batch["bg"].shape == (6, 3, 16, 16) and batch["depth"].shape == (6, 1, 16, 16)
    assert (batch["mask"].flatten(1).sum(1) > 0).all()  # every square survives the resize


def _nested(source: Path, path: Path, top: str) -> str:
    """`source`'s entries under the folder `top/`, written to `path`."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            zout.writestr(f"{top}/{info.filename}", zin.read(info))
    return str(path)


def test_each_zip_s_manifest_reads_its_own_files(tmp_path):
    """Two canonical zips with the same names under different folders: a rule learnt on the first (`set_a/`) must
    not pair the second's rows with the first's files."""
    source = write_canonical_zip(tmp_path / "s.zip", num_samples=4, fg_per_bg=1)
    paths = [_nested(source, tmp_path / f"{top}.zip", top) for top in ("set_a", "set_b")]
    index = load_index(paths)
    assert len(index.samples) == 8
    zips = [{index.store.locate(key)[0] for key in (s.bg, s.fg_bg, s.mask, s.depth)} for s in index.samples]
    assert sorted(zips, key=min) == [{0}] * 4 + [{1}] * 4  # each sample reads one zip, four from each


def test_a_blank_manifest_line_is_skipped(tmp_path):
    source = write_canonical_zip(tmp_path / "c.zip", num_samples=4, fg_per_bg=1)
    blank = with_manifest(source, tmp_path / "blank.zip", lambda text: text.replace("\n", "\r\r\n") + "\n")
    assert len(load_index(str(blank)).samples) == 4


def _rewritten_labels(tmp: Path, edit) -> Path:
    """The seed 002 zip of `make_samples()` with each label_data.csv line replaced by `edit(line, fields)`."""
    write_seed002(tmp / "s002.zip", make_samples())
    with zipfile.ZipFile(tmp / "s002.zip") as archive:
        lines = archive.read("label_data.csv").decode().splitlines()
    text = "\n".join(edit(line, [f.strip('"') for f in line.split(";")]) for line in lines) + "\n"
    return replace_entry(tmp / "s002.zip", tmp / "edited.zip", "label_data.csv", text.encode())


@pytest.mark.parametrize(
    "edit",
    [
        lambda line, f: ";".join(f'"{x}"' for x in f[:3]) + ';""',  # the depth field left empty
        lambda line, f: ";".join(f'"{x}"' for x in f[:3]),  # no depth column at all
    ],
    ids=["empty", "absent"],
)
def test_a_seed002_set_without_depth_reads_its_samples_with_depth_unknown(tmp_path, edit):
    """A set of real composites has masks but no depth: every sample is read, its depth unknown (not a missing
    entry named by an empty name)."""
    index = load_index([str(_rewritten_labels(tmp_path, edit))])
    assert len(index.samples) == len(make_samples()) and all(s.depth is None for s in index.samples)
    arrays = load_sample(index, index.samples[0])
    assert not arrays["valid"].any() and binarise(arrays["mask"]).sum() == 64  # the 8×8 square


@pytest.mark.parametrize(
    "edit",
    [
        lambda line, f: line + ";",  # a trailing delimiter
        lambda line, f: line.replace(";", "; "),  # a space after each delimiter, before the quotes
    ],
    ids=["trailing", "spaced"],
)
def test_seed002_labels_with_a_trailing_delimiter_or_spaces_read_as_the_plain_ones(tmp_path, edit):
    plain = load_index([str(_seed002(tmp_path)[0][0])])
    edited = load_index([str(_rewritten_labels(tmp_path, edit))])
    assert [(s.bg, s.fg_bg, s.mask, s.depth) for s in edited.samples] == [
        (s.bg, s.fg_bg, s.mask, s.depth) for s in plain.samples
    ]


def test_seed002_rows_with_an_empty_image_field_or_another_delimiter_are_named(tmp_path):
    """An empty mask field is said so (it was a sample `missing` an entry of no name); a comma-separated row names
    the delimiter expected."""
    first = make_samples()[0]
    row = [
        f"bg/bg{first.b}.jpg",
        *(f"bg{first.b}/fg_{first.f}/{k}/{first.k}.jpg" for k in ("overlay", "mask", "depth")),
    ]
    empty = _rewritten_labels(tmp_path, lambda line, f: f'"{f[0]}";"{f[1]}";"";"{f[3]}"')
    with pytest.raises(DataError) as error:
        load_index([str(empty)])
    no_mask = [row[0], row[1], "", row[3]]
    assert str(error.value).startswith(f"{empty}: label_data.csv line 1: empty mask field: {no_mask} (")
    commas = _rewritten_labels(tmp_path, lambda line, f: ",".join(f))
    with pytest.raises(DataError) as error:
        load_index([str(commas)])
    said = f"{commas}: label_data.csv line 1: expected 3 or 4 fields separated by ';', got 1: [{','.join(row)!r}] ("
    assert str(error.value).startswith(said)


@pytest.mark.parametrize(
    ("stored", "listed"),
    [
        (lambda name: name.replace(".jpg", ".JPG"), lambda name: name),  # written on Windows: one file either way
        (  # written on macOS, which stores é as e + a combining accent; the csv holds it composed
            lambda name: name.replace("overlay", unicodedata.normalize("NFD", "overlay_é")),
            lambda name: name.replace("overlay", unicodedata.normalize("NFC", "overlay_é")),
        ),
    ],
    ids=["case", "unicode-form"],
)
def test_names_in_another_case_or_unicode_form_find_their_entries(tmp_path, stored, listed):
    plain = load_index([str(_seed002(tmp_path)[0][0])])
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(tmp_path / "s002.zip") as zin, zipfile.ZipFile(edited, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "label_data.csv":
                zout.writestr(info, listed(data.decode()).encode())
            else:
                zout.writestr(stored(info.filename), data)
    index = load_index([str(edited)])
    assert [(s.bg, s.fg_bg, s.mask) for s in index.samples] == [
        (stored(s.bg), stored(s.fg_bg), stored(s.mask)) for s in plain.samples
    ]
    folded = sum(stored(name) != listed(name) for s in plain.samples for name in (s.bg, s.fg_bg, s.mask, s.depth))
    assert index.resolution == f"24 names resolved: 24 where listed ({folded} in another case or Unicode form)"


def test_zips_of_two_layouts_are_refused_whichever_layout_is_forced(tmp_path):
    """A forced layout read one zip and left the other out unsaid: the zip no sample reads from is named."""
    seed, _ = _seed002(tmp_path)
    canonical = write_canonical_zip(tmp_path / "can.zip")
    paths = [str(seed[0]), str(canonical)]
    with pytest.raises(DataError) as error:
        load_index(paths)
    assert str(error.value) == (
        f"{seed[0]}, {canonical}: manifests of several layouts (canonical, seed002): the zips of one dataset share "
        "one layout; data.layout= (predict: layout=) picks one where a zip holds several"
    )
    for layout, unread in (("seed002", canonical), ("canonical", seed[0])):
        with pytest.raises(DataError) as error:
            load_index(paths, layout=layout)
        assert str(error.value) == (
            f"{unread}: no sample of layout {layout} reads from this zip: the zips of one dataset share one layout"
        )


def test_by_kind_without_depth_reads_it_unknown_and_without_masks_only_for_predict(tmp_path):
    """A set of bg, fg_bg and mask zips trains with depth unknown; bg and fg_bg alone are predict's inputs only."""
    paths, written = write_by_kind(tmp_path, make_samples())  # bg, fg_bg, mask, depth
    index = load_index([str(p) for p in paths[:3]])
    assert len(index.samples) == 6 and not index.problems
    assert all(s.depth is None for s in index.samples)
    raw = load_sample(index, index.samples[0])
    assert (binarise(raw["mask"]) == written[index.store.name(index.samples[0].fg_bg)].mask).all()
    assert not raw["valid"].any()
    with pytest.raises(DataError, match=r"no mask images found \(bg.zip: bg; fg_bg.zip: fg_bg\); name each zip"):
        load_index([str(p) for p in paths[:2]])
    pairs = load_index([str(p) for p in paths[:2]], pairs_only=True)
    assert sorted(pairs.store.name(s.fg_bg) for s in pairs.samples) == sorted(written)
    assert all(s.mask is None and s.depth is None for s in pairs.samples)
    assert all(pairs.store.name(s.bg) == f"bg/bg{written[pairs.store.name(s.fg_bg)].b}.jpg" for s in pairs.samples)


@pytest.mark.parametrize("layout", ["canonical", *LAYOUTS])
def test_predicts_inputs_need_only_bg_and_fg_bg(tmp_path, layout):
    """A sample whose mask and depth entries are missing is a problem for training, an input for predict."""
    if layout == "canonical":
        paths = [write_canonical_zip(tmp_path / "c.zip", num_samples=6, size=16)]
    else:
        paths = LAYOUTS[layout](tmp_path)[0]
    whole = load_index([str(p) for p in paths])
    first = whole.samples[0]
    gone = {(whole.store.source(key), whole.store.name(key)) for key in (first.mask, first.depth)}
    (tmp_path / "cut").mkdir()
    cut = [Path(shutil.copy(path, tmp_path / "cut" / path.name)) for path in paths]
    for path, target in zip(paths, cut, strict=True):
        for name in (name for source, name in gone if source == path):
            drop(target, target.with_suffix(".tmp"), name).replace(target)
    with pytest.raises(DataError, match="listed for sample .* but missing|no mask partner"):
        load_index([str(p) for p in cut])
    pairs = load_index([str(p) for p in cut], pairs_only=True)
    assert [s.id for s in pairs.samples] == [s.id for s in whole.samples] and not pairs.problems
    assert (pairs.samples[0].mask, pairs.samples[0].depth) == (None, None)
    assert all(s.mask is not None for s in pairs.samples[1:])


def _pair_zip(path: Path, names: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in names.items():
            z.writestr(name, data)
    return str(path)


def _png(shade: int) -> bytes:
    return cv2.imencode(".png", np.full((8, 8, 3), shade, np.uint8))[1].tobytes()


def test_zips_that_each_hold_bg_and_fg_bg_pair_within_themselves(tmp_path):
    """Two folders-by-kind zips with the same names: each fg_bg pairs with its own zip's bg, the second's id under
    its zip's name (predict writes it in that folder); with masks in each, as a training set too."""
    first = _pair_zip(tmp_path / "plain.zip", {"bg/a.jpg": _png(10), "fg_bg/a.jpg": _png(20), "mask/a.png": _png(0)})
    second = _pair_zip(tmp_path / "tiny.zip", {"bg/a.png": _png(30), "fg_bg/a.png": _png(40), "mask/a.png": _png(0)})
    for pairs_only in (True, False):
        index = load_index([first, second], pairs_only=pairs_only)
        got = {s.id: (index.store.source(s.bg).name, index.store.name(s.bg)) for s in index.samples}
        assert got == {"a": ("plain.zip", "bg/a.jpg"), "tiny/a": ("tiny.zip", "bg/a.png")}, pairs_only
    lean = _pair_zip(tmp_path / "lean.zip", {"bg/b.png": _png(30), "fg_bg/b.png": _png(40)})
    with pytest.raises(DataError, match=r"lean.zip: no mask images found \(lean.zip: bg, fg_bg\)"):
        load_index([first, lean])


def test_a_fg_bg_image_in_a_format_not_read_is_a_problem_not_a_sample_left_out(tmp_path):
    names = {"bg/a.jpg": _png(10), "fg_bg/a.jpg": _png(20), "bg/c.jpg": _png(10), "fg_bg/c.heic": b"heic"}
    mixed = _pair_zip(tmp_path / "mixed.zip", {**names, "fg_bg/notes.txt": b"x", "fg_bg/Thumbs.db": b"x"})
    index = load_index(mixed, pairs_only=True, strict=False)
    assert [s.id for s in index.samples] == ["a"]
    assert [f"{p.entry}: {p.problem}" for p in index.problems] == [  # notes.txt is no sample
        "fg_bg/c.heic: an image in a format not read (only .jpg .jpeg .png .bmp .tif .tiff .webp): its sample would "
        "be left out"
    ]
    gifs = _pair_zip(tmp_path / "gifs.zip", {"bg/a.gif": b"GIF89a", "fg_bg/a.gif": b"GIF89a"})
    with pytest.raises(DataError, match=r"no bg images found \(gifs.zip: no images \(fg_bg/a.gif is in a format not"):
        load_index(gifs, pairs_only=True)
