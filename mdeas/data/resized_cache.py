"""Per-size cache of pre-resized samples: decode and resize a split once, then read it from memory-mapped arrays.

A split's samples, decoded and resized to the training size exactly as `MaskDepthDataset.resized` does, are
written once into `<cache_dir>/resized-<size>px-<key>/`, one .npy per array: `bg`, `fg_bg` uint8 [N, S, S, 3];
`mask` uint8 [N, S, S] in {0, 1}; `depth` float32 [N, S, S] (0 where unknown); `valid` bool [N, S, S]; `ok` bool
[N] (False: the sample was left out under `on_error=skip`). The key hashes the zips (path, size, modification
time, entries' CRC-32s), layout, depth encoding, size, decoder versions, the code that decodes and resizes
(`decoding_fingerprint`) and the split's entries, so a changed dataset or decoder gets a new cache. A cache that
left samples out is named `resized-<size>px-<key>-skipped` and serves only `on_error=skip`: an `on_error=raise` run
decodes the split again and stops at the first bad entry; a cache without left-out samples serves both. The folder
is written under a temporary name (naming the host) and renamed when complete: an interrupted build leaves no half
cache, processes building the same cache at once (DDP ranks) end up sharing one, and the temporary folder of a build
killed outright (its lock released with its process) is removed by the next build on the same host.

Epochs then augment from these arrays instead of decoding JPEGs and PNGs again: the same tensors, a fraction of
the CPU (experiments/RESULTS.md, "Data path"). Each stage of a progressive run gets its own size's cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import albumentations
import cv2
import numpy as np
import PIL
from numpy.lib.format import open_memmap
from torch.utils.data import Dataset

from mdeas.data.dataset import MaskDepthDataset, scan
from mdeas.data.remote import ZipURL
from mdeas.file_lock import fcntl, lock
from mdeas.fingerprint import code_fingerprint

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # the layout of a cache folder; the code that fills it is fingerprinted (DECODING_CODE)
DECODING_CODE = ("decode.py", "transforms.py", "dataset.py")  # files of mdeas/data that decode and resize a sample
ARRAYS = {  # name → (dtype, trailing shape given the size)
    "bg": (np.uint8, (3,)),
    "fg_bg": (np.uint8, (3,)),
    "mask": (np.uint8, ()),
    "depth": (np.float32, ()),
    "valid": (np.bool_, ()),
}
COMPLETE = "meta.json"  # written last, inside the temporary folder, before the rename
BUILDING = ".building"  # in a temporary folder: locked by the process building it (`remove_abandoned_builds`)


def cache_bytes(count: int, size: int) -> int:
    """Disk bytes of the cache of `count` samples at `size`² pixels (12 bytes a pixel)."""
    per_pixel = sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape in ARRAYS.values())
    return count * size * size * per_pixel + count


def decoding_fingerprint(folder: Path = Path(__file__).parent) -> str:
    """A hash (hex, 16 characters) of the bytes of `folder`'s DECODING_CODE files: an edit to how samples are
    decoded or resized gives every cache a new key, so no run reads arrays an older code made."""
    return code_fingerprint(folder, DECODING_CODE)


def cache_key(dataset: MaskDepthDataset) -> str:
    """A hash of everything a cached sample depends on: zips, layout, depth encoding, size, versions, entries."""
    index = dataset.index
    zips = [index.store.identity(i) for i in range(len(index.store.paths))]  # a URL: its size and ETag
    versions = [CACHE_VERSION, decoding_fingerprint(), cv2.__version__, PIL.__version__, albumentations.__version__]
    head = {"zips": zips, "layout": index.layout, "depth": asdict(index.depth), "size": dataset.image_size}
    head["versions"] = versions
    digest = hashlib.sha1(json.dumps(head, sort_keys=True).encode())
    for s in dataset.samples:
        digest.update(f"{s.bg}\0{s.fg_bg}\0{s.mask}\0{s.depth}\n".encode())
    return digest.hexdigest()[:16]


class ResizedCache:
    """Read access to a built cache folder: `cache[i]` is sample i as `MaskDepthDataset.resized` returns it (None
    for a sample left out). Arrays are memory-mapped on first access in each process (never pickled)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / COMPLETE).read_text())
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.meta["count"])

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            names = [*ARRAYS, "ok"]
            self._arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in names}
        return self._arrays

    def __getitem__(self, i: int) -> dict[str, np.ndarray] | None:
        arrays = self._open()
        if not arrays["ok"][i]:
            return None
        sample = {name: np.array(arrays[name][i]) for name in ARRAYS}
        sample["mask"] = sample["mask"].astype(np.float32)
        return sample

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}


class _Resized(Dataset):
    """`dataset.resized(i)` for every i (what the cache stores)."""

    def __init__(self, dataset: MaskDepthDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, np.ndarray] | None:
        return self.dataset.resized(i)


