"""Depth ceiling of the generated world: how well depth can be scored without knowing each image's scale.

    python -m experiments.depth_ceiling [--num 120] [--size 64] [--seed 0] [--camera default|wide]

Renders `--num` samples with the generator's settings (`mdeas.synth.generate`, random scheme, one sample per
background), each with its object composited, and reads their depth as it is stored (whole millimetres, the
fg_bg scene: what is trained). Scores over the valid pixels (depth > 0 and below the maximum depth, so neither
the sky nor anything beyond it), pooled over the set as the training metrics pool them:

- best constant: one depth for every pixel of every image, the one that maximises delta1 (a window of width
  2 log 1.25 slid over the sorted log depths); median constant: the median depth, for its AbsRel;
- exact shape, unknown scale: each image's true depth rescaled so that its geometric mean equals the set's, what
  a predictor that knows every shape but no image's scale scores. Its delta1 is the share of pixels in images
  whose geometric mean depth lies within a factor 1.25 of the set's: near 1 only when the images share one
  scale, which is what lets a model learn depth in metres;
- exact shape, median-scaled: the unknown-scale prediction of each image rescaled so that its median matches the
  truth's, as scale-invariant evaluations align predictions; 1.0 by construction (a sanity row of the scoring).

`--camera` picks the generator's prior (default: the generator's default, `metric`; `wide`: the world without
absolute scale). Prints a line describing the set, a Markdown table, and last `ceiling delta1: X` (the unknown
scale row).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from mdeas.synth.generate import Options, depth_to_mm, make_background, make_sample, plan
from mdeas.synth.scene import CAMERA_PRIORS

THRESHOLD = 1.25  # delta1: max(pred / gt, gt / pred) < 1.25


def valid_depths(num: int, size: int, seed: int, camera: str) -> list[np.ndarray]:
    """Depth (m) of the valid pixels of `num` generated samples, one 1-D float64 array each, as stored."""
    opts = Options(num, image_size=size, seed=seed, fg_per_bg=1, camera=camera)
    max_depth_m = opts.max_depth_mm / 1000.0
    depths = []
    for spec in plan(opts):
        background = make_background(seed, spec.bg_index, size, max_depth_m, opts.num_backgrounds, camera)
        mm = depth_to_mm(make_sample(background, spec, opts).depth, opts.max_depth_mm)
        depths.append(mm[(mm > 0) & (mm < opts.max_depth_mm)].astype(np.float64) / 1000.0)
    return [d for d in depths if d.size]


def delta1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Share of pixels with max(pred / gt, gt / pred) < 1.25."""
    return float((np.maximum(pred / gt, gt / pred) < THRESHOLD).mean())


def abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean of |pred - gt| / gt."""
    return float((np.abs(pred - gt) / gt).mean())


def best_constant(depth: np.ndarray) -> float:
    """The depth (m) c that maximises delta1 of the constant prediction c: the centre of the densest window of
    log depths narrower than 2 log 1.25."""
    logs = np.sort(np.log(depth))
    ends = np.searchsorted(logs, logs + 2 * math.log(THRESHOLD), side="left")  # window [logs[i], logs[i] + 2w)
    i = int(np.argmax(ends - np.arange(logs.size)))
    return float(np.exp((logs[i] + logs[ends[i] - 1]) / 2))


def ceiling_table(depths: list[np.ndarray]) -> list[tuple[str, float, float]]:
    """(predictor, delta1, AbsRel) of the constant and exact-shape predictors, pooled over all valid pixels."""
    gt = np.concatenate(depths)
    best, median = best_constant(gt), float(np.median(gt))
    set_mean = float(np.log(gt).mean())
    shapes = [d * math.exp(set_mean - np.log(d).mean()) for d in depths]
    unknown = np.concatenate(shapes)
    scaled = np.concatenate([u * (np.median(d) / np.median(u)) for u, d in zip(shapes, depths, strict=True)])
    rows = [
        ("best constant (max delta1)", np.full(gt.shape, best)),
        ("median constant", np.full(gt.shape, median)),
        ("exact shape, unknown scale (set's geometric mean)", unknown),
        ("exact shape, median-scaled (sanity)", scaled),
    ]
    return [(name, delta1(pred, gt), abs_rel(pred, gt)) for name, pred in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=120, help="samples (one per background)")
    parser.add_argument("--size", type=int, default=64, help="image side (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera", choices=("default", *CAMERA_PRIORS), default="default")
    args = parser.parse_args(argv)
    camera = Options(1).camera if args.camera == "default" else args.camera
    depths = valid_depths(args.num, args.size, args.seed, camera)
    gt = np.concatenate(depths)
    share = gt.size / (args.num * args.size * args.size)
    print(
        f"camera {camera}: {args.num} samples at {args.size} px, seed {args.seed}; {100 * share:.1f} % of the "
        f"pixels valid, geometric mean depth {math.exp(np.log(gt).mean()):.2f} m"
    )
    print()
    print("| predictor | delta1 | AbsRel |")
    print("|---|---:|---:|")
    table = ceiling_table(depths)
    for name, d1, rel in table:
        print(f"| {name} | {d1:.3f} | {rel:.3f} |")
    print()
    print(f"ceiling delta1: {table[2][1]:.3f}")


if __name__ == "__main__":
    main()
