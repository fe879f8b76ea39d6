"""The input normalisation: RGB on the 0–1 scale → (rgb − mean) / std per channel, and back. One object for the
data pipeline (CPU and device augmentation), inference and the exported graph, so all feed a model the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalisation(nn.Module):
    """`mean`, `std`: 3 values each on the 0–1 scale. Held as buffers (float32 [3, 1, 1]), so an exported graph
    carries them; a tensor on another device gets copies on its own (none recorded when tracing on one device)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        levels = np.arange(256, dtype=np.float32)
        means, stds = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self._tables = [(levels - m * 255.0) / (s * 255.0) for m, s in zip(means, stds, strict=True)]

    def _on(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) on `like`'s device."""
        if self.mean.device == like.device:
            return self.mean, self.std
        return self.mean.to(like.device), self.std.to(like.device)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB [..., 3, H, W] in [0, 1] → float32 normalised (the inverse of `invert`)."""
        mean, std = self._on(rgb)
        return (rgb.float() - mean) / std

    def invert(self, normalised: torch.Tensor) -> torch.Tensor:
        """Normalised [..., 3, H, W] → float32 RGB in [0, 1]."""
        mean, std = self._on(normalised)
        return (normalised.float() * std + mean).clamp(0, 1)

    def from_uint8(self, image: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] → float32 [3, H, W] normalised, through one 256-entry table per channel: the numbers of
        `forward` on image / 255 (to float rounding), several times faster. ValueError for another array."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
            raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {list(image.shape)}")
        planes = cv2.split(np.ascontiguousarray(image))
        return torch.from_numpy(
            np.stack([cv2.LUT(plane, table) for plane, table in zip(planes, self._tables, strict=True)])
        )

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
