import pickle
import zipfile

import pytest
import torch

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.errors import DataError
from mdeas.data.layouts import load_index
from mdeas.data.splits import split, subset
from mdeas.data.zipstore import ZipStore
from tests.conftest import write_canonical_zip


def test_index_reads_manifest_and_depth_encoding(canonical_zip):
    index = load_index(str(canonical_zip))
    assert len(index.samples) == 12
    assert index.samples[0].id == "b000_f00"
    assert index.samples[0].fg_bg == "fg_bg/b000_f00.jpg"
    assert (index.depth.unit, index.depth.max) == ("mm", 20000)


def test_zip_round_trip_through_the_dataset(canonical_zip):
    dm = MaskDepthDataModule(path=str(canonical_zip), image_size=32, batch_size=4, num_workers=0, augment=[])
    dm.setup()
    ds = dm.datasets["train"]
    item = ds[0]
    assert item["bg"].shape == item["fg_bg"].shape == (3, 32, 32)
    assert item["mask"].shape == item["depth"].shape == item["valid"].shape == (1, 32, 32)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["valid"].dtype == torch.bool and not item["valid"][0, 0, 0] and item["valid"].sum() == 32 * 32 - 1
    # depth written as millimetres, read back normalised by max = 20000 mm
    i = int(item["id"].split("_f")[1])
    fg = item["mask"][0] > 0
    assert torch.allclose(item["depth"][0][fg], torch.tensor((2000 + 100 * i) / 20000))
    assert torch.allclose(item["depth"][0][~fg & item["valid"][0]], torch.tensor(0.5))
    # the fg pixels are red in fg_bg: denormalised red channel near 250/255 inside the mask
    rgb = ds.denormalise(item["fg_bg"])
    assert rgb[0][fg].mean() > 0.9 and rgb[1][fg].mean() < 0.2


def test_batches_follow_the_contract(canonical_zip):
    dm = MaskDepthDataModule(path=str(canonical_zip), image_size=16, batch_size=4, num_workers=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["bg"].shape == (4, 3, 16, 16) and batch["bg"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, 16, 16) and batch["depth"].dtype == torch.float32
    assert batch["valid"].dtype == torch.bool and isinstance(batch["id"], list) and len(batch["id"]) == 4
    assert 0 <= batch["depth"].min() and batch["depth"].max() <= 1


def test_split_is_deterministic_disjoint_and_groups_backgrounds(canonical_zip):
    samples = load_index(str(canonical_zip)).samples
    a = split(samples, (0.5, 0.25, 0.25), seed=3)
    b = split(samples, (0.5, 0.25, 0.25), seed=3)
    c = split(samples, (0.5, 0.25, 0.25), seed=4)
    assert [[s.id for s in p] for p in a] == [[s.id for s in p] for p in b]
    assert [[s.id for s in p] for p in a] != [[s.id for s in p] for p in c]
    ids = [s.id for p in a for s in p]
    assert sorted(ids) == sorted(s.id for s in samples)
    bgs = [{s.bg for s in p} for p in a]
    assert not (bgs[0] & bgs[1]) and not (bgs[0] & bgs[2]) and not (bgs[1] & bgs[2])
    assert [len(p) for p in a] == [6, 2, 4]  # 6 backgrounds → 3 / 1.5→2 / rest, two samples each


def test_subset_is_seeded_and_bad_fractions_rejected(canonical_zip):
    samples = load_index(str(canonical_zip)).samples
    drawn = {seed: [s.id for s in subset(samples, 5, seed)] for seed in range(4)}
    order = [s.id for s in samples]
    for ids in drawn.values():  # five distinct samples, kept in index order
        assert len(set(ids)) == 5 and ids == [i for i in order if i in ids]
    assert len({tuple(ids) for ids in drawn.values()}) > 1  # the seed chooses which
    assert [s.id for s in subset(samples, 5, 1)] == drawn[1] and len(subset(samples, 100, 1)) == 12
    with pytest.raises(
        ValueError, match=r"^data\.split fractions must be non-negative and sum to 1, got \[0\.5, 0\.2, 0\.2\]$"
    ):
        split(samples, (0.5, 0.2, 0.2), 0)


def test_store_reopens_handles_after_pickling(canonical_zip):
    store = ZipStore([canonical_zip])
    assert store.read("meta.json") == zipfile.ZipFile(canonical_zip).read("meta.json")
    clone = pickle.loads(pickle.dumps(store))
    assert clone._handles == {} and clone.read("meta.json") == store.read("meta.json")


def test_missing_entry_and_bad_zip_name_the_culprit(tmp_path, canonical_zip):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="broken.zip: not a readable zip"):
        ZipStore([bad])
    with pytest.raises(DataError, match=r"absent\.zip: no such file$"):  # not taken for a damaged zip
        ZipStore([tmp_path / "absent.zip"])
    with pytest.raises(DataError, match=rf"^{tmp_path}: a folder, not a file$"):
        ZipStore([tmp_path])
    store = ZipStore([canonical_zip])
    with pytest.raises(DataError, match="data.zip: mask/none.png: entry not found"):
        store.read("mask/none.png")
    # a manifest naming a missing entry fails at indexing, naming the entry
    src = zipfile.ZipFile(canonical_zip)
    lean = tmp_path / "lean.zip"
    with zipfile.ZipFile(lean, "w") as zf:
        for info in src.infolist():
            if info.filename != "depth/b001_f03.png":
                zf.writestr(info, src.read(info))
    with pytest.raises(DataError, match="depth/b001_f03.png: listed for sample b001_f03 but missing"):
        load_index(str(lean))


