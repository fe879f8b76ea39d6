"""Joint augmentation with albumentations: geometry shared by all four arrays, photometry on the inputs only.

`fg_bg` is the primary image, `bg` an additional image target (same photometric draw), `mask` and `depth`
mask targets (geometry only; nearest interpolation keeps masks binary and depth values real).
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

TARGETS = {"bg": "image", "depth": "mask"}


def build_transform(image_size: int, augmentations: Sequence[A.BasicTransform] = (), seed: int | None = None):
    """Resize to `image_size`² (area for images, nearest for mask/depth), then `augmentations` in order."""
    resize = A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)
    return A.Compose([resize, *augmentations], additional_targets=TARGETS, seed=seed)


def apply(transform: A.Compose, bg: np.ndarray, fg_bg: np.ndarray, mask: np.ndarray, depth: np.ndarray) -> dict:
    """Run `transform` on one sample; returns arrays under the keys bg, fg_bg, mask, depth."""
    out = transform(image=fg_bg, bg=bg, mask=mask, depth=depth)
    return {"bg": out["bg"], "fg_bg": out["image"], "mask": out["mask"], "depth": out["depth"]}
