import fcntl
import logging
import os
import pickle
import socket
import zipfile
from pathlib import Path

import albumentations as A
import pytest
import torch

from mdeas.data import dataset as dataset_module
from mdeas.data import resized_cache as rc
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.errors import DataError
from mdeas.data.sampler import EpochSampler
from tests.conftest import write_canonical_zip


def _module(path, cache_dir, cached: bool, **kwargs) -> MaskDepthDataModule:
    settings = dict(image_size=16, batch_size=4, num_workers=0, split=(0.5, 0.25, 0.25), cache_dir=str(cache_dir))
    settings["augment"] = [A.HorizontalFlip(p=0.5), A.ColorJitter(p=0.5), A.Affine(rotate=(-20, 20), p=0.5)]
    dm = MaskDepthDataModule(path=str(path), cache_resized=cached, **{**settings, **kwargs})
    dm.setup()
    return dm


def _same(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return a["id"] == b["id"] and all(torch.equal(a[k], b[k]) for k in ("bg", "fg_bg", "mask", "depth", "valid"))


def _no_decoding(monkeypatch) -> None:
    """From now on a sample decoded from the zip fails the test: items must come from the cache."""

    def decoded(*args, **kwargs):
        pytest.fail("decoded from the zip")

    monkeypatch.setattr(dataset_module, "load_sample", decoded)


def test_cached_samples_equal_decoded_ones_with_augmentation(tmp_path, monkeypatch):
    """The cached datasets serve every item, augmented, from the cache alone, equal to the items decoded."""
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=16, size=40)
    plain, cached = _module(path, tmp_path / "c", False), _module(path, tmp_path / "c", True)
    decoded = {}
    for name in ("train", "val", "test"):
        a, b = plain.datasets[name], cached.datasets[name]
        assert a.cache is None and b.cache is not None and len(b.cache) == len(a) > 0
        keys = list(EpochSampler(a, seed=0)) if name == "train" else range(len(a))
        for epoch in (0, 1):
            for key in keys:
                key = (epoch, key[1]) if isinstance(key, tuple) else key
                decoded[name, key] = a[key]
    _no_decoding(monkeypatch)
    for (name, key), item in decoded.items():
        assert _same(item, cached.datasets[name][key]), (name, key)
    assert cached.datasets["test"][0]["fg_bg"].shape == (3, 16, 16)


