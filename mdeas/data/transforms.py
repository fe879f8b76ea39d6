"""Joint augmentation with albumentations: geometry shared by all four arrays, photometry on the inputs only.

`fg_bg` is the primary image and `bg` an additional image target, so every transform draws its parameters once
and applies them to both (the same flip, crop *and* colour jitter). `mask`, `depth` and `valid` are mask targets:
geometry only, with each transform's `mask_interpolation` (nearest by default: masks stay binary, depth values
stay real). Depth is carried as `depth · valid` next to `valid` and divided back afterwards, so even a linear
`mask_interpolation` only averages known depth, never the 0 of unknown pixels; pixels pushed in from outside the
image (constant border) become unknown.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

TARGETS = {"bg": "image", "depth": "mask", "valid": "mask"}


def build_resize(image_size: int) -> A.Compose:
    """Resize to `image_size`² pixels: area for the images, nearest for mask, depth and valid (the source pixel under
    each output pixel's centre, as area averaging centres it; OpenCV's INTER_NEAREST takes the one at its top-left
    corner, half a pixel off)."""
    resize = A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST_EXACT)
    return A.Compose([resize], additional_targets=TARGETS)


def build_augment(augmentations: Sequence[A.BasicTransform], seed: int) -> A.Compose | None:
    """`augmentations` in order as one joint transform (None when there are none), seeded by `seed_augment`."""
    if not augmentations:
        return None
    augment = A.Compose(list(augmentations), additional_targets=TARGETS)
    seed_augment(augment, seed)
    return augment


def seed_augment(augment: A.Compose, seed: int) -> None:
    """Seed `augment` with one random stream that its transforms draw from in turn.

    Not `Compose.set_random_seed`: that gives every transform its own generator started from the same seed, so all
    of them read the same numbers (a p=0.5 flip and a p=0.5 jitter would always fire together)."""
    augment.set_random_state(np.random.default_rng(seed), random.Random(seed))


def apply(
    transform: A.Compose, bg: np.ndarray, fg_bg: np.ndarray, mask: np.ndarray, depth: np.ndarray, valid: np.ndarray
) -> dict[str, np.ndarray]:
    """Run `transform` on one sample.

    In: bg, fg_bg uint8 [H, W, 3]; mask float32 {0, 1} [H, W]; depth float32 [H, W] (0 where unknown); valid bool
    [H, W]. Out (at the transform's size): bg, fg_bg uint8; mask float32 {0, 1}; depth float32 (0 where unknown);
    valid bool.
    """
    known = valid.astype(np.float32)
    out = transform(image=fg_bg, bg=bg, mask=mask, depth=depth * known, valid=known)
    weight = out["valid"]
    depth = np.where(weight > 0, out["depth"] / np.maximum(weight, 1e-6), 0.0).astype(np.float32)
    valid = weight >= 0.5
    return {
        "bg": out["bg"],
        "fg_bg": out["image"],
        "mask": (out["mask"] >= 0.5).astype(np.float32),
        "depth": np.where(valid, depth, 0.0).astype(np.float32),
        "valid": valid,
    }