def test_truncated_image_names_the_entry(tmp_path, canonical_zip):
    src = zipfile.ZipFile(canonical_zip)
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(cut, "w") as zf:
        for info in src.infolist():
            data = src.read(info)
            zf.writestr(info, data[: len(data) // 3] if info.filename.startswith("fg_bg/") else data)
    dm = MaskDepthDataModule(path=str(cut), image_size=16, batch_size=2, num_workers=0)
    dm.setup()
    with pytest.raises(DataError, match=r"cut.zip: fg_bg/b\d+_f\d+.jpg: cannot decode image"):
        dm.datasets["train"][0]


def test_data_error_keeps_one_line_through_worker_reraise_and_pickling():
    error = DataError("a.zip", "fg_bg/1.jpg", "cannot decode image (truncated)", "decode")
    assert str(error) == "a.zip: fg_bg/1.jpg: cannot decode image (truncated)"
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.entry, clone.category) == (str(error), "fg_bg/1.jpg", "decode")
    worker = (
        "Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 3, in f\n    raise DataError(...)\n'
        "mdeas.data.errors.DataError: a.zip: fg_bg/1.jpg: cannot decode image (truncated)\n"
    )
    assert str(DataError(worker)) == "a.zip: fg_bg/1.jpg: cannot decode image (truncated)"


def test_store_keys_tell_apart_equal_names_in_two_zips(tmp_path):
    a = write_canonical_zip(tmp_path / "a.zip", num_samples=2, size=16)
    b = write_canonical_zip(tmp_path / "b.zip", num_samples=2, size=16, seed=5)
    store = ZipStore([a, b])
    assert store.key("meta.json") == store.key("meta.json", 0) == "meta.json"
    assert store.key("meta.json", 1) == "1::meta.json" and store.key("nothing.png", 1) is None
    assert store.source("1::bg/b000.jpg") == b and store.name("1::bg/b000.jpg") == "bg/b000.jpg"
    assert store.read("1::bg/b000.jpg") != store.read("bg/b000.jpg")


def test_a_zip_given_twice_is_refused(tmp_path):
    a = write_canonical_zip(tmp_path / "a.zip", num_samples=2, size=16)
    (tmp_path / "sub").mkdir()
    for twice in ([a, a], [a, tmp_path / "sub" / ".." / "a.zip"]):
        with pytest.raises(
            DataError, match=r"a.zip: given twice in the list of zips \(its samples would count twice\)$"
        ):
            ZipStore(twice)


def test_the_generated_set_is_resolved_once_per_data_module(tmp_path):
    """prepare_data and setup both ask for the path: an edit of the generator's code between them (a new key) must
    not make a second set for the same run."""
    made = []

    def generator(cache_dir: str) -> str:  # each call as if the generator's code had changed: a new zip
        made.append(str(write_canonical_zip(tmp_path / f"set{len(made)}.zip", num_samples=8, size=16)))
        return made[-1]

    dm = MaskDepthDataModule(synth=generator, cache_dir=str(tmp_path), split=(0.5, 0.25, 0.25), num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.resolve_path() == made[0] and len(made) == 1
