"""Mask ceiling of the real-photo check set: how much of each stored mask its pixels decide.

    python -m experiments.mask_ceiling                                   # data/real_check.zip (JPEG quality 50)
    python -m experiments.mask_ceiling --zip data/real_check_q.zip --jpeg-quality 30 95

Rebuilds every composite of a check set made by `experiments/real_check_set.py` with the same arguments (same
photos, seed and places; the rebuilt mask must equal the stored one) and scores, against the stored mask (the
pasted opacity α > 0.5), pooled IoU on the selection and report parts (`data.split_by=both data.split=[0,0.5,0.5]
data.seed=0`) and on the whole set:

- pixel oracle: knows each pixel's true object colour F and clean background colour B and reads the stored fg_bg I
  (after JPEG): α̂ = ⟨I − B, F − B⟩ / |F − B|², foreground where α̂ > 0.5. It knows more than any model is given;
  what it still gets wrong is decided by JPEG noise, or by F ≈ B (an object the colour of what it covers), that
  is by nothing a pixel shows. Run on the composite before JPEG it scores the exact blend (a check of the oracle);
- outline only: the oracle on the outline band (pixels within 1 px of the true outline), the truth elsewhere: what
  a model that gets every pixel off the outline right (shape priors fill what the pixels do not show) can reach
  if it places the outline as well as the pixels allow.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments.real_check_set import skimage_data, write_inputs
from mdeas.data.layouts import read_canonical
from mdeas.data.splits import split
from mdeas.data.zipstore import ZipStore
from mdeas.failure import fail
from mdeas.metrics.morphology import outline_band as band_of
from mdeas.synth.compose import ComposeOptions, find_sources, load_background, load_foreground, paste, place
from mdeas.synth.generate import bg_name, seed_sample_id, seed_scheme
from mdeas.synth.writer import as_jpeg_quality

PARTS = ("selection", "report")


def oracle(fg_bg: np.ndarray, bg: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """fg_bg, clean bg, object colour F (float [H, W, 3], 0-255; F = bg outside the object) → bool [H, W]:
    α̂ = ⟨fg_bg − bg, F − bg⟩ / |F − bg|² > 0.5 (0 where F = bg)."""
    contrast = colour - bg
    power = (contrast**2).sum(-1)
    alpha = ((fg_bg - bg) * contrast).sum(-1) / np.maximum(power, 1e-9)
    return (alpha > 0.5) & (power > 0)


def outline_band(mask: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose 3×3 neighbourhood holds both mask and background (`metrics.morphology`)."""
    return band_of(torch.from_numpy(mask)[None, None].float(), 1)[0, 0].numpy()


def composites(zip_path: Path, quality: int | tuple[int, int]):
    """Yield (sample id, stored fg_bg, clean fg_bg, clean bg, object colour, stored mask) of every sample."""
    opts = ComposeOptions(image_size=224, positions=1, seed=0, jpeg_quality=as_jpeg_quality(quality), bg_fit="crop")
    store = ZipStore([zip_path])
    with tempfile.TemporaryDirectory() as tmp:
        sources = find_sources(*write_inputs(skimage_data(), Path(tmp)))
        for b, bg_path in enumerate(sources.backgrounds):
            bg = load_background(bg_path, opts.image_size, opts.bg_fit)
            bg_id = bg_name(b, len(sources.backgrounds))
            for f, fg_path in enumerate(sources.foregrounds):
                cutout = load_foreground(fg_path, sources.masks[f])
                for _, m, s, p in seed_scheme(1, opts.flips, len(opts.scales), opts.positions):
                    sample_id = seed_sample_id(bg_id, f, m, s, p, len(sources.foregrounds))
                    rgb, alpha, top, left = place(cutout, opts, b, f, m, s, p)
                    clean, mask = paste(bg, rgb, alpha, top, left)
                    colour = bg.astype(np.float64)  # F = B wherever the cut-out's opacity is (nearly) 0
                    box = colour[top : top + alpha.shape[0], left : left + alpha.shape[1]]
                    box[alpha > 1e-3] = rgb[alpha > 1e-3]
                    stored = np.asarray(Image.open(io.BytesIO(store.read(f"mask/{sample_id}.png")))) > 127
                    if not np.array_equal(stored, mask):
                        fail(f"{zip_path}: mask/{sample_id}.png differs from the rebuilt one")
                    image = Image.open(io.BytesIO(store.read(f"fg_bg/{sample_id}.jpg"))).convert("RGB")
                    yield sample_id, np.asarray(image, np.float64), clean.astype(np.float64), bg, colour, mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=Path("data/real_check.zip"))
    parser.add_argument("--jpeg-quality", type=int, nargs="+", default=[50])
    args = parser.parse_args(argv)
    quality = args.jpeg_quality[0] if len(args.jpeg_quality) == 1 else tuple(args.jpeg_quality)
    samples = read_canonical(ZipStore([args.zip])).samples
    _, selection, report = split(samples, [0.0, 0.5, 0.5], seed=0, by="both")
    part_of = {s.id: name for name, part in zip(PARTS, (selection, report), strict=True) for s in part}
    columns = ("oracle", "outline only", "before JPEG")
    inter = {name: np.zeros(len(columns)) for name in (*PARTS, "all")}
    union = {name: np.zeros(len(columns)) for name in inter}
    per_object: dict[str, np.ndarray] = {}
    for sample_id, stored, clean, bg, colour, mask in composites(args.zip, quality):
        band = outline_band(mask)
        seen = oracle(stored, bg, colour)
        predictions = (seen, np.where(band, seen, mask), oracle(clean, bg, colour))
        i = np.array([(p & mask).sum() for p in predictions], np.float64)
        u = np.array([(p | mask).sum() for p in predictions], np.float64)
        for name in ("all", part_of.get(sample_id)):
            if name is not None:
                inter[name] += i
                union[name] += u
        obj = sample_id.split("_")[1]
        per_object[obj] = per_object.get(obj, 0) + np.array([i[0], u[0]])
    sizes = {"selection": len(selection), "report": len(report), "all": len(samples)}
    print(f"{args.zip}: pooled IoU of the pixel oracle (knows F and B, reads the stored fg_bg)")
    print("| part | samples | " + " | ".join(columns) + " |\n|---|---:|" + "---:|" * len(columns))
    for name in inter:
        print(f"| {name} | {sizes[name]} | " + " | ".join(f"{x:.4f}" for x in inter[name] / union[name]) + " |")
    print("per object, oracle: " + ", ".join(f"{k} {c[0] / c[1]:.4f}" for k, c in sorted(per_object.items())))


if __name__ == "__main__":
    main()
