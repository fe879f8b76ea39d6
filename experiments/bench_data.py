"""Data path throughput: the mdeas train loader against a seed-style loader, samples/s at training sizes 64 and 224.

    python -m experiments.bench_data                          # 1,000 samples at 224 px, 2 workers, about 3 minutes
    python -m experiments.bench_data --samples 5000 --passes 3 --workers 4 --layouts seed002

One generated dataset (cached under data/cache/bench/) in two layouts: `canonical` as generated (JPEG bg and
fg_bg, PNG mask, 16-bit PNG depth) and `seed002`, the same samples as the seeds stored them (every image a JPEG:
mask grey at quality 50, depth DenseDepth-style 8-bit grey). Both loaders use the same batch size and workers:

- seed-style: what the seeds' loaders do. The zip is extracted to a temporary folder first (timed and reported
  apart), then each sample opens its four files with Pillow, resizes them to the training size (bilinear for the
  images, nearest for mask and depth) and converts them to tensors (ToTensor + Normalize).
- mdeas: `MaskDepthDataModule.train_dataloader()` as training uses it, with the default augmentation
  (`data/aug=default`): samples read from the per-size cache of resized samples (`mdeas.data.resized_cache`; its
  one-off build, from the zip, is timed and reported apart like the seed-style extraction), augmented, normalised.
  "mdeas, no augmentation" (`data/aug=none`) does the same work as the seed-style loader. "mdeas, augment_on=gpu"
  is the CPU side of `data.augment_on=gpu`: the same cache read into uint8 batches with each sample's random draws,
  augmentation and normalisation left to the training device. Without the cache:
  "decoded each epoch" reads every sample from the zip, decoded reduced where the training size allows
  (`mdeas.data.decode`), and "decoded each epoch at full size" also turns the reduced decoding off (shown where
  reducing applies).

Throughput counts the samples after the first batch (worker start-up excluded; workers persist across passes) over
`--passes` passes of the dataset; CPU ms/sample is the process time of the same loader run without workers (one
torch thread, as in a worker), which load from other programs on the machine barely changes. A second table times
the JPEG decoders on the dataset's fg_bg entries (one process): Pillow and OpenCV, full size and reduced by 2. The
last line, `ratio: X.XX`, is mdeas over seed-style in samples/s at 64 px on the seeds' own layout (seed002; the
first layout given when it is not among them).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import tempfile
import time
import zipfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.data.dataset import load_sample
from mdeas.data.decode import reduction
from mdeas.data.layouts import load_index
from mdeas.data.normalisation import IMAGENET_MEAN, IMAGENET_STD
from mdeas.failure import fail
from mdeas.synth.generate import generate

CACHE = Path("data/cache/bench")
AUGMENT = Path(__file__).resolve().parents[1] / "conf/data/aug/default.yaml"
HEADLINE_SIZE, HEADLINE_LAYOUT = 64, "seed002"
LAYOUTS = ("canonical", "seed002")
LAYERS = ("overlay", "mask", "depth")  # seed 002's folder per kind


def _jpeg(array: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def to_seed002(canonical: Path, out: Path, quality: int = 50) -> Path:
    """Rewrite a canonical zip in seed 002's layout: `bg/bgN.jpg`, `bgN/fg_0/{overlay,mask,depth}/K.jpg` and
    `label_data.csv`; bg and fg_bg bytes copied, mask and depth (near = bright) encoded as grey JPEG."""
    index = load_index(str(canonical))
    store, bgs, rows, text = index.store, {}, [], io.StringIO()
    partial = out.with_suffix(".tmp")
    with zipfile.ZipFile(partial, "w") as zf:
        for sample in index.samples:
            if sample.bg not in bgs:
                bgs[sample.bg] = f"bg{len(bgs)}"
                zf.writestr(f"bg/{bgs[sample.bg]}.jpg", store.read(sample.bg))
            k = len(rows) + 1
            names = [f"bg/{bgs[sample.bg]}.jpg", *(f"{bgs[sample.bg]}/fg_0/{kind}/{k}.jpg" for kind in LAYERS)]
            raw = load_sample(index, sample)
            zf.writestr(names[1], store.read(sample.fg_bg))
            zf.writestr(names[2], _jpeg(raw["mask"], quality))
            zf.writestr(names[3], _jpeg(np.rint(255 * (1 - raw["depth"])).astype(np.uint8), quality))
            rows.append(names)
        csv.writer(text, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
        zf.writestr("label_data.csv", text.getvalue())
    partial.replace(out)
    return out


def dataset(layout: str, samples: int, image_size: int, workers: int) -> Path:
    """The cached benchmark zip of `layout`, generated (and converted) on first use."""
    path = CACHE / f"bench-{samples}x{image_size}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, samples, image_size=image_size, seed=0, workers=max(workers, 1))
    if layout == "canonical":
        return path
    seed = path.with_name(f"{path.stem}-seed002.zip")
    return seed if seed.exists() else to_seed002(path, seed)


class SeedStyleDataset(Dataset):
    """Extracted files → Pillow → resize → tensors: `bg`, `fg_bg` normalised [3,S,S]; `mask` [1,S,S] in [0, 1];
    `depth` [1,S,S] stored value / `depth_max`."""

    def __init__(self, folder: Path, rows: list[list[str]], size: int, depth_max: float) -> None:
        self.folder, self.rows, self.size, self.depth_max = folder, rows, (size, size), depth_max
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, name: str) -> torch.Tensor:
        image = Image.open(self.folder / name).convert("RGB").resize(self.size, Image.BILINEAR)
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().float().div(255)
        return tensor.sub_(self.mean).div_(self.std)

    def _plane(self, name: str, scale: float) -> torch.Tensor:
        image = Image.open(self.folder / name).resize(self.size, Image.NEAREST)
        return torch.from_numpy(np.array(image, np.float32) / scale)[None]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        bg, fg_bg, mask, depth = self.rows[i]
        return {
            "bg": self._image(bg),
            "fg_bg": self._image(fg_bg),
            "mask": self._plane(mask, 255.0),
            "depth": self._plane(depth, self.depth_max),
        }


def extract(path: Path, folder: Path) -> float:
    """Extract the zip into `folder`; returns the seconds it took."""
    start = time.perf_counter()
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    return time.perf_counter() - start


def throughput(loader: DataLoader, passes: int) -> float:
    """Samples/s over `passes` passes of `loader`, counted after its first batch."""
    count, start = 0, None
    for _ in range(passes):
        for batch in loader:
            if start is None:
                start = time.perf_counter()
            else:
                count += batch["bg"].shape[0]
    return count / (time.perf_counter() - start)


def cpu_ms(loader: DataLoader, limit: int) -> float:
    """CPU ms per sample of iterating a loader without workers in this process with one torch thread (as in a
    worker), after its first batch, over about `limit` samples: the cost that other load on the machine barely moves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    count, start = 0, None
    for batch in loader:
        if start is None:
            start = time.process_time()
        else:
            count += batch["bg"].shape[0]
        if count >= limit:
            break
    torch.set_num_threads(threads)
    if count == 0:
        fail(f"the loader gives {len(loader)} batch(es): too few samples to time past the first")
    return 1000 * (time.process_time() - start) / count