def test_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=8, size=32)
    state = torch.get_rng_state()
    _module(path, tmp_path / "c", True, num_workers=1)
    assert torch.equal(torch.get_rng_state(), state)  # a run that builds the cache trains like one that reads it
    folders = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(folders) == 3 and all(f.startswith("resized-16px-") for f in folders)  # one per split

    def no_build(*args):
        raise AssertionError("rebuilt")

    write = rc._write
    monkeypatch.setattr(rc, "_write", no_build)
    again = _module(path, tmp_path / "c", True)
    assert again.datasets["train"].cache is not None
    with pytest.raises(AssertionError, match="rebuilt"):
        _module(path, tmp_path / "c", True, image_size=8)  # another size: another cache
    code = tmp_path / "code"  # the decoding code changed: a copy of it, one file edited
    code.mkdir()
    for name in rc.DECODING_CODE:
        (code / name).write_bytes((Path(rc.__file__).parent / name).read_bytes())
    assert rc.decoding_fingerprint(code) == rc.decoding_fingerprint()
    (code / "transforms.py").write_text((code / "transforms.py").read_text() + "\n# edited\n")
    edited = rc.decoding_fingerprint(code)
    assert edited != rc.decoding_fingerprint()
    with monkeypatch.context() as patch, pytest.raises(AssertionError, match="rebuilt"):
        patch.setattr(rc, "decoding_fingerprint", lambda: edited)
        _module(path, tmp_path / "c", True)
    write_canonical_zip(path, num_samples=8, size=32, seed=1)  # the dataset changed
    os.utime(path, ns=(1, 1))
    with pytest.raises(AssertionError, match="rebuilt"):
        _module(path, tmp_path / "c", True)
    monkeypatch.setattr(rc, "_write", write)  # cache the changed set, then swap two images under each other's names
    _module(path, tmp_path / "c", True)
    with zipfile.ZipFile(path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    a, b = (i for i, (info, _) in enumerate(entries) if info.filename in ("fg_bg/b000_f00.jpg", "fg_bg/b000_f01.jpg"))
    entries[a], entries[b] = (entries[a][0], entries[b][1]), (entries[b][0], entries[a][1])
    size = path.stat().st_size
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    os.utime(path, ns=(1, 1))
    assert path.stat().st_size == size  # same path, size and time: only the entries' CRCs tell
    monkeypatch.setattr(rc, "_write", no_build)
    with pytest.raises(AssertionError, match="rebuilt"):
        _module(path, tmp_path / "c", True)


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=8, size=32)

    def interrupted(dataset, num_workers, desc):
        yield dataset[0]
        raise KeyboardInterrupt

    monkeypatch.setattr(rc, "scan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _module(path, tmp_path / "c", True)
    assert list((tmp_path / "c").iterdir()) == []


def _cut_zip(tmp_path):
    """A canonical zip of 8 samples whose entry fg_bg/b001_f02.jpg is cut to a third."""
    src = zipfile.ZipFile(write_canonical_zip(tmp_path / "d.zip", num_samples=8, size=32))
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(cut, "w") as zf:
        for info in src.infolist():
            data = src.read(info)
            zf.writestr(info, data[: len(data) // 3] if info.filename == "fg_bg/b001_f02.jpg" else data)
    return cut


CUT_ENTRY = r"cut.zip: fg_bg/b001_f02.jpg: cannot decode image"


def test_bad_entry_names_itself_while_caching_or_is_left_out(tmp_path, monkeypatch):
    """A bad entry stops the build naming itself under raise; under skip the cache leaves it out and serves the
    other samples, equal to the decoded ones, without decoding again."""
    cut = _cut_zip(tmp_path)
    with pytest.raises(DataError, match=CUT_ENTRY):
        _module(cut, tmp_path / "c", True, split=(1, 0, 0))
    assert list((tmp_path / "c").iterdir()) == []
    plain = _module(cut, tmp_path / "c", False, split=(1, 0, 0), on_error="skip")
    cached = _module(cut, tmp_path / "c", True, split=(1, 0, 0), on_error="skip")
    decoded = [plain.datasets["train"][0, i] for i in range(8)]
    _no_decoding(monkeypatch)  # the left-out sample too is answered by the cache, not decoded again
    pairs = [(a, cached.datasets["train"][0, i]) for i, a in enumerate(decoded)]
    assert all(_same(a, b) for a, b in pairs) and sum(b is None for _, b in pairs) == 1
    assert cached.datasets["train"].cache.meta["left_out"] == 1


@pytest.mark.parametrize("first", ["skip", "raise"])
def test_cache_left_out_under_skip_is_not_used_by_raise(tmp_path, first):
    cut = _cut_zip(tmp_path)
    order = ["skip", "raise", "skip", "raise"] if first == "skip" else ["raise", "skip", "raise"]
    for on_error in order:
        if on_error == "raise":
            with pytest.raises(DataError, match=CUT_ENTRY):
                _module(cut, tmp_path / "c", True, split=(1, 0, 0), on_error="raise")
        else:
            cache = _module(cut, tmp_path / "c", True, split=(1, 0, 0), on_error="skip").datasets["train"].cache
            assert cache is not None and cache.meta["left_out"] == 1


def test_cache_without_left_out_samples_serves_skip_and_raise(tmp_path, monkeypatch):
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=8, size=32)
    _module(path, tmp_path / "c", True, split=(1, 0, 0), on_error="skip")

    def no_build(*args):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(rc, "_write", no_build)
    for on_error in ("raise", "skip"):
        assert _module(path, tmp_path / "c", True, split=(1, 0, 0), on_error=on_error).datasets["train"].cache


def test_cache_over_the_limit_is_skipped_with_a_warning(tmp_path, caplog):
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=8, size=32)
    with caplog.at_level(logging.WARNING):
        dm = _module(path, tmp_path / "c", True, cache_max_gb=1e-6)
    assert dm.datasets["train"].cache is None and dm.datasets["train"][0]["bg"].shape == (3, 16, 16)
    assert "not caching at 16 px" in caplog.text and "data.cache_max_gb" in caplog.text


def test_cache_size_and_pickling(tmp_path):
    assert rc.cache_bytes(10, 64) == 10 * 64 * 64 * 12 + 10
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=8, size=32)
    cache = _module(path, tmp_path / "c", True).datasets["train"].cache
    assert cache[0] is not None and cache._arrays is not None
    clone = pickle.loads(pickle.dumps(cache))  # what a worker gets: paths, not arrays
    assert clone._arrays is None and len(pickle.dumps(cache)) < 2000
    assert all((clone[0][k] == cache[0][k]).all() for k in rc.ARRAYS)