def _write(dataset: MaskDepthDataset, folder: Path, num_workers: int) -> int:
    """Build the cache of `dataset` into `folder` (empty; made if missing), `num_workers` decoding processes;
    returns the number of samples left out."""
    folder.mkdir(parents=True, exist_ok=True)
    count, size = len(dataset), dataset.image_size
    arrays = {
        name: open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=(count, size, size, *shape))
        for name, (dtype, shape) in ARRAYS.items()
    }
    ok = open_memmap(folder / "ok.npy", mode="w+", dtype=np.bool_, shape=(count,))
    for i, sample in enumerate(scan(_Resized(dataset), num_workers, f"caching {dataset.name} at {size} px")):
        if sample is not None:
            for name, array in arrays.items():
                array[i] = sample[name]
            ok[i] = True
    for array in (*arrays.values(), ok):
        array.flush()
    meta = {"count": count, "size": size, "left_out": int(count - ok.sum()), "zips": dataset.index.store.describe()}
    (folder / COMPLETE).write_text(json.dumps(meta))
    return meta["left_out"]


@contextmanager
def _building(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock (flock) on `folder`'s BUILDING file while the block runs: the folder is being built.
    The file takes its name once locked, so that `remove_abandoned_builds` never finds it unlocked meanwhile."""
    unnamed = folder / f"{BUILDING}.new"
    with unnamed.open("w") as handle:
        lock(handle)
        unnamed.rename(folder / BUILDING)
        yield


def remove_abandoned_builds(root: Path) -> list[Path]:
    """Remove the temporary folders in `root` of cache builds on this host that no process builds any longer (one
    killed outright, whose own clean-up never ran): a builder holds the lock of its folder's BUILDING file while it
    runs, so a folder whose lock can be taken is abandoned. Folders of other hosts (where a lock may not reach) and
    folders without that file stay. Returns the folders removed (none where flock does not exist)."""
    if fcntl is None:
        return []
    removed, own = [], f".partial-{socket.gethostname()}"
    for folder in root.glob("resized-*.partial-*"):
        if not folder.name.rsplit("-", 1)[0].endswith(own):  # `<cache>.partial-<host>-<random>`
            continue
        try:  # only a lock actually taken proves the build abandoned (read-write: NFS refuses it on a read-only handle)
            with (folder / BUILDING).open("r+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # no lock file yet, being built, or a file system refusing the lock: left alone
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def resized_cache(
    dataset: MaskDepthDataset, cache_dir: str | Path, num_workers: int = 0, max_gb: float = 16.0
) -> ResizedCache | None:
    """The cache of `dataset`'s samples at its size: opened when built before (one that left samples out only
    under `on_error=skip`), else built now. None (with a warning; the dataset then decodes every epoch) when it
    would exceed `max_gb` or 90 % of the free disk, or when a zip is a URL whose server names no version (ETag or
    Last-Modified): a file replaced there by another of the same size could not be told apart."""
    store = dataset.index.store
    unversioned = [str(p) for i, p in enumerate(store.paths) if isinstance(p, ZipURL) and not store.identity(i)[2]]
    if unversioned:
        log.warning("%s: not caching at %d px: the server gives no ETag or Last-Modified for %s",
                    dataset.name, dataset.image_size, ", ".join(unversioned))  # fmt: skip
        return None
    root = Path(cache_dir).expanduser()
    whole = root / f"resized-{dataset.image_size}px-{cache_key(dataset)}"
    skipped = whole.with_name(f"{whole.name}-skipped")
    for found in (whole, skipped) if dataset.on_error == "skip" else (whole,):
        if (found / COMPLETE).is_file():
            return ResizedCache(found)
    root.mkdir(parents=True, exist_ok=True)
    need, free = cache_bytes(len(dataset), dataset.image_size), shutil.disk_usage(root).free
    if need > max_gb * 1e9 or need > 0.9 * free:
        log.warning(
            "%s: not caching at %d px: %.1f GB needed, limit %.1f GB (data.cache_max_gb), %.1f GB free in %s",
            dataset.name, dataset.image_size, need / 1e9, max_gb, free / 1e9, root,
        )  # fmt: skip
        return None
    for folder in remove_abandoned_builds(root):
        log.info("removed %s: the temporary folder of a cache build whose process is gone", folder)
    partial = Path(tempfile.mkdtemp(prefix=f"{whole.name}.partial-{socket.gethostname()}-", dir=root))
    folder = whole
    try:
        with _building(partial):
            folder = skipped if _write(dataset, partial, num_workers) else whole
            (partial / BUILDING).unlink()  # the lock stays held until the folder has its final name
            partial.rename(folder)
    except OSError:
        if not (folder / COMPLETE).is_file():  # not another process finishing the same cache first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("%s: cached %d samples at %d px in %s", dataset.name, len(dataset), dataset.image_size, folder)
    return ResizedCache(folder)
