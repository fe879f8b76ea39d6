"""Augmentation on the training device (`data.augment_on=gpu`): the loader yields uint8 batches, the device augments
and normalises them.

Loader side, `RawItems`: each sample as resized (from the resized cache): `bg`, `fg_bg` uint8 [S,S,3]; `mask` uint8
[S,S] in {0,1}; `depth` float32 [S,S] (0 where unknown); `valid` bool [S,S]; `id`; and `draws` float32 [K], K
uniform numbers in [0, 1) from the sample's (seed, epoch, index) seed (`sampler.sample_seed`), so what a sample
looks like in an epoch depends on neither the batch, the worker count, the number of devices nor the device.

Device side, `DeviceAugment` (called by the DataModule's `on_after_batch_transfer`): uint8 → float in [0, 1], the
steps of `data.augment` in order, each reading its share of the draws, then normalisation: the batch contract
(DESIGN.md, "Batch"). The steps mirror the albumentations transforms of `data.augment`, so one recipe serves both
values of `augment_on`: `HorizontalFlip`, `RandomBrightnessContrast`, `Affine` and `RandomCrop` (`data.crop`).
Geometry moves all five arrays with one draw per sample (bilinear for the images; nearest for mask, depth and
valid, so masks stay binary and depths real; pixels brought in from outside are 0 and unknown depth); photometry
changes bg and fg_bg with the same draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from kornia.geometry.transform import get_affine_matrix2d, warp_affine
from torch.utils.data import Dataset

from mdeas.data.dataset import MaskDepthDataset
from mdeas.data.normalisation import Normalisation
from mdeas.data.sampler import sample_seed

IMAGES = ("bg", "fg_bg")
PLANES = ("mask", "depth", "valid")


def _between(low_high: Sequence[float], u: torch.Tensor) -> torch.Tensor:
    """Uniform draws `u` in [0, 1) mapped onto [low, high)."""
    low, high = low_high
    return low + (high - low) * u


def _where(hit: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per sample: `new` where `hit` [B] is true, else `old` ([B, ...] each)."""
    return torch.where(hit.view(-1, *[1] * (old.dim() - 1)), new, old)


class Flip:
    """`A.HorizontalFlip`: with probability p, every array mirrored left-right. One draw."""

    draws = 1

    def __init__(self, t: A.HorizontalFlip) -> None:
        self.p = t.p

    def __call__(self, batch: dict[str, torch.Tensor], u: torch.Tensor) -> None:
        hit = u[:, 0] < self.p
        for key in (*IMAGES, *PLANES):
            batch[key] = _where(hit, batch[key].flip(-1), batch[key])


class BrightnessContrast:
    """`A.RandomBrightnessContrast` (brightness by max): with probability p, x·α + β on bg and fg_bg alike,
    α = 1 + contrast draw, β = brightness draw (fractions of the full range), clipped to [0, 1]. Three draws."""

    draws = 3

    def __init__(self, t: A.RandomBrightnessContrast) -> None:
        if not t.brightness_by_max or t.ensure_safe_range:
            raise ValueError(
                "RandomBrightnessContrast on the device needs brightness_by_max=true, ensure_safe_range=false"
            )
        self.p, self.brightness, self.contrast = t.p, t.brightness_limit, t.contrast_limit

    def __call__(self, batch: dict[str, torch.Tensor], u: torch.Tensor) -> None:
        hit = u[:, 0] < self.p
        alpha = (1 + _between(self.contrast, u[:, 1])).view(-1, 1, 1, 1)
        beta = _between(self.brightness, u[:, 2]).view(-1, 1, 1, 1)
        for key in IMAGES:
            batch[key] = _where(hit, (batch[key] * alpha + beta).clamp(0, 1), batch[key])


NO_SHIFT = {"x": (0, 0), "y": (0, 0)}


class Affine:
    """`A.Affine` with a constant 0 border: with probability p, translation (fractions of the size), scale (per
    axis unless keep_ratio) and rotation (degrees) about the centre. Six draws."""

    draws = 6

    def __init__(self, t: A.Affine) -> None:
        unsupported = {
            "translate_px": t.translate_px is not None and t.translate_px != NO_SHIFT,  # albumentations' default
            "shear": any(v != (0.0, 0.0) for v in t.shear.values()),
            "border_mode": t.border_mode != 0 or t.fill != 0 or t.fill_mask != 0,
            "fit_output": t.fit_output,
            "balanced_scale": t.balanced_scale,
            "interpolation": t.interpolation != 1 or t.mask_interpolation != 0,
        }
        if any(unsupported.values()):
            names = ", ".join(k for k, v in unsupported.items() if v)
            raise ValueError(f"Affine on the device supports translate_percent, scale, rotate and p, not {names}")
        self.p, self.keep_ratio = t.p, t.keep_ratio
        self.translate, self.scale, self.rotate = t.translate_percent or NO_SHIFT, t.scale, t.rotate

    def __call__(self, batch: dict[str, torch.Tensor], u: torch.Tensor) -> None:
        hit = u[:, 0] < self.p
        height, width = batch["fg_bg"].shape[-2:]
        # whole pixels, cut toward zero, as albumentations shifts (`int(fraction * side)`)
        tx = torch.trunc(_between(self.translate["x"], u[:, 1]) * width)
        ty = torch.trunc(_between(self.translate["y"], u[:, 2]) * height)
        sx = _between(self.scale["x"], u[:, 3])
        sy = sx if self.keep_ratio else _between(self.scale["y"], u[:, 4])
        centre = u.new_tensor([(width - 1) / 2, (height - 1) / 2]).expand(len(u), 2)
        angle = -_between(self.rotate, u[:, 5])  # albumentations turns positive angles the other way from kornia
        matrix = get_affine_matrix2d(torch.stack([tx, ty], dim=1), centre, torch.stack([sx, sy], dim=1), angle)
        size = (height, width)
        for key in IMAGES:
            warped = warp_affine(batch[key], matrix[:, :2], size, mode="bilinear", align_corners=True)
            batch[key] = _where(hit, warped, batch[key])
        for key in PLANES:
            plane = batch[key].float()
            warped = warp_affine(plane, matrix[:, :2], size, mode="nearest", align_corners=True).to(batch[key].dtype)
            batch[key] = _where(hit, warped, batch[key])


