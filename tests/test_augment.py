from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.transforms import apply, build_augment
from tests.conftest import write_canonical_zip

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SIZE = 48


def _augment(choice: str) -> list:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"data/aug={choice}", f"data.image_size={SIZE}"])
    return instantiate(cfg.data.augment, _convert_="all")


def _square_sample():
    """bg == fg_bg: dark texture with a bright square; mask == valid depth == the square; depth varies inside."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
    square = np.zeros((SIZE, SIZE), bool)
    square[12:30, 16:36] = True
    image[square] = 250
    depth = np.where(square, np.linspace(0.3, 0.6, SIZE, dtype=np.float32)[None, :], 0).astype(np.float32)
    return image, square, depth


def test_config_group_choices():
    assert _augment("none") == []
    names = [type(t).__name__ for t in _augment("default")]
    assert names == ["HorizontalFlip", "RandomBrightnessContrast"]
    strong = [type(t).__name__ for t in _augment("strong")]
    assert {"Affine", "RandomResizedCrop", "ColorJitter", "GaussianBlur", "GaussNoise"} <= set(strong)


def test_strong_augmentation_moves_all_four_arrays_together():
    image, square, depth = _square_sample()
    transform = build_augment(_augment("strong"), seed=1)
    known = set(np.unique(depth[square]).tolist())
    moved = scored = 0
    for _ in range(30):
        out = apply(transform, image.copy(), image.copy(), square.astype(np.float32), depth, square)
        assert (out["bg"] == out["fg_bg"]).all()  # same geometry and the same photometric draw
        assert set(np.unique(out["mask"]).tolist()) <= {0.0, 1.0}
        assert (out["mask"].astype(bool) == out["valid"]).all()  # mask and depth known-ness coincide exactly
        assert (out["depth"][~out["valid"]] == 0).all() and set(out["depth"][out["valid"]].tolist()) <= known
        bright = (
            out["fg_bg"].mean(axis=2) > (out["fg_bg"][out["valid"]].mean() + out["fg_bg"][~out["valid"]].mean()) / 2
        )
        if out["valid"].sum() > 20:
            inter, union = (bright & out["valid"]).sum(), (bright | out["valid"]).sum()
            assert inter / union > 0.8  # the bright square is where the mask is (up to blur at its edge)
            scored += 1
        moved += not (out["mask"].astype(bool) == square).all()
    assert moved >= 10 and scored >= 15  # the geometry really changed in most draws, the square mostly stayed in view


def test_linear_mask_interpolation_never_blends_unknown_depth():
    image, square, depth = _square_sample()
    rotate = A.Affine(rotate=(20, 20), mask_interpolation=1, p=1.0)
    out = apply(build_augment([rotate], seed=0), image, image, square.astype(np.float32), depth, square)
    inside = out["depth"][out["valid"]]
    assert inside.min() >= 0.3 - 1e-5 and inside.max() <= 0.6 + 1e-5  # only known depth was averaged
    assert set(np.unique(out["mask"]).tolist()) == {0.0, 1.0}


def _flips(dm: MaskDepthDataModule) -> list[bool]:
    flips = []
    for batch in dm.train_dataloader():
        flips += [bool(m[0, :, :6].sum() > m[0, :, 10:].sum()) for m in batch["mask"]]
    return flips


def _one_sample_module(tmp_path: Path, num_workers: int) -> MaskDepthDataModule:
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=4, size=16, fg_per_bg=1)
    dm = MaskDepthDataModule(
        path=str(path),
        image_size=16,
        batch_size=1,
        num_workers=num_workers,
        split=(1.0, 0.0, 0.0),
        augment=[A.HorizontalFlip(p=0.5)],
    )
    dm.setup()
    dm.datasets["train"].samples = dm.datasets["train"].samples[:1] * 24  # one sample, many draws
    return dm


@pytest.mark.parametrize("num_workers", [0, 2])
def test_draws_differ_across_epochs_and_workers(tmp_path, num_workers):
    torch.manual_seed(0)
    dm = _one_sample_module(tmp_path, num_workers)
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch start
        flips = []
        for batch in loader:  # the same loader object, as Lightning keeps it (persistent workers)
            flips.append(bool(batch["mask"][0, 0, :, :6].sum() > batch["mask"][0, 0, :, 10:].sum()))
        epochs.append(flips)
    assert len(epochs[0]) == 24 and 0 < sum(epochs[0]) < 24
    assert epochs[0] != epochs[1]
    if num_workers:
        assert epochs[0][0::2] != epochs[0][1::2]  # batches alternate between the workers: their draws differ


def test_same_seed_same_draws(tmp_path):
    first = _flips(_one_sample_module(tmp_path, 0))
    second = _flips(_one_sample_module(tmp_path, 0))
    assert first == second and 0 < sum(first) < len(first)


def test_a_batch_depends_on_seed_and_epoch_only_not_on_workers(tmp_path):
    """What makes an interrupted run resume exactly: epoch e's batches are a function of (seed, e)."""
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=12, size=16, fg_per_bg=1)

    def epoch_batches(num_workers: int, epoch: int) -> list[dict]:
        dm = MaskDepthDataModule(path=str(path), image_size=16, batch_size=3, num_workers=num_workers,
                                 split=(1.0, 0.0, 0.0), augment=[A.HorizontalFlip(p=0.5)], seed=7)  # fmt: skip
        dm.setup()
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return list(loader)

    a, b, c = epoch_batches(0, 1), epoch_batches(2, 1), epoch_batches(0, 2)
    assert [x["id"] for x in a] == [x["id"] for x in b]
    assert all(
        torch.equal(x["fg_bg"], y["fg_bg"]) and torch.equal(x["mask"], y["mask"]) for x, y in zip(a, b, strict=True)
    )
    assert [x["id"] for x in a] != [x["id"] for x in c]


