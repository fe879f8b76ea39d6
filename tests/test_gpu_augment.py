"""data.augment_on=gpu: uint8 train batches from the loader, augmented and normalised by the DataModule's
on_after_batch_transfer hook (here on the CPU: the hook runs wherever the batch was moved)."""

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.gpu_augment import DeviceAugment
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip

SIZE = 32
FLIP_JITTER = (A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5))


@pytest.fixture
def zip_path(tmp_path: Path) -> Path:
    return write_canonical_zip(tmp_path / "d.zip", num_samples=16, size=SIZE, fg_per_bg=2)


def datamodule(path: Path, augment=(), augment_on: str = "gpu", **kw) -> MaskDepthDataModule:
    kw = {"batch_size": 4, "seed": 0, **kw}
    dm = MaskDepthDataModule(path=str(path), image_size=SIZE, num_workers=0, augment=list(augment),
                             split=(0.5, 0.25, 0.25), augment_on=augment_on, **kw)  # fmt: skip
    dm.setup()
    return dm


def batches(dm: MaskDepthDataModule, split: str = "train") -> list[dict]:
    """The loader's batches as the model gets them: through the transfer hook."""
    loader = getattr(dm, f"{split}_dataloader")()
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def test_the_loader_yields_uint8_and_the_hook_restores_the_batch_contract(zip_path):
    raw = next(iter(datamodule(zip_path, FLIP_JITTER).train_dataloader()))
    assert raw["bg"].dtype == torch.uint8 and raw["bg"].shape == (4, SIZE, SIZE, 3)
    assert raw["mask"].dtype == torch.uint8 and raw["draws"].shape == (4, 4)  # flip 1 + brightness/contrast 3
    gpu = batches(datamodule(zip_path, FLIP_JITTER))[0]
    cpu = batches(datamodule(zip_path, FLIP_JITTER, augment_on="cpu"))[0]
    assert gpu.keys() == cpu.keys() == {"bg", "fg_bg", "mask", "depth", "valid", "id"}
    for key in ("bg", "fg_bg", "mask", "depth", "valid"):
        assert (gpu[key].dtype, gpu[key].shape) == (cpu[key].dtype, cpu[key].shape), key
        assert gpu[key].is_contiguous()
    assert gpu["id"] == cpu["id"]  # the same samples in the same order
    assert set(gpu["mask"].unique().tolist()) <= {0.0, 1.0}


def test_without_augmentation_both_modes_give_the_same_batches(zip_path):
    for gpu, cpu in zip(batches(datamodule(zip_path)), batches(datamodule(zip_path, augment_on="cpu")), strict=True):
        for key in ("mask", "depth", "valid"):
            assert torch.equal(gpu[key], cpu[key]), key
        for key in ("bg", "fg_bg"):
            assert torch.allclose(gpu[key], cpu[key], atol=1e-5), key


def test_a_flip_moves_images_mask_depth_and_valid_together(zip_path):
    plain = batches(datamodule(zip_path))[0]
    flipped = batches(datamodule(zip_path, [A.HorizontalFlip(p=1.0)]))[0]
    for key in ("mask", "depth", "valid"):
        assert torch.equal(flipped[key], plain[key].flip(-1)), key
    for key in ("bg", "fg_bg"):
        assert torch.allclose(flipped[key], plain[key].flip(-1), atol=1e-6), key
    assert not torch.equal(flipped["mask"], plain["mask"])  # the square is off-centre: the flip shows