def seed_style_loader(folder: Path, rows: list[list[str]], size: int, depth_max: float, args, workers: int):
    """The seed-style loader (shuffled, persistent workers like the mdeas loader)."""
    data = SeedStyleDataset(folder, rows, size, depth_max)
    return DataLoader(data, batch_size=args.batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)


def mdeas_datamodule(
    path: Path,
    size: int,
    args,
    workers: int,
    cache_dir: Path,
    augment: bool = True,
    mode: str = "cached",
    augment_on: str = "cpu",
) -> MaskDepthDataModule:
    """The DataModule set up as training uses it, with the default augmentation or none, done by the loader
    (`augment_on="cpu"`) or left to the device (`"gpu"`: the loader yields uint8). `mode`: `cached` (the default:
    samples resized once into a per-size cache under `cache_dir`), `decoded` (decoded and resized every epoch,
    reduced where the size allows) or `full-size` (decoded at the stored size every epoch)."""
    steps = OmegaConf.to_container(OmegaConf.load(AUGMENT))["augment"] if augment else []
    dm = MaskDepthDataModule(
        path=str(path),
        image_size=size,
        batch_size=args.batch,
        num_workers=workers,
        augment=[instantiate(step) for step in steps],
        split=(1, 0, 0),
        cache_dir=str(cache_dir),
        cache_resized=mode == "cached",
        augment_on=augment_on,
    )
    dm.setup()
    if mode == "full-size":
        dm.datasets["train"].decode_size = None
    return dm


def mdeas_loader(path: Path, size: int, args, workers: int, cache_dir: Path, **kw) -> DataLoader:
    """The train loader of `mdeas_datamodule` (same arguments)."""
    return mdeas_datamodule(path, size, args, workers, cache_dir, **kw).train_dataloader()


def cache_build(path: Path, size: int, args, cache_dir: Path) -> float:
    """Samples/s of building the resized cache at `size` (`args.workers` processes) into an empty `cache_dir`."""
    start = time.perf_counter()
    loader = mdeas_loader(path, size, args, args.workers, cache_dir)
    return len(loader.dataset) / (time.perf_counter() - start)


