"""Dataset: decode one sample from the zip, augment jointly, normalise into the batch contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from mdeas.data.decode import binarise, decode_depth, decode_grey, decode_rgb
from mdeas.data.errors import DataError
from mdeas.data.layouts import DatasetIndex, Sample
from mdeas.data.sampler import sample_seed
from mdeas.data.transforms import apply

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SKIPPED = "skipped"  # collate's count of left-out samples; the loader removes it from the batch
ON_ERROR = ("raise", "skip")


def _read(index: DatasetIndex, key: str, decode: Callable, *args: Any) -> Any:
    store = index.store
    return decode(store.read(key), str(store.source(key)), store.name(key), *args)


def load_sample(index: DatasetIndex, sample: Sample) -> dict[str, np.ndarray]:
    """Decode one sample at its stored size.

    Returns bg, fg_bg: uint8 [H, W, 3]; mask: uint8 [H, W] grey as stored (0-255, not thresholded); depth: float32
    [H, W] normalised to [0, 1], larger = farther, 0 where unknown; valid: bool [H, W]. Raises DataError naming the
    entry when one cannot be read or decoded, has the wrong bit depth, or differs in size from fg_bg.
    """
    fg_bg = _read(index, sample.fg_bg, decode_rgb)
    bg = _read(index, sample.bg, decode_rgb)
    mask = _read(index, sample.mask, decode_grey)
    if sample.depth:
        depth, valid = _read(index, sample.depth, decode_depth, index.depth)
    else:
        depth, valid = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, bool)
    store = index.store
    for key, array in ((sample.bg, bg), (sample.mask, mask), (sample.depth, depth)):
        if array.shape[:2] != fg_bg.shape[:2]:
            height, width = array.shape[:2]
            raise DataError(
                store.source(key),
                store.name(key),
                f"size {width}x{height} differs from {store.name(sample.fg_bg)} ({fg_bg.shape[1]}x{fg_bg.shape[0]})",
                "size",
            )
    return {"bg": bg, "fg_bg": fg_bg, "mask": mask, "depth": depth, "valid": valid}


class MaskDepthDataset(Dataset):
    """Items: `bg`, `fg_bg` float32 [3,S,S] normalised; `mask` float32 [1,S,S] in {0,1}; `depth` float32
    [1,S,S] in [0,1] (see `load_sample`; larger = farther); `valid` bool [1,S,S]; `id` str.

    `name` labels it in logs (the split). `on_error="skip"` returns None for a sample that raises DataError
    (`collate_skipping` leaves it out and counts it); `"raise"` lets the DataError through.
    """

    def __init__(
        self,
        index: DatasetIndex,
        samples: Sequence[Sample],
        transform,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        on_error: str = "raise",
        name: str = "data",
        seed: int = 0,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"data.on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.index = index
        self.samples = list(samples)
        self.transform = transform
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0
        self.on_error, self.name, self.seed = on_error, name, seed

    def __len__(self) -> int:
        return len(self.samples)

    def _normalise(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((image.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1).copy())

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised [..., 3, H, W] → RGB in [0, 1]."""
        mean = torch.as_tensor(self.mean / 255.0, device=images.device).view(3, 1, 1)
        std = torch.as_tensor(self.std / 255.0, device=images.device).view(3, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """`key`: an index, or `(epoch, index)` from EpochSampler (augmentation seeded by seed, epoch, index)."""
        if isinstance(key, tuple):
            epoch, key = key
            self.transform.set_random_seed(sample_seed(self.seed, epoch, key))
        s = self.samples[key]
        try:
            raw = load_sample(self.index, s)
        except DataError:
            if self.on_error == "skip":
                return None
            raise
        out = apply(self.transform, raw["bg"], raw["fg_bg"], binarise(raw["mask"]), raw["depth"], raw["valid"])
        return {
            "bg": self._normalise(out["bg"]),
            "fg_bg": self._normalise(out["fg_bg"]),
            "mask": torch.from_numpy(out["mask"])[None],
            "depth": torch.from_numpy(out["depth"])[None],
            "valid": torch.from_numpy(out["valid"])[None],
            "id": s.id,
        }


def collate_skipping(items: list[dict | None]) -> dict:
    """Collate the items that are not None; `batch[SKIPPED]` counts the others (the batch is then only that)."""
    kept = [item for item in items if item is not None]
    batch = default_collate(kept) if kept else {}
    batch[SKIPPED] = len(items) - len(kept)
    return batch


def dataset_paths(path: Any) -> str | list[str]:
    """A CLI's `path=` value (one zip or a list) as plain strings; exits with a usage line when it is missing."""
    if not path:
        raise SystemExit("error: give the dataset: path=ZIP or 'path=[A.zip,B.zip]'")
    return str(path) if isinstance(path, str) else [str(p) for p in path]


def _as_is(item: Any) -> Any:
    return item


def scan(dataset: Dataset, num_workers: int, desc: str) -> Iterator[Any]:
    """Yield `dataset[i]` for every i, in order, computed in `num_workers` processes, with a progress bar."""
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    yield from tqdm(loader, desc=desc, unit="sample", total=len(dataset), dynamic_ncols=True)
