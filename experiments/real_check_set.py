"""Build a small check set of REAL photographs composited the way the seeds built theirs: data/real_check.zip.

    python experiments/real_check_set.py                       # 10 backgrounds x 8 objects x 2 x 4 scales
    python experiments/real_check_set.py --out data/rc.zip --positions 5 --image-size 128
    python experiments/real_check_set.py --out data/real_check_q.zip --jpeg-quality 30 95   # each image its own quality

The photos are the sample images shipped inside scikit-image (`skimage/data`; pip install -e '.[real]'); nothing
is downloaded. The files are read straight from the package folder (scikit-image is never imported).

Backgrounds (square crops, then resized): astronaut, chelsea (cat), coffee (left and right), rocket (left and
right; the keys say top and bottom), camera (cameraman), brick, grass, gravel. The two crops of one photo overlap
by half its width, so splitting by background does not fully separate them: with `data.split_by=both
data.split=[0,0.5,0.5] data.seed=0` (backgrounds numbered in name order) both rocket crops fall in the report
part, while coffee's left crop (b00004) is in the selection part and its right crop (b00005) in the report part
(RESULTS.md says what that means for the report numbers).
Objects, each cut out with a mask that comes from the data itself:
- motorcycle: motorcycle_left.png, masked by its stereo disparity (motorcycle_disp.npz): pixels nearer than the
  floor plane fitted to the bottom rows (by 4 px of disparity, and at least 32 px), closed (9×9 disc) and opened
  (5×5 disc), the largest connected part;
- coin_0..3: the four largest round coins of coins.png (Otsu threshold of a dark-background photo, holes filled);
- retina: retina.jpg, the fundus photo inside the camera's circular aperture (everything not black);
- logo: logo.png, the disc on its white page (the convex hull of the pixels that are not white);
- horse: horse.png's black silhouette (its darkness as opacity, so soft edges), filled with the table wood of
  coffee.png.
The zip is canonical with no depth (manifest depth fields empty, meta.json "depth": null), written by
`mdeas.synth.compose` with JPEG quality 50 (the seeds saved at 30-65); the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mdeas.failure import fail
from mdeas.synth.compose import compose
from mdeas.synth.photos import package_folder
from mdeas.synth.writer import check_image_options

Crop = Callable[[np.ndarray], np.ndarray]


def skimage_data() -> Path:
    """scikit-image's folder of sample images; SystemExit if the package is not installed."""
    folder = package_folder("skimage")
    if folder is None:
        fail("scikit-image is not installed (it is in the real extra: pip install -e '.[real]')")
    return folder / "data"


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _square(where: str) -> Crop:
    """A square crop of the longer side's start, middle or end."""

    def crop(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        side = min(h, w)
        offset = {"start": 0, "middle": (max(h, w) - side) // 2, "end": max(h, w) - side}[where]
        return image[offset : offset + side] if h > w else image[:, offset : offset + side]

    return crop


BACKGROUNDS: dict[str, tuple[str, Crop]] = {
    "astronaut": ("astronaut.png", _square("middle")),
    "chelsea": ("chelsea.png", _square("middle")),
    "coffee_left": ("coffee.png", _square("start")),
    "coffee_right": ("coffee.png", _square("end")),
    "rocket_top": ("rocket.jpg", _square("start")),
    "rocket_bottom": ("rocket.jpg", _square("end")),
    "camera": ("camera.png", _square("middle")),
    "brick": ("brick.png", _square("middle")),
    "grass": ("grass.png", _square("middle")),
    "gravel": ("gravel.png", _square("middle")),
}


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected part of a bool mask."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every region not reachable from its border filled."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 2)
    return (padded != 2)[1:-1, 1:-1]


def motorcycle(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The motorcycle of the stereo pair and its mask from disparity (module docstring)."""
    disparity = np.load(data / "motorcycle_disp.npz")["arr_0"]
    disparity = np.where(np.isfinite(disparity), disparity, 0.0)
    rows = np.arange(disparity.shape[0], dtype=np.float64)
    bottom = slice(int(0.84 * len(rows)), len(rows))  # the bottom rows are mostly floor: fit its plane there
    slope, offset = np.polyfit(rows[bottom], np.median(disparity[bottom], axis=1), 1)
    near = disparity > np.maximum(slope * rows + offset + 4, 32)[:, None]
    near = cv2.morphologyEx(
        near.astype(np.uint8), cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    )
    near = cv2.morphologyEx(near, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return np.asarray(Image.open(data / "motorcycle_left.png").convert("RGB")), _largest(near > 0)


def coins(data: Path, count: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """The `count` largest round coins (bounding box nearly square, filling it like a disc) with their masks."""
    grey = _read(data / "coins.png")
    _, bright = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    found = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        round_enough = 0.8 < w / h < 1.25 and 0.6 < area / (w * h) < 0.9 and area > 500
        if round_enough and x > 0 and y > 0 and x + w < grey.shape[1] and y + h < grey.shape[0]:
            found.append((int(area), i, (slice(y, y + h), slice(x, x + w))))
    found.sort(key=lambda item: (-item[0], item[1]))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    return [(rgb[box], _fill_holes(labels[box] == i)) for _, i, box in found[:count]]


def retina(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The fundus photo and the camera's circular aperture around it."""
    rgb = _read(data / "retina.jpg")
    return rgb, _fill_holes(_largest(rgb.astype(np.int64).sum(axis=2) > 45))


def horse(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """horse.png's black silhouette (its darkness is the opacity) filled with the table wood of coffee.png."""
    grey = np.asarray(Image.open(data / "horse.png").convert("L"), np.float64)
    wood = Image.open(data / "coffee.png").convert("RGB").crop((0, 0, 180, 120))
    return np.asarray(wood.resize(grey.shape[::-1], Image.Resampling.BICUBIC)), 1 - grey / 255


def logo(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """logo.png's disc on its white page: the convex hull of the pixels that are not white."""
    rgb = np.asarray(Image.open(data / "logo.png").convert("RGB"))
    rows, cols = np.nonzero(rgb.astype(np.int64).sum(axis=2) < 720)
    hull = cv2.convexHull(np.stack([cols, rows], axis=1).astype(np.int32))
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return rgb, mask > 0


def write_inputs(data: Path, folder: Path) -> tuple[Path, Path]:
    """Write the backgrounds and the objects (NAME.png + NAME_mask.png, the opacity) as PNG under `folder`."""
    bg_dir, fg_dir = folder / "bg", folder / "fg"
    bg_dir.mkdir(parents=True)
    fg_dir.mkdir(parents=True)
    for name, (file, crop) in BACKGROUNDS.items():
        Image.fromarray(crop(_read(data / file))).save(bg_dir / f"{name}.png")
    objects = {"motorcycle": motorcycle(data), "retina": retina(data), "horse": horse(data), "logo": logo(data)}
    objects.update({f"coin_{i}": coin for i, coin in enumerate(coins(data))})
    for name, (rgb, opacity) in objects.items():
        Image.fromarray(rgb).save(fg_dir / f"{name}.png")
        Image.fromarray(np.rint(np.asarray(opacity, np.float64) * 255).astype(np.uint8)).save(
            fg_dir / f"{name}_mask.png"
        )
    return bg_dir, fg_dir


def build(
    out: str | Path = "data/real_check.zip",
    image_size: int = 224,
    positions: int = 1,
    seed: int = 0,
    jpeg_quality: int | tuple[int, int] = 50,
    workers: int | None = None,
) -> Path:
    """Write the real-photo check set to `out` (module docstring); returns its path. ValueError naming a bad option
    before any photo is read."""
    check_image_options(image_size, seed, jpeg_quality)
    with tempfile.TemporaryDirectory() as tmp:
        bg_dir, fg_dir = write_inputs(skimage_data(), Path(tmp))
        options = {"image_size": image_size, "positions": positions, "seed": seed, "jpeg_quality": jpeg_quality}
        return compose(out, bg_dir, fg_dir, bg_fit="crop", workers=workers, **options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/real_check.zip")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--positions", type=int, default=1, help="random places per (bg, object, flip, scale)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jpeg-quality", type=int, nargs="+", default=[50], help="one quality, or LOW HIGH: each image draws its own"
    )
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    if len(args.jpeg_quality) > 2:
        parser.error(f"--jpeg-quality takes one quality or LOW HIGH, got {len(args.jpeg_quality)} values")
    quality = args.jpeg_quality[0] if len(args.jpeg_quality) == 1 else tuple(args.jpeg_quality)
    try:
        path = build(args.out, args.image_size, args.positions, args.seed, quality, args.workers)
    except ValueError as error:  # a bad option, named by compose
        parser.error(str(error))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
