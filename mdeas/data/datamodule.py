"""LightningDataModule: locate (or generate) the dataset zip(s), index, split, and serve batches.

`on_error="raise"` (default): the first bad sample stops training with a DataError naming the zip and entry
(also from DataLoader workers, see `DataError`). `on_error="skip"`: samples whose entries are missing are left out
when indexing (counted in the log), and a sample that fails to decode is left out of its batch (a training batch
left empty is replaced by a neighbour, `SkipCountingLoader`); each loader logs a warning with the number skipped at
the end of every pass over its split.

`augment_on="gpu"`: the train loader yields uint8 batches (bg, fg_bg [B,S,S,3] as resized, with per-sample random
draws) and `on_after_batch_transfer` augments and normalises them on the training device (`mdeas.data.gpu_augment`);
validation and test loaders are the same in both modes (normalised on the CPU, never augmented), so `evaluate`,
which reads them without a trainer, is unaffected.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import albumentations as A
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from mdeas.config_values import file_name, flag, numbers, whole_number, worker_count
from mdeas.data.dataset import (
    SKIPPED,
    MaskDepthDataset,
    check_on_error,
    checked_path,
    collate_skipping,
    dataset_paths,
)
from mdeas.data.errors import DataError
from mdeas.data.gpu_augment import DeviceAugment, RawItems
from mdeas.data.layouts import DatasetIndex, load_index
from mdeas.data.normalisation import IMAGENET_MEAN, IMAGENET_STD
from mdeas.data.resized_cache import resized_cache
from mdeas.data.sampler import EpochSampler
from mdeas.data.splits import check_limit, groups_dealt, limited, split
from mdeas.data.transforms import build_augment

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
AUGMENT_ON = ("cpu", "gpu")


class SkipCountingLoader(DataLoader):
    """A DataLoader that removes `collate_skipping`'s count from each batch; the number skipped in a pass is kept in
    `.skipped` and logged with the last batch of a full pass (Lightning stops asking for batches once it has had
    `len(loader)`, so the count cannot wait for the iterator's end).

    A batch whose every sample was bad is dropped, except with `refill` (the training loader): there the previous
    batch (or, at the start, the next one) is served in its place, because Lightning validates only after
    `len(loader)` training batches and would end the epoch without validating it.
    """

    skipped = 0
    refill = False
    progress: Callable[[], Any] | None = None  # the training loop's batch counts of this epoch (Lightning's)

    def state_dict(self) -> dict[str, int]:
        """Lightning's protocol of a resumable loader (so a checkpoint taken mid-epoch, e.g. on Ctrl-C, is known to
        resume exactly): the batches of this epoch that went through a training step, for the record."""
        return {"stepped": self.progress().processed if self.progress is not None else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to load: a pass reads where to start from the restored training loop (`progress`), because
        Lightning builds and restores a loader before its loop's state when the schedule asks for the run's
        length (`total_steps: auto`)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        resumed = self.progress().completed if self.progress is not None else 0  # > 0: a run resumed mid-epoch
        if resumed:
            self.sampler.start = resumed * self.batch_size  # the same order, from the next batch
        self.skipped, last, owed, previous = 0, len(self) - resumed, 0, None
        for n, batch in enumerate(super().__iter__(), start=1):
            self.skipped += batch.pop(SKIPPED)
            if n == last and self.skipped:
                name = getattr(self.dataset, "name", "data")
                log.warning("%s: skipped %d bad samples in this pass (data.on_error=skip)", name, self.skipped)
            if not batch:
                if self.refill and previous is not None:
                    yield dict(previous)
                owed += self.refill and previous is None
                continue
            for _ in range(owed + 1):
                yield dict(batch)
            owed, previous = 0, batch


def start_worker(worker_id: int, rank: int = 0) -> None:
    """A loader worker's start: it leaves Ctrl-C to the main process, which stops training after the batch under
    way and needs its workers for that; then Lightning's worker seeding, when `seed_everything(workers=True)` asked
    for it, as for process `rank` (Lightning adds its own only to a loader that has none)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank)


