"""Dataset: decode one sample from the zip, augment jointly, normalise into the batch contract."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mdeas.data.decode import decode_depth_png16, decode_mask, decode_rgb
from mdeas.data.errors import DataError
from mdeas.data.layouts import DatasetIndex, Sample
from mdeas.data.transforms import apply

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MaskDepthDataset(Dataset):
    """Items: `bg`, `fg_bg` float32 [3,S,S] normalised; `mask` float32 [1,S,S] in {0,1}; `depth` float32
    [1,S,S] in [0,1] (stored value / encoding max, larger = farther); `valid` bool [1,S,S]; `id` str."""

    def __init__(
        self,
        index: DatasetIndex,
        samples: Sequence[Sample],
        transform,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.index = index
        self.samples = list(samples)
        self.transform = transform
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, entry: str, decode) -> np.ndarray:
        store = self.index.store
        return decode(store.read(entry), str(store.source(entry)), entry)

    def _normalise(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((image.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1).copy())

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised [..., 3, H, W] → RGB in [0, 1]."""
        mean = torch.as_tensor(self.mean / 255.0, device=images.device).view(3, 1, 1)
        std = torch.as_tensor(self.std / 255.0, device=images.device).view(3, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        bg, fg_bg = self._read(s.bg, decode_rgb), self._read(s.fg_bg, decode_rgb)
        mask = self._read(s.mask, decode_mask)
        depth = self._read(s.depth, decode_depth_png16) if s.depth else np.zeros(mask.shape, np.float32)
        for entry, array in ((s.bg, bg), (s.mask, mask), (s.depth, depth)):
            if array.shape[:2] != fg_bg.shape[:2]:
                raise DataError(
                    self.index.store.source(s.fg_bg),
                    entry,
                    f"size {array.shape[1]}x{array.shape[0]} differs from {s.fg_bg} "
                    f"({fg_bg.shape[1]}x{fg_bg.shape[0]})",
                )
        out = apply(self.transform, bg, fg_bg, mask, depth)
        depth = torch.from_numpy(np.ascontiguousarray(out["depth"], np.float32))[None]
        return {
            "bg": self._normalise(out["bg"]),
            "fg_bg": self._normalise(out["fg_bg"]),
            "mask": torch.from_numpy(np.ascontiguousarray(out["mask"], np.float32))[None],
            "depth": (depth / self.index.depth.max).clamp_(0, 1),
            "valid": depth > 0,
            "id": s.id,
        }
