"""Photographs shipped inside installed packages, worn as skins by generated backgrounds and objects.

The procedural textures (`mdeas.synth.textures`) have the statistics of photographs on average, not their
content: real edges, real colour co-occurrences, the JPEG history of a camera's file. A share of the backgrounds
and of the pasted objects wears a random crop of a real photograph instead, blended over the render so that the
scene's shading still shows: rgb ← (1 − w)·rgb + w·crop, w ~ U(0.6, 0.95). The depth stays the geometric one.

The photos are read from the package folders (the packages are never imported): scikit-learn's china.jpg and
flower.jpg and matplotlib's grace_hopper.jpg (`pip install -e '.[photos]'`). scikit-image's photos are not used:
they are the real-photo check set (experiments/real_check_set.py).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SHIPPED = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def package_folder(name: str) -> Path | None:
    """The folder of installed package `name`, found without importing it; None if it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def shipped_photo_paths() -> list[Path]:
    """The SHIPPED photos that the installed packages hold; ValueError naming the packages if there is none."""
    paths = []
    for package, relative in SHIPPED:
        folder = package_folder(package)
        if folder is not None and (folder / relative).is_file():
            paths.append(folder / relative)
    if not paths:
        packages = sorted({package for package, _ in SHIPPED})
        raise ValueError(
            f"photo skins need the photos shipped by {' or '.join(packages)}, and neither is installed: "
            "pip install -e '.[photos]'"
        )
    return paths


@functools.cache
def shipped_photos() -> tuple[np.ndarray, ...]:
    """Each shipped photo as float32 RGB [H, W, 3] in [0, 1] (read once per process)."""
    photos = []
    for path in shipped_photo_paths():
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("RGB"), np.float32) / 255)
    return tuple(photos)


def photo_crop(rng: np.random.Generator, photos: tuple[np.ndarray, ...], height: int, width: int) -> np.ndarray:
    """A random crop of a random photo, resized to float32 [height, width, 3]: its side 0.25–1 of the photo's
    shorter side, the aspect of (height, width) up to a quarter turn, mirrored at p = 0.5."""
    photo = photos[int(rng.integers(len(photos)))]
    turns = int(rng.integers(4))
    rows, cols = (width, height) if turns % 2 else (height, width)
    side = rng.uniform(0.25, 1.0) * min(photo.shape[:2])
    ch, cw = (side, side * cols / rows) if rows >= cols else (side * rows / cols, side)
    ch, cw = max(2, int(min(ch, photo.shape[0]))), max(2, int(min(cw, photo.shape[1])))
    top = int(rng.integers(photo.shape[0] - ch + 1))
    left = int(rng.integers(photo.shape[1] - cw + 1))
    crop = cv2.resize(photo[top : top + ch, left : left + cw], (cols, rows), interpolation=cv2.INTER_AREA)
    crop = np.rot90(crop, turns)
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


def wear_photo(rgb: np.ndarray, rng: np.random.Generator, photos: tuple[np.ndarray, ...]) -> np.ndarray:
    """rgb [H, W, 3] in [0, 1] blended with a crop (`photo_crop`) of its size: (1 − w)·rgb + w·crop, w ~
    U(0.6, 0.95) (module docstring); the same shape, in [0, 1]."""
    crop = photo_crop(rng, photos, rgb.shape[0], rgb.shape[1])
    weight = rng.uniform(0.6, 0.95)
    return np.clip((1 - weight) * rgb + weight * crop, 0, 1).astype(rgb.dtype)
