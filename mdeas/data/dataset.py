"""Dataset: decode one sample from the zip, augment jointly, normalise into the batch contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from mdeas.config_values import digits_hint, named
from mdeas.data.decode import binarise, open_image, reduction, to_depth, to_mask, to_rgb
from mdeas.data.errors import DataError
from mdeas.data.layouts import DatasetIndex, Sample
from mdeas.data.normalisation import IMAGENET_MEAN, IMAGENET_STD, Normalisation
from mdeas.data.sampler import sample_seed
from mdeas.data.transforms import apply, build_resize, seed_augment

SKIPPED = "skipped"  # collate's count of left-out samples; the loader removes it from the batch
ON_ERROR = ("raise", "skip")


def load_sample(index: DatasetIndex, sample: Sample, target_size: int | None = None) -> dict[str, np.ndarray]:
    """Decode one sample at its stored size or, with `target_size`, reduced by the largest of 2, 4, 8 that keeps
    its sides at least `target_size` (`decode.reduction`: faster when training much smaller than stored).

    Returns bg, fg_bg: uint8 [H, W, 3]; mask: uint8 [H, W] grey as stored (0-255, not thresholded); depth: float32
    [H, W] normalised to [0, 1], larger = farther, 0 where unknown; valid: bool [H, W]. Raises DataError naming the
    entry when one cannot be read or decoded, has the wrong bit depth, or differs in stored size from fg_bg.
    """
    store = index.store
    keys = {"fg_bg": sample.fg_bg, "bg": sample.bg, "mask": sample.mask, "depth": sample.depth}
    images = {kind: open_image(store.read(k), str(store.source(k)), store.name(k)) for kind, k in keys.items() if k}
    fg_bg = images["fg_bg"]
    for kind, image in images.items():
        if image.size != fg_bg.size:
            problem = (
                f"size {image.size[0]}x{image.size[1]} differs from {fg_bg.entry} ({fg_bg.size[0]}x{fg_bg.size[1]})"
            )
            raise DataError(store.source(keys[kind]), image.entry, problem, "size")
    scale = reduction(fg_bg.size, target_size)
    mask = to_mask(images["mask"], scale)
    if sample.depth:
        depth, valid = to_depth(images["depth"], index.depth, scale)
    else:
        depth, valid = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, bool)
    return {
        "bg": to_rgb(images["bg"], scale),
        "fg_bg": to_rgb(fg_bg, scale),
        "mask": mask,
        "depth": depth,
        "valid": valid,
    }


class MaskDepthDataset(Dataset):
    """Items: `bg`, `fg_bg` float32 [3,S,S] normalised; `mask` float32 [1,S,S] in {0,1}; `depth` float32
    [1,S,S] in [0,1] (see `load_sample`; larger = farther); `valid` bool [1,S,S]; `id` str. S = `image_size`.

    Each sample is decoded (reduced when S allows, see `load_sample`) and resized to S (`resized`), or read
    resized from `cache` (`mdeas.data.resized_cache`: the same arrays), then augmented by `augment` (an
    `A.Compose` from `transforms.build_augment`, or None). `name` labels it in logs (the split).
    `on_error="skip"` returns None for a sample that raises DataError (`collate_skipping` leaves it out and counts
    it); `"raise"` lets the DataError through.
    """

    def __init__(
        self,
        index: DatasetIndex,
        samples: Sequence[Sample],
        image_size: int,
        augment: A.Compose | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        on_error: str = "raise",
        name: str = "data",
        seed: int = 0,
    ) -> None:
        check_on_error(on_error)
        self.index = index
        self.samples = list(samples)
        self.image_size, self.resize, self.augment = image_size, build_resize(image_size), augment
        self.decode_size: int | None = image_size  # decoding may reduce down to this; None: at the stored size
        self.cache: Sequence[dict[str, np.ndarray] | None] | None = None  # a ResizedCache
        self.normalisation = Normalisation(mean, std)
        self.on_error, self.name, self.seed = on_error, name, seed

    def __len__(self) -> int:
        return len(self.samples)

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB [..., 3, H, W] in [0, 1] → float32 normalised as the items are (the inverse of `denormalise`)."""
        return self.normalisation(rgb)

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised [..., 3, H, W] → RGB in [0, 1]."""
        return self.normalisation.invert(images)

    def resized(self, key: int) -> dict[str, np.ndarray] | None:
        """Sample `key` resized to S, not augmented: bg, fg_bg uint8 [S,S,3]; mask float32 {0,1} [S,S]; depth
        float32 [S,S] (0 where unknown); valid bool [S,S]. None when skipped (`on_error="skip"`)."""
        if self.cache is not None:
            return self.cache[key]
        try:
            raw = load_sample(self.index, self.samples[key], self.decode_size)
        except DataError:
            if self.on_error == "skip":
                return None
            raise
        return apply(self.resize, raw["bg"], raw["fg_bg"], binarise(raw["mask"]), raw["depth"], raw["valid"])

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """`key`: an index, or `(epoch, index)` from EpochSampler (augmentation seeded by seed, epoch, index)."""
        if isinstance(key, tuple):
            epoch, key = key
            if self.augment is not None:
                seed_augment(self.augment, sample_seed(self.seed, epoch, key))
        out = self.resized(key)
        if out is None:
            return None
        if self.augment is not None:
            out = apply(self.augment, **out)
        return {
            "bg": self.normalisation.from_uint8(out["bg"]),
            "fg_bg": self.normalisation.from_uint8(out["fg_bg"]),
            "mask": torch.from_numpy(out["mask"])[None],
            "depth": torch.from_numpy(out["depth"])[None],
            "valid": torch.from_numpy(out["valid"])[None],
            "id": self.samples[key].id,
        }


def check_on_error(on_error: str) -> None:
    """ValueError unless `on_error` is one of ON_ERROR (`raise`, `skip`)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"data.on_error must be one of {ON_ERROR}, got {on_error!r}")


def collate_skipping(items: list[dict | None]) -> dict:
    """Collate the items that are not None; `batch[SKIPPED]` counts the others (the batch is then only that)."""
    kept = [item for item in items if item is not None]
    batch = default_collate(kept) if kept else {}
    batch[SKIPPED] = len(items) - len(kept)
    return batch


def dataset_paths(path: Any) -> str | list[str]:
    """A `path=` value (one zip or a list) as plain strings; ValueError saying how to give one when it is missing."""
    if not path:
        raise ValueError("give the dataset: path=ZIP or 'path=[A.zip,B.zip]'")
    checked_path(path, "path")
    return str(path) if isinstance(path, str) else [str(p) for p in path]


def checked_path(path: Any, key: str = "data.path") -> Any:
    """`path` when it is None, a zip or a non-empty list of them; else a ValueError naming `key` (`data.path=[]`
    would read as no path, and a name made of digits arrives as a number)."""
    if path is not None and not named(path):
        raise ValueError(f"{key} must be a zip or a list of zips, got {path!r}{digits_hint(path, key)}")
    return path


def _as_is(item: Any) -> Any:
    return item


def scan(dataset: Dataset, num_workers: int, desc: str) -> Iterator[Any]:
    """Yield `dataset[i]` for every i, in order, computed in `num_workers` processes, with a progress bar. Leaves
    torch's global random state as it was (a scan during setup must not change a seeded run)."""
    private = torch.Generator()  # DataLoader draws its workers' base seed: never from the global generator
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is, generator=private)
    yield from tqdm(loader, desc=desc, unit="sample", total=len(dataset), dynamic_ncols=True)