def test_a_cache_being_built_elsewhere_is_left_alone(tmp_path):
    """Processes on other hosts sharing the cache folder may have this one's process id: their half-built folder
    (named with it, as it once was) must survive this build."""
    dm = MaskDepthDataModule(path=str(write_canonical_zip(tmp_path / "d.zip")), image_size=16, num_workers=0,
                             split=(1.0, 0.0, 0.0))  # fmt: skip
    dm.setup()
    data = dm.datasets["train"]
    other = tmp_path / "c" / f"resized-16px-{rc.cache_key(data)}.partial-{os.getpid()}"
    other.mkdir(parents=True)
    (other / "sentinel").touch()
    assert rc.resized_cache(data, tmp_path / "c") is not None
    assert (other / "sentinel").exists()


def test_a_build_killed_outright_is_cleared_by_the_next_one(tmp_path):
    """A temporary folder of this host whose lock no process holds (its builder was killed) is removed; one whose
    lock is held (a live build, in any process namespace), one without a lock file, one of another host whose name
    starts with this host's, and an unrelated folder stay."""
    dm = MaskDepthDataModule(path=str(write_canonical_zip(tmp_path / "d.zip")), image_size=16, num_workers=0,
                             split=(1.0, 0.0, 0.0))  # fmt: skip
    dm.setup()
    host, name, cache = socket.gethostname(), "resized-16px-0123abcd.partial", tmp_path / "c"
    dead, live = cache / f"{name}-{host}-k1ll3d", cache / f"{name}-{host}-l1ve"
    kept = [live, cache / f"{name}-{host}-n0l0ck", cache / f"{name}-{host}-9-x", cache / "notes"]
    for folder in (dead, *kept):
        folder.mkdir(parents=True)
        (folder / "bg.npy").touch()
    for folder in (dead, live, kept[2]):
        (folder / rc.BUILDING).touch()
    with (live / rc.BUILDING).open("r") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the builder holds it
        assert rc.resized_cache(dm.datasets["train"], cache) is not None
    assert not dead.exists() and all((folder / "bg.npy").exists() for folder in kept)
    assert sorted(p.name for p in cache.glob("*.partial-*")) == sorted(p.name for p in kept[:3])  # its own renamed
    [built] = [p for p in cache.glob("resized-16px-*") if ".partial-" not in p.name]
    assert (built / rc.COMPLETE).is_file() and not (built / rc.BUILDING).exists()  # no lock file left in it


def test_a_build_is_never_taken_for_abandoned_before_it_holds_its_lock(tmp_path, monkeypatch):
    """Another process clearing abandoned builds between this builder's making its lock file and locking it (the
    moment an unlocked file used to stand there) finds no lock file, and leaves the folder alone."""
    dm = MaskDepthDataModule(path=str(write_canonical_zip(tmp_path / "d.zip")), image_size=16, num_workers=0,
                             split=(1.0, 0.0, 0.0))  # fmt: skip
    dm.setup()
    cache, cleared = tmp_path / "c", []
    lock = rc.lock

    def others_clear_first(handle, wait=True):
        cleared.extend(rc.remove_abandoned_builds(cache))
        return lock(handle, wait)

    monkeypatch.setattr(rc, "lock", others_clear_first)
    assert rc.resized_cache(dm.datasets["train"], cache) is not None
    assert cleared == [] and len(list(cache.glob("resized-16px-*"))) == 1
