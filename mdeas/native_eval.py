"""Mask scores at each sample's stored size: the model's logits brought to full size (a refiner's full-resolution
output, or the model-size logits upsampled bilinearly) against the full-size ground truth, and the |fg_bg − bg|
baseline on the same full-size pixels.

Reported for model and baseline alike: pooled ``mask/iou``, ``mask/dice`` (and accuracy, precision, recall),
``mask/iou_per_image`` (mean over images) and ``mask/boundary_f`` (boundary F-score, mean over images); and 95 %
bootstrap intervals over images of the pooled IoU (``mask/iou_ci95``) and of the model's gain over the baseline
(``mask/iou_gain_ci95``, paired: the same resampled images for both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mdeas.baseline import difference, fit_threshold
from mdeas.data.dataset import MaskDepthDataset, load_sample
from mdeas.data.decode import binarise
from mdeas.data.errors import DataError
from mdeas.inference import full_resolution
from mdeas.metrics.classes import MaskMetrics
from mdeas.metrics.functional import mask_labels
from mdeas.metrics.per_image import PerImageMaskMetrics, intersection_union
from mdeas.module import MaskDepthModule
from mdeas.outline import KnownBackgroundOutline

log = logging.getLogger(__name__)


def full_size_samples(dataset: MaskDepthDataset) -> Iterator[dict[str, torch.Tensor]]:
    """Each sample of `dataset` at its stored size, as a batch of one: bg, fg_bg RGB float32 [1,3,H,W] in [0, 1];
    mask float32 [1,1,H,W] in {0, 1}. A sample that raises DataError is left out when `dataset.on_error` is
    "skip", and the count of those left out is logged at the end."""
    skipped = 0
    for sample in dataset.samples:
        try:
            arrays = load_sample(dataset.index, sample)
        except DataError:
            if dataset.on_error != "skip":
                raise
            skipped += 1
            continue
        rgb = {k: torch.from_numpy(arrays[k]).permute(2, 0, 1)[None].float() / 255 for k in ("bg", "fg_bg")}
        yield {**rgb, "mask": torch.from_numpy(binarise(arrays["mask"]))[None, None]}
    if skipped:
        log.warning("left out %d of %d samples that cannot be read (data.on_error=skip)", skipped, len(dataset.samples))


class MaskScores:
    """Pooled and per-image mask scores over several updates (see the module docstring for the names), keeping
    each image's intersection and union for bootstrap intervals."""

    def __init__(self, from_logits: bool) -> None:
        self.pooled = MaskMetrics(from_logits=from_logits)
        self.per_image = PerImageMaskMetrics(from_logits=from_logits)
        self.from_logits = from_logits
        self.counts: list[tuple[int, int]] = []  # (intersection, union) pixels per image

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: `pred` logits (or probabilities) and `target` in {0, 1}, float [B, 1, H, W] each."""
        self.pooled.update(pred, target)
        self.per_image.update(pred, target)
        hard, truth = (label.bool() for label in mask_labels(pred, target, from_logits=self.from_logits))
        self.counts += [(int(i), int(u)) for i, u in zip(*intersection_union(hard, truth), strict=True)]

    def compute(self) -> dict[str, float]:
        """{"mask/<name>": value} over every update so far."""
        scores = {**self.pooled.compute(), **self.per_image.compute()}
        return {f"mask/{k}": float(v) for k, v in scores.items()}


MIN_BOOTSTRAP_IMAGES = 5


def bootstrap_iou(
    model: list[tuple[int, int]],
    baseline: list[tuple[int, int]],
    draws: int = 2000,
    seed: int = 0,
    min_images: int = MIN_BOOTSTRAP_IMAGES,
) -> dict:
    """95 % bootstrap intervals over images (the same resampled images for both) of the pooled IoU of the model,
    of the baseline and of their difference: {"model": [lo, hi], "baseline": [lo, hi], "gain": [lo, hi]}; each
    None under `min_images` images, too few to resample (one image gives an interval of width 0)."""
    if len(model) < min_images:
        return {"model": None, "baseline": None, "gain": None}
    m, b = np.asarray(model, np.float64), np.asarray(baseline, np.float64)
    picks = np.random.default_rng(seed).integers(0, len(m), size=(draws, len(m)))

    def pooled(counts: np.ndarray) -> np.ndarray:
        inter, union = counts[picks, 0].sum(1), counts[picks, 1].sum(1)
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)

    iou_m, iou_b = pooled(m), pooled(b)
    interval = lambda x: [float(v) for v in np.percentile(x, [2.5, 97.5])]  # noqa: E731
    return {"model": interval(iou_m), "baseline": interval(iou_b), "gain": interval(iou_m - iou_b)}


@torch.no_grad()
def full_size_logits(
    modules: Sequence[MaskDepthModule],
    test: MaskDepthDataset,
    device: torch.device | str = "cpu",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> Iterator[tuple[dict[str, torch.Tensor], list[torch.Tensor]]]:
    """Each sample of `test` at its stored size (`full_size_samples`, decoded once) with each module's mask logits
    there, float32 [1, 1, H, W] on the CPU (`full_resolution`, with `outline` and `mirror`)."""
    modules = [module.eval().to(device) for module in modules]
    for batch in full_size_samples(test):
        bg, fg_bg = (test.normalise(batch[k]).to(device) for k in ("bg", "fg_bg"))
        yield batch, [full_resolution(module, bg, fg_bg, outline, mirror)["mask"].float().cpu() for module in modules]


def model_mask_scores(
    modules: Sequence[MaskDepthModule],
    test: MaskDepthDataset,
    device: torch.device | str = "cpu",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> list[MaskScores]:
    """Each module's mask scores on `test`, every sample at its full size (`full_size_logits`)."""
    scores = [MaskScores(from_logits=True) for _ in modules]
    for batch, logits in full_size_logits(modules, test, device, outline, mirror):
        for score, one in zip(scores, logits, strict=True):
            score.update(one, batch["mask"])
    return scores


def native_mask_scores(
    module: MaskDepthModule,
    val: MaskDepthDataset,
    test: MaskDepthDataset,
    device: torch.device | str = "cpu",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> tuple[dict[str, float], dict]:
    """(model scores, baseline scores with its "threshold") on `test` at full size (`full_size_logits`), in one
    pass over its samples; the baseline's threshold is chosen on `val` at full size."""
    threshold = fit_threshold(full_size_samples(val), lambda images: images)
    model, baseline = MaskScores(from_logits=True), MaskScores(from_logits=False)
    for batch, (logits,) in full_size_logits([module], test, device, outline, mirror):
        model.update(logits, batch["mask"])
        baseline.update((difference(batch["bg"], batch["fg_bg"]) > threshold).float(), batch["mask"])
    model_scores = {**model.compute(), "mask/iou_ci95": None}
    baseline_scores = {"threshold": threshold, **baseline.compute(), "mask/iou_ci95": None}
    if model.counts:
        ci = bootstrap_iou(model.counts, baseline.counts)
        model_scores["mask/iou_ci95"], baseline_scores["mask/iou_ci95"] = ci["model"], ci["baseline"]
        model_scores["mask/iou_gain_ci95"] = ci["gain"]
    return model_scores, baseline_scores