class MaskDepthDataModule(pl.LightningDataModule):
    """Serves batch dicts (DESIGN.md) from `path` (one zip or a list) or, when None, from the zip that `synth`
    returns for `cache_dir` (a generated set, `mdeas.synth.default_set.GeneratedSet`, built by Hydra from `data.synth`).

    `layout` forces a layout (`mdeas.data.layouts.READERS`; None detects it); `depth_inverted` overrides the
    layout's default (larger stored depth = nearer); `on_error` is `raise` or `skip` (module docstring).
    `crop`: train on random `crop`² windows of the `image_size` images (drawn jointly for the four arrays, after
    `augment`), so the model learns at the full detail of `image_size` for the cost of `crop`; validation and test
    see whole images (any fully convolutional model runs at either size). None: whole images.
    `cache_resized`: decode and resize each split once into a per-size cache under `cache_dir`, then read it
    (`mdeas.data.resized_cache`; skipped with a warning above `cache_max_gb`).
    `augment_on`: `cpu` augments and normalises in the loader's workers; `gpu` on the device the batch is moved to
    (module docstring; `augment` then holds only transforms with a device version, `gpu_augment.STEPS`).
    """

    def __init__(
        self,
        path: str | Sequence[str] | None = None,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 2,
        limit: int | None = None,
        split: Sequence[float] = (0.7, 0.15, 0.15),
        split_by: str = "background",
        seed: int = 0,
        cache_dir: str = "data/cache",
        synth: Callable[[str], str | Path] | None = None,
        augment: Sequence = (),
        crop: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        pin_memory: bool = True,
        layout: str | None = None,
        depth_inverted: bool | None = None,
        on_error: str = "raise",
        cache_resized: bool = False,
        cache_max_gb: float = 16.0,
        augment_on: str = "cpu",
    ) -> None:
        super().__init__()
        check_on_error(on_error)  # here too: a bad value stops the run before any data is read
        check_limit(limit, "data.limit")
        whole_number(image_size, "data.image_size", 1)
        whole_number(batch_size, "data.batch_size", 1)
        worker_count(num_workers, "data.num_workers")
        whole_number(seed, "data.seed")
        split = numbers(split, f"data.split ({', '.join(SPLITS)})", len(SPLITS))
        mean, std = numbers(mean, "data.mean", 3), numbers(std, "data.std", 3, positive=True)
        if depth_inverted is not None:
            flag(depth_inverted, "data.depth_inverted")
        if crop is not None and not whole_number(crop, "data.crop", 1) <= image_size:
            raise ValueError(f"data.crop must be in [1, data.image_size={image_size}] or null, got {crop}")
        if isinstance(cache_max_gb, bool) or not isinstance(cache_max_gb, int | float) or not cache_max_gb >= 0:
            raise ValueError(
                f"data.cache_max_gb must be a number >= 0 (inf: the disk alone limits), got {cache_max_gb!r}"
            )
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"data.augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
        self.path = checked_path(path)
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.limit, self.fractions, self.seed = limit, tuple(split), seed
        self.split_by = split_by
        cache_dir = os.fspath(cache_dir) if isinstance(cache_dir, os.PathLike) else cache_dir
        self.cache_dir, self.synth = file_name(cache_dir, "data.cache_dir"), synth  # "": the current folder
        self.generated: str | None = None  # the generated set's path, once resolved
        self.augment, self.mean, self.std = list(augment), tuple(mean), tuple(std)
        if crop is not None:  # last, so that transforms which resize (RandomResizedCrop) cannot undo it
            self.augment.append(A.RandomCrop(crop, crop))
        self.device_augment = DeviceAugment(self.augment, self.mean, self.std) if augment_on == "gpu" else None
        self.pin_memory = flag(pin_memory, "data.pin_memory")
        self.layout, self.depth_inverted, self.on_error = layout, depth_inverted, on_error
        self.cache_resized, self.cache_max_gb = flag(cache_resized, "data.cache_resized"), cache_max_gb
        self.index: DatasetIndex | None = None
        self.datasets: dict[str, MaskDepthDataset] = {}

    def resolve_path(self) -> str | list[str]:
        """The dataset path(s); with none given, the generated set `synth(cache_dir)` (made once, then cached; its
        path is taken once per data module)."""
        if self.path:
            return dataset_paths(self.path)
        if self.synth is None:
            raise DataError("data.path", None, "no dataset given and no generator (data.synth) to make one")
        if self.generated is None:  # once per data module: generator code edited during a run makes no new set
            self.generated = str(self.synth(self.cache_dir))
        return self.generated

    def prepare_data(self) -> None:
        self.resolve_path()

    def setup(self, stage: str | None = None) -> None:
        if self.index is not None:
            return
        self.index = load_index(self.resolve_path(), self.layout, self.depth_inverted, strict=self.on_error == "raise")
        if self.index.problems:
            count = len(self.index.problems)
            log.warning("left out the samples of %d indexing problems (data.on_error=skip)", count)
        count = len(self.index.samples)
        if self.limit is not None and self.limit > count:
            log.warning("data.limit=%d is more than the dataset's %d samples: using all of them", self.limit, count)
        whole = split(self.index.samples, self.fractions, self.seed, self.split_by)
        if self.split_by == "both":
            left_out = count - sum(len(part) for part in whole)
            log.info("data.split_by=both: %d of %d samples left out (background and object in different parts)",
                     left_out, count)  # fmt: skip
        parts = dict(zip(SPLITS, limited(whole, self.limit, self.seed), strict=True))
        for name, fraction in zip(SPLITS, self.fractions, strict=True):
            if fraction > 0 and not parts[name]:
                raise DataError(
                    self.index.store.describe(),
                    None,
                    f"the {name} split is empty ({count} samples on {groups_dealt(self.index.samples, self.split_by)}"
                    f", each dealt whole to one split: data.split_by={self.split_by}); use more data or change "
                    "data.split or data.split_by",
                )
        augment = build_augment(self.augment, seed=self.seed) if self.device_augment is None else None
        for name in SPLITS:
            data = MaskDepthDataset(
                self.index,
                parts[name],
                self.image_size,
                augment if name == "train" else None,
                self.mean,
                self.std,
                self.on_error,
                name=name,
                seed=self.seed,
            )
            if self.cache_resized and len(data):
                data.cache = resized_cache(data, self.cache_dir, self.num_workers, self.cache_max_gb)
            self.datasets[name] = data
        log.info("dataset %s: %s", self.index.layout, {k: len(v) for k, v in self.datasets.items()})

    def _loader(self, name: str, sampler: EpochSampler | None = None) -> DataLoader:
        data = self.datasets[name]
        if name == "train" and self.device_augment is not None:
            data = RawItems(data, self.device_augment.draws, self.seed)
        loader = SkipCountingLoader(
            data,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=sampler is not None and len(sampler) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_skipping,
            worker_init_fn=partial(start_worker, rank=self.trainer.global_rank if self.trainer else 0),
        )
        loader.refill = sampler is not None
        return loader

    def train_dataloader(self) -> DataLoader:
        """Shuffled by (seed, epoch), this rank's share under DDP; augmentation seeded per (seed, epoch, sample)."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        loader = self._loader("train", EpochSampler(self.datasets["train"], self.seed, world, rank))
        if trainer is not None:  # a checkpoint taken mid-epoch (Ctrl-C) resumes at the batch where it stopped
            loader.progress = lambda: trainer.fit_loop.epoch_loop.batch_progress.current
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With `augment_on=gpu`, a train batch (uint8, with `draws`) augmented and normalised where it now is; any
        other batch as it is."""
        if isinstance(batch, dict) and "draws" in batch:
            return self.device_augment(batch)
        return batch