def _square_batch(count: int = 16) -> dict:
    """Raw batch: bg == fg_bg, dark texture with a bright square; mask == valid == the square; depth varies."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
    square = np.zeros((SIZE, SIZE), bool)
    square[8:20, 10:24] = True
    image[square] = 250
    depth = np.where(square, np.linspace(0.3, 0.6, SIZE, dtype=np.float32)[None, :], 0).astype(np.float32)
    stack = lambda a: torch.from_numpy(np.stack([a] * count))  # noqa: E731
    return {"bg": stack(image), "fg_bg": stack(image), "mask": stack(square.astype(np.uint8)), "depth": stack(depth),
            "valid": stack(square), "id": [str(i) for i in range(count)],
            "draws": torch.from_numpy(rng.random((count, 9), dtype=np.float32))}  # fmt: skip


def test_affine_and_photometry_share_one_draw_across_the_arrays():
    affine = A.Affine(translate_percent=(-0.1, 0.1), scale=(0.8, 1.2), rotate=(-20, 20), border_mode=0, fill=0,
                      fill_mask=0, mask_interpolation=0, p=1.0)  # fmt: skip
    jitter = A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=1.0)
    raw = _square_batch()
    known = set(raw["depth"][0][raw["valid"][0]].tolist())
    out = DeviceAugment([affine, jitter], mean=(0.5,) * 3, std=(0.25,) * 3)(raw)
    assert torch.equal(out["bg"], out["fg_bg"])  # same geometry and the same photometric draw
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out["mask"].bool(), out["valid"])  # nearest for both: they stay identical
    assert (out["depth"][~out["valid"]] == 0).all() and set(out["depth"][out["valid"]].tolist()) <= known
    bright = out["fg_bg"].mean(1, keepdim=True) > out["fg_bg"].mean((1, 2, 3), keepdim=True)
    iou = (bright & out["valid"]).sum((1, 2, 3)) / (bright | out["valid"]).sum((1, 2, 3))
    assert (iou > 0.8).all()  # the bright square is where the mask is, up to its interpolated edge
    moved = [not torch.equal(m.bool(), raw["valid"][0][None]) for m in out["mask"]]
    assert sum(moved) >= 12  # the geometry really changed, differently per sample
    assert len({round(float(x.mean()), 4) for x in out["fg_bg"]}) > 8  # photometry drawn per sample


@pytest.mark.parametrize(("shift", "scale", "angle"), [((0.125, -0.25), 1.0, 0.0), ((0.0, 0.0), 1.2, 20.0),
                                                       ((0.125, 0.0), 0.9, -15.0), (None, 1.1, 10.0),
                                                       ((0.03, -0.03), 1.0, 0.0)])  # fmt: skip
def test_affine_on_the_device_matches_albumentations(shift, scale, angle):
    """One fixed transform on 8 px blocks; a shift of 1.92 px moves both by 1 (cut toward zero); shift None: no
    translation given (albumentations then sets translate_px to zeros)."""
    size = 64
    image = np.kron(np.random.default_rng(0).integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[10:40, 20:30] = mask[30:35, 5:60] = 1
    fixed = {"x": (shift[0],) * 2, "y": (shift[1],) * 2} if shift else None
    affine = A.Affine(translate_percent=fixed, scale=(scale, scale), rotate=(angle, angle), border_mode=0, fill=0,
                      fill_mask=0, mask_interpolation=0, p=1.0)  # fmt: skip
    expected = A.Compose([affine])(image=image, mask=mask)
    one = lambda a: torch.from_numpy(np.asarray(a))[None]  # noqa: E731
    raw = {"bg": one(image), "fg_bg": one(image), "mask": one(mask), "depth": one(np.ones((size, size), np.float32)),
           "valid": one(np.ones((size, size), bool)), "id": ["0"], "draws": torch.zeros(1, 6)}  # fmt: skip
    out = DeviceAugment([affine], mean=(0.0,) * 3, std=(1.0,) * 3)(raw)
    assert (out["mask"][0, 0].numpy() == expected["mask"]).mean() > 0.995
    assert np.abs(out["fg_bg"][0].permute(1, 2, 0).numpy() * 255 - expected["image"]).mean() < 1.0


def test_a_crop_takes_the_same_window_of_every_array(zip_path):
    plain = batches(datamodule(zip_path))[0]
    dm = datamodule(zip_path, crop=20)
    raw = next(iter(dm.train_dataloader()))
    draws = raw["draws"].clone()
    cropped = dm.on_after_batch_transfer(raw, 0)
    assert cropped["fg_bg"].shape == (4, 3, 20, 20)
    for i, (top, left) in enumerate((draws * (SIZE - 20 + 1)).long().tolist()):
        window = (..., slice(top, top + 20), slice(left, left + 20))
        assert torch.equal(cropped["mask"][i], plain["mask"][i][window])
        assert torch.allclose(cropped["fg_bg"][i], plain["fg_bg"][i][window], atol=1e-5)


def test_augmentation_is_seeded_per_sample_whatever_the_batch_size(zip_path):
    first = batches(datamodule(zip_path, FLIP_JITTER))
    again = batches(datamodule(zip_path, FLIP_JITTER))
    pairs = batches(datamodule(zip_path, FLIP_JITTER, batch_size=2))
    other = batches(datamodule(zip_path, FLIP_JITTER, seed=1))
    for key in ("bg", "mask"):
        whole = torch.cat([b[key] for b in first])
        assert torch.equal(whole, torch.cat([b[key] for b in again]))
        assert torch.equal(whole, torch.cat([b[key] for b in pairs]))
    # sample by sample (the seed also reorders and re-splits): augmented, and drawn anew under another seed
    seeded, plain, reseeded = (by_id(b, "bg") for b in (first, batches(datamodule(zip_path)), other))
    assert seeded.keys() == plain.keys() and sum(not torch.equal(seeded[i], plain[i]) for i in seeded) >= 2
    common = seeded.keys() & reseeded.keys()
    assert len(common) >= 2 and any(not torch.equal(seeded[i], reseeded[i]) for i in common)


def by_id(batches: list[dict], key: str) -> dict[str, torch.Tensor]:
    """{sample id: its `key` tensor} over `batches`."""
    return {sample: batch[key][k] for batch in batches for k, sample in enumerate(batch["id"])}


def test_validation_batches_are_normalised_but_not_augmented(zip_path):
    gpu = batches(datamodule(zip_path, [A.HorizontalFlip(p=1.0)]), "val")
    cpu = batches(datamodule(zip_path, augment_on="cpu"), "val")
    assert gpu and all(b["bg"].dtype == torch.float32 for b in gpu)
    for a, b in zip(gpu, cpu, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("bg", "fg_bg", "mask", "depth", "valid"))


def test_brightness_contrast_matches_albumentations_and_its_probability():
    """Fixed limits (contrast +0.1, brightness +0.1 of the full range): x·1.1 + 0.1, clipped; a draw at or above p
    leaves the sample alone."""
    jitter = A.RandomBrightnessContrast(brightness_limit=(0.1, 0.1), contrast_limit=(0.1, 0.1), p=0.5)
    image = np.array([[[0, 128, 255], [10, 200, 60]]], np.uint8)  # [1, 2, 3]
    expected = A.Compose([A.RandomBrightnessContrast(brightness_limit=(0.1, 0.1), contrast_limit=(0.1, 0.1), p=1)])
    expected = expected(image=image)["image"].astype(np.float32) / 255
    one = lambda a: torch.from_numpy(np.stack([a, a]))  # noqa: E731
    raw = {"bg": one(image), "fg_bg": one(image), "mask": one(np.zeros((1, 2), np.uint8)),
           "depth": one(np.ones((1, 2), np.float32)), "valid": one(np.ones((1, 2), bool)), "id": ["0", "1"],
           "draws": torch.tensor([[0.2, 0.7, 0.3], [0.6, 0.7, 0.3]])}  # fmt: skip
    out = DeviceAugment([jitter], mean=(0.0,) * 3, std=(1.0,) * 3)(raw)
    assert out["fg_bg"][0, :, 0, 0].tolist() == pytest.approx([0.1, 128 / 255 * 1.1 + 0.1, 1.0])  # 255 clipped
    assert np.abs(out["fg_bg"][0].permute(1, 2, 0).numpy() - expected).max() <= 1 / 255  # albumentations rounds
    assert torch.equal(out["bg"], out["fg_bg"])
    assert torch.allclose(out["fg_bg"][1], torch.from_numpy(image).permute(2, 0, 1) / 255)  # 0.6 ≥ p: unchanged


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (A.RandomBrightnessContrast(brightness_by_max=False), "needs brightness_by_max=true"),
        (A.RandomBrightnessContrast(ensure_safe_range=True), "ensure_safe_range=false"),
        (A.Affine(shear=10, border_mode=0), "translate_percent, scale, rotate and p, not shear"),
        (A.Affine(border_mode=1), "not border_mode"),
        (A.RandomCrop(16, 16, pad_if_needed=True), "does not pad"),
    ],
)
def test_device_steps_refuse_options_they_do_not_reproduce(transform, message):
    with pytest.raises(ValueError, match=message):
        DeviceAugment([transform], mean=(0.5,) * 3, std=(0.25,) * 3)


def test_a_transform_without_a_device_version_is_named():
    with pytest.raises(ValueError, match=r"GaussNoise has no device version: use data.augment_on=cpu"):
        DeviceAugment([A.HorizontalFlip(), A.GaussNoise()], mean=(0.5,) * 3, std=(0.25,) * 3)
    with pytest.raises(ValueError, match=r"augment_on must be one of"):
        MaskDepthDataModule(path="x.zip", augment_on="tpu")


class TrainBatches(pl.Callback):
    """Keeps a copy of each batch the training step receives (after the batch transfer hooks)."""

    seen: list[dict[str, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        TrainBatches.seen.append({k: v.detach().clone() for k, v in batch.items() if torch.is_tensor(v)})


def test_training_runs_with_augment_on_gpu(tmp_path, zip_path, one_thread):
    """The loader's uint8 batch reaches the step as the CPU path's would: float, normalised, cropped, a 0/1 mask."""
    TrainBatches.seen.clear()
    record = "+callbacks.record={_target_: tests.test_gpu_augment.TrainBatches}"
    results = train(compose_train(tmp_path / "run", zip_path, "data.augment_on=gpu", "data.crop=16",
                                  "+trainer.fast_dev_run=true", "callbacks.image_grid=null", record))  # fmt: skip
    assert {"val/mask/iou", "val/score"} <= set(results["val"]), results["val"]  # validation ran
    assert all(np.isfinite(v) for v in results["val"].values())
    (batch,) = TrainBatches.seen
    for key in ("bg", "fg_bg"):
        assert batch[key].dtype == torch.float32 and batch[key].shape == (4, 3, 16, 16), key
        assert batch[key].min() < 0 < batch[key].max(), key  # normalised by the data's mean and std, not 0-255
    assert batch["mask"].shape == (4, 1, 16, 16) and set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert batch["depth"].dtype == torch.float32 and 0 <= batch["depth"].min() <= batch["depth"].max() <= 1