def test_crop_trains_on_windows_of_the_full_images_and_validates_on_whole_ones(tmp_path):
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=12, size=32, fg_per_bg=1)
    whole = MaskDepthDataModule(path=str(path), image_size=32, batch_size=4, num_workers=0, seed=3)
    cropped = MaskDepthDataModule(path=str(path), image_size=32, batch_size=4, num_workers=0, seed=3, crop=16)
    whole.setup(), cropped.setup()
    full, window = whole.datasets["train"][0], cropped.datasets["train"][0]
    assert window["fg_bg"].shape == (3, 16, 16) and full["fg_bg"].shape == (3, 32, 32)
    found = [  # the window is a piece of the full image at full detail, cut at the same place in all arrays
        (y, x)
        for y in range(17)
        for x in range(17)
        if torch.equal(full["fg_bg"][:, y : y + 16, x : x + 16], window["fg_bg"])
    ]
    assert len(found) == 1
    (y, x) = found[0]
    for key in ("bg", "mask", "depth"):
        assert torch.equal(full[key][:, y : y + 16, x : x + 16], window[key])
    assert next(iter(cropped.val_dataloader()))["fg_bg"].shape[-1] == 32
    with pytest.raises(ValueError, match=r"^data\.crop must be in \[1, data\.image_size=32\] or null, got 48$"):
        MaskDepthDataModule(path=str(path), image_size=32, crop=48)


def test_crop_is_taken_after_augmentations_that_resize(tmp_path):
    """`data/aug=strong` resizes half its samples back to image_size (RandomResizedCrop): the window comes last."""
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=12, size=SIZE, fg_per_bg=1)
    dm = MaskDepthDataModule(
        path=str(path), image_size=SIZE, batch_size=8, num_workers=0, seed=3, crop=16, augment=_augment("strong")
    )
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert {key: tuple(batch[key].shape[-2:]) for key in ("bg", "fg_bg", "mask", "depth")} == dict.fromkeys(
        ("bg", "fg_bg", "mask", "depth"), (16, 16)
    )


def test_each_transform_draws_its_own_numbers(tmp_path):
    """The default pair, a p=0.5 flip and a p=0.5 jitter, seeded per (seed, epoch, sample): all four combinations
    occur (seeding every transform alike made them fire together or not at all)."""
    path = write_canonical_zip(tmp_path / "d.zip", num_samples=4, size=16, fg_per_bg=1)
    flip, jitter = _augment("default")
    dm = MaskDepthDataModule(path=str(path), image_size=16, batch_size=1, num_workers=0, split=(1.0, 0.0, 0.0),
                             augment=[flip, jitter])  # fmt: skip
    dm.setup()
    data, seen = dm.datasets["train"], set()
    for index in range(len(data)):
        for epoch in range(16):
            data[(epoch, index)]
            seen.add((bool(flip.params), bool(jitter.params)))  # a transform's params are empty unless it ran
    assert seen == {(False, False), (False, True), (True, False), (True, True)}
    chained = build_augment([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=3)  # the unkeyed stream too
    image = np.arange(4, dtype=np.uint8).reshape(2, 2, 1).repeat(3, 2)
    outs = {apply(chained, image, image, *(np.zeros((2, 2), np.float32),) * 2, np.ones((2, 2), bool))["bg"][0, 0, 0]
            for _ in range(40)}  # fmt: skip
    assert outs == {0, 1, 2, 3}  # no flip, h only, v only, both