class Crop:
    """`A.RandomCrop` (also `data.crop`): a height × width window at a random place, the same for every array of
    a sample. Two draws."""

    draws = 2

    def __init__(self, t: A.RandomCrop) -> None:
        if t.pad_if_needed:
            raise ValueError("RandomCrop on the device does not pad (pad_if_needed=false)")
        self.height, self.width = t.height, t.width

    def __call__(self, batch: dict[str, torch.Tensor], u: torch.Tensor) -> None:
        height, width = batch["fg_bg"].shape[-2:]
        rows = (u[:, :1] * (height - self.height + 1)).long() + torch.arange(self.height, device=u.device)
        cols = (u[:, 1:] * (width - self.width + 1)).long() + torch.arange(self.width, device=u.device)
        sample = torch.arange(len(u), device=u.device)[:, None, None]
        for key in (*IMAGES, *PLANES):  # [B, h, w, C] by advanced indexing, back to [B, C, h, w]
            batch[key] = batch[key][sample, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


STEPS = {A.HorizontalFlip: Flip, A.RandomBrightnessContrast: BrightnessContrast, A.Affine: Affine, A.RandomCrop: Crop}


class DeviceAugment:
    """A raw batch (see `RawItems`) → the batch contract: `bg`, `fg_bg` float32 [B,3,H,W] normalised by `mean`,
    `std` (0-1 scale); `mask` float32 [B,1,H,W] in {0,1}; `depth` float32 [B,1,H,W]; `valid` bool [B,1,H,W]; other
    keys (`id`) kept. `augment`: albumentations transforms of the kinds in `STEPS`, applied in order."""

    def __init__(self, augment: Sequence[A.BasicTransform], mean: Sequence[float], std: Sequence[float]) -> None:
        unknown = sorted({type(t).__name__ for t in augment if type(t) not in STEPS})
        if unknown:
            known = ", ".join(t.__name__ for t in STEPS)
            raise ValueError(
                f"data.augment_on=gpu runs {known}; {', '.join(unknown)} has no device version: use "
                "data.augment_on=cpu or another data/aug"
            )
        self.steps = [STEPS[type(t)](t) for t in augment]
        self.draws = sum(step.draws for step in self.steps)
        self.normalisation = Normalisation(mean, std)

    def __call__(self, batch: dict) -> dict:
        draws = batch.pop("draws")
        out = {key: batch[key].permute(0, 3, 1, 2).float().div(255) for key in IMAGES}
        out |= {
            "mask": batch["mask"][:, None].float(),
            "depth": batch["depth"][:, None],
            "valid": batch["valid"][:, None],
        }
        start = 0
        for step in self.steps:
            step(out, draws[:, start : start + step.draws])
            start += step.draws
        self.normalisation.to(draws.device)  # once: its buffers stay on the batches' device
        for key in IMAGES:
            out[key] = self.normalisation(out[key]).contiguous()
        for key in PLANES:
            out[key] = out[key].contiguous()
        return batch | out


class RawItems(Dataset):
    """`dataset`'s samples as resized, neither augmented nor normalised, with `draws` uniform numbers each for a
    `DeviceAugment` (module docstring). Keys as `MaskDepthDataset`'s: an index or `(epoch, index)` (EpochSampler);
    a sample skipped under `on_error=skip` is None."""

    def __init__(self, dataset: MaskDepthDataset, draws: int, seed: int) -> None:
        self.dataset, self.draws, self.seed, self.name = dataset, draws, seed, dataset.name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        out = self.dataset.resized(index)
        if out is None:
            return None
        rng = np.random.default_rng(sample_seed(self.seed, epoch, index))
        return {
            "bg": torch.from_numpy(out["bg"]),
            "fg_bg": torch.from_numpy(out["fg_bg"]),
            "mask": torch.from_numpy(out["mask"].astype(np.uint8)),
            "depth": torch.from_numpy(out["depth"]),
            "valid": torch.from_numpy(out["valid"]),
            "id": self.dataset.samples[index].id,
            "draws": torch.from_numpy(rng.random(self.draws, dtype=np.float32)),
        }