def decode_table(path: Path, count: int = 100, runs: int = 5) -> str:
    """µs per fg_bg JPEG for Pillow and OpenCV, full size and reduced by 2 (median of `runs` passes)."""
    with zipfile.ZipFile(path) as zf:
        blobs = [zf.read(n) for n in zf.namelist() if n.startswith("fg_bg/")][:count]
    side = Image.open(io.BytesIO(blobs[0])).size[0]

    def pillow(data: bytes, scale: int) -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        if scale > 1:
            image.draft("RGB", (side // scale, side // scale))
        return np.asarray(image.convert("RGB"))

    def opencv(data: bytes, scale: int) -> np.ndarray:
        flags = cv2.IMREAD_COLOR if scale == 1 else cv2.IMREAD_REDUCED_COLOR_2
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), flags), cv2.COLOR_BGR2RGB)

    def micros(decode, scale: int) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            for data in blobs:
                decode(data, scale)
            times.append((time.perf_counter() - start) / len(blobs))
        return statistics.median(times) * 1e6

    lines = [f"| decoder ({side}×{side} JPEG) | full size µs | reduced by 2 µs (Pillow: draft) |", "|---|---:|---:|"]
    for name, decode in (("Pillow", pillow), ("OpenCV", opencv)):
        lines.append(f"| {name} | {micros(decode, 1):.0f} | {micros(decode, 2):.0f} |")
    return "\n".join(lines)


def bench_layout(layout: str, args: argparse.Namespace) -> tuple[list[str], float]:
    """Table rows of one layout, and mdeas over seed-style at the headline size."""
    path = dataset(layout, args.samples, args.stored, args.workers)
    index = load_index(str(path))
    rows = [[s.bg, s.fg_bg, s.mask, s.depth] for s in index.samples]
    lines, headline = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        seconds = extract(path, Path(tmp))
        lines.append(
            f"| {layout} | zip extraction (seed-style, before training) | – | {len(rows) / seconds:.0f} | – | – |"
        )
        for size in args.sizes:
            cache = Path(tmp) / f"cache-{size}"
            built = cache_build(path, size, args, cache)
            lines.append(f"| {layout} | resized cache build (mdeas, before training) | {size} | {built:.0f} | – | – |")
            loaders = {
                "seed-style (extracted files)": partial(seed_style_loader, Path(tmp), rows, size, index.depth.max)
            }
            loaders["mdeas, no augmentation"] = partial(mdeas_loader, path, size, cache_dir=cache, augment=False)
            if reduction((args.stored, args.stored), size) > 1:
                loaders["mdeas, decoded each epoch at full size"] = partial(
                    mdeas_loader, path, size, cache_dir=cache, mode="full-size"
                )
            loaders["mdeas, decoded each epoch"] = partial(mdeas_loader, path, size, cache_dir=cache, mode="decoded")
            loaders["mdeas"] = partial(mdeas_loader, path, size, cache_dir=cache)
            loaders["mdeas, augment_on=gpu (uint8 batches)"] = partial(
                mdeas_loader, path, size, cache_dir=cache, augment_on="gpu"
            )
            found = {
                name: (throughput(make(args, args.workers), args.passes), cpu_ms(make(args, 0), args.cpu_samples))
                for name, make in loaders.items()
            }
            seed = found["seed-style (extracted files)"][0]
            lines += [
                f"| {layout} | {name} | {size} | {rate:.0f} | {rate / seed:.2f} | {ms:.2f} |"
                for name, (rate, ms) in found.items()
            ]
            if size == HEADLINE_SIZE:
                headline = found["mdeas"][0] / seed
    return lines, headline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="dataset size (default 1000)")
    parser.add_argument("--stored", type=int, default=224, help="stored image size (default 224)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="training sizes (default 64 224)")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS, help="default: both")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of both loaders (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--passes", type=int, default=2, help="passes over the dataset per row (default 2)")
    parser.add_argument("--cpu-samples", type=int, default=256, help="samples timed for CPU ms/sample (default 256)")
    args = parser.parse_args(argv)
    if HEADLINE_SIZE not in args.sizes:
        parser.error(f"--sizes must include {HEADLINE_SIZE} (the ratio line)")
    torch.manual_seed(0)
    print(f"{args.samples} samples stored at {args.stored} px; {args.workers} workers, batch {args.batch}\n")
    print("| data | loader | training size | samples/s | × seed-style | CPU ms/sample |")
    print("|---|---|---:|---:|---:|---:|")
    ratios = {}
    for layout in args.layouts:
        lines, ratios[layout] = bench_layout(layout, args)
        print("\n".join(lines), flush=True)
    print()
    print(decode_table(dataset("canonical", args.samples, args.stored, args.workers)))
    headline = HEADLINE_LAYOUT if HEADLINE_LAYOUT in ratios else args.layouts[0]
    print(f"\nratio: {ratios[headline]:.2f}")


if __name__ == "__main__":
    main()
