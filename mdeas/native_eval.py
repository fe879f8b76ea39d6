"""Mask scores at each sample's stored size: the model's logits brought to full size (a refiner's full-resolution
output, or the model-size logits upsampled bilinearly) against the full-size ground truth, and the |fg_bg − bg|
baseline on the same full-size pixels.

Reported for model and baseline alike: pooled ``mask/iou``, ``mask/dice`` (and accuracy, precision, recall),
``mask/iou_per_image`` (mean over images) and ``mask/boundary_f`` (boundary F-score, mean over images); and 95 %
bootstrap intervals over images of the pooled IoU (``mask/iou_ci95``) and of the model's gain over the baseline
(``mask/iou_gain_ci95``, paired: the same resampled images for both). Where every sample names its foreground
object (`mdeas.data.splits.object_of`), also the same intervals resampling whole objects
(``mask/iou_ci95_by_object``, ``mask/iou_gain_ci95_by_object``): the composites of one object move together, so these
say how the scores would move on other objects (where the scored ones were not trained on), and each object's own
pooled IoU (``by_object``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mdeas.baseline import difference, fit_threshold
from mdeas.data.dataset import MaskDepthDataset, load_sample
from mdeas.data.decode import binarise
from mdeas.data.errors import DataError
from mdeas.data.layouts import Sample
from mdeas.data.splits import object_of
from mdeas.inference import full_resolution
from mdeas.metrics.classes import MaskMetrics
from mdeas.metrics.functional import mask_labels
from mdeas.metrics.per_image import PerImageMaskMetrics, intersection_union
from mdeas.module import MaskDepthModule
from mdeas.outline import KnownBackgroundOutline

log = logging.getLogger(__name__)


def full_size_samples(dataset: MaskDepthDataset) -> Iterator[dict[str, Any]]:
    """Each sample of `dataset` at its stored size, as a batch of one: bg, fg_bg RGB float32 [1,3,H,W] in [0, 1];
    mask float32 [1,1,H,W] in {0, 1}; id, [the sample's id]. A sample that raises DataError is left out when
    `dataset.on_error` is "skip", and the count of those left out is logged at the end; a DataError when that
    leaves none (nothing would be scored, and an empty score reads as perfect)."""
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
        yield {**rgb, "mask": torch.from_numpy(binarise(arrays["mask"]))[None, None], "id": [sample.id]}
    if skipped:
        log.warning("left out %d of %d samples that cannot be read (data.on_error=skip)", skipped, len(dataset.samples))
    if skipped and skipped == len(dataset.samples):
        raise DataError(
            dataset.index.store.describe(),
            None,
            f"{dataset.name}: no sample to score; every one of its {skipped} was left out (data.on_error=skip)",
        )


class MaskScores:
    """Pooled and per-image mask scores over several updates (see the module docstring for the names), keeping
    each image's intersection and union, and its sample id when given, for bootstrap intervals."""

    def __init__(self, from_logits: bool) -> None:
        self.pooled = MaskMetrics(from_logits=from_logits)
        self.per_image = PerImageMaskMetrics(from_logits=from_logits)
        self.from_logits = from_logits
        self.counts: list[tuple[int, int]] = []  # (intersection, union) pixels per image
        self.foreground = self.pixels = 0  # pixels of the object in the ground truth, and all pixels, over every update
        self.ids: list[str] | None = []  # the sample id per image; None once an update gave none

    def update(self, pred: torch.Tensor, target: torch.Tensor, ids: Sequence[str] | None = None) -> None:
        """Add a batch: `pred` logits (or probabilities) and `target` in {0, 1}, float [B, 1, H, W] each, and
        optionally the batch's B sample ids (ValueError for another count)."""
        if ids is not None and (isinstance(ids, str) or len(ids) != len(pred)):
            raise ValueError(f"MaskScores.update needs one sample id per image: {len(pred)} images, ids {ids!r}")
        if ids is None:
            self.ids = None
        elif self.ids is not None:
            self.ids += ids
        self.pooled.update(pred, target)
        self.per_image.update(pred, target)
        hard, truth = (label.bool() for label in mask_labels(pred, target, from_logits=self.from_logits))
        self.counts += [(int(i), int(u)) for i, u in zip(*intersection_union(hard, truth), strict=True)]
        self.foreground, self.pixels = self.foreground + int(truth.sum()), self.pixels + truth.numel()

    def compute(self) -> dict[str, float]:
        """{"mask/<name>": value} over every update so far."""
        scores = {**self.pooled.compute(), **self.per_image.compute()}
        return {f"mask/{k}": float(v) for k, v in scores.items()}


MIN_BOOTSTRAP_IMAGES = 5
MOSTLY_FOREGROUND = 0.5  # share of the scored mask pixels over which masks look inverted (pasted objects are smaller)


def bootstrap_iou(
    model: list[tuple[int, int]],
    baseline: list[tuple[int, int]],
    draws: int = 2000,
    seed: int = 0,
    min_images: int = MIN_BOOTSTRAP_IMAGES,
    groups: Sequence[str] | None = None,
) -> dict[str, list[float] | None]:
    """95 % bootstrap intervals of the pooled IoU of the model, of the baseline and of their difference, from each
    image's (intersection, union) pixels: {"model": [lo, hi], "baseline": [lo, hi], "gain": [lo, hi]}. Images are
    resampled (the same resampled images for both), or with `groups` (a label per image, e.g. its object) whole
    groups: each draw takes as many groups as there are, with replacement, and pools all their images. Each None
    under `min_images` images (groups), too few to resample (one gives an interval of width 0)."""
    m, b = np.asarray(model, np.float64).reshape(-1, 2), np.asarray(baseline, np.float64).reshape(-1, 2)
    if groups is not None:
        if len(groups) != len(m):
            raise ValueError(f"bootstrap_iou needs a group per image: {len(groups)} groups for {len(m)} images")
        m, b = group_sums(m, groups), group_sums(b, groups)
    if len(m) < min_images:
        return {"model": None, "baseline": None, "gain": None}
    picks = np.random.default_rng(seed).integers(0, len(m), size=(draws, len(m)))
    iou_m, iou_b = (pooled_iou(np.stack([c[:, k][picks].sum(1) for k in (0, 1)], axis=-1)) for c in (m, b))
    interval = lambda x: [float(v) for v in np.percentile(x, [2.5, 97.5])]  # noqa: E731
    return {"model": interval(iou_m), "baseline": interval(iou_b), "gain": interval(iou_m - iou_b)}


def pooled_iou(counts: np.ndarray) -> np.ndarray:
    """IoU of (intersection, union) counts [..., 2] summed over their images: [...]; 1 where the union is empty."""
    inter, union = counts[..., 0], counts[..., 1]
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def group_sums(counts: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Per-image (intersection, union) counts [N, 2] summed per group: [G, 2], groups in sorted order."""
    _, index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return np.stack([np.bincount(index, counts[:, k]) for k in (0, 1)], axis=1)


def iou_by_object(model: MaskScores, baseline: MaskScores, objects: Sequence[str]) -> dict[str, dict]:
    """{object: {"images", "model", "baseline"}}: each object's pooled IoU over its images, for both."""
    names, images = np.unique(np.asarray(objects, dtype=str), return_counts=True)
    model_iou, baseline_iou = (
        pooled_iou(group_sums(np.asarray(s.counts, np.float64), objects)) for s in (model, baseline)
    )
    return {
        str(name): {"images": int(n), "model": float(m), "baseline": float(b)}
        for name, n, m, b in zip(names, images, model_iou, baseline_iou, strict=True)
    }


def objects_of(samples: Sequence[Sample], ids: Sequence[str] | None) -> list[str] | None:
    """The foreground object (`object_of`) of each of `ids`, ids of `samples`; None if there are no ids or any of
    them names none."""
    if not ids:
        return None
    by_id = {sample.id: sample for sample in samples}
    try:
        return [object_of(by_id[i]) for i in ids]
    except ValueError:
        return None


def paired_intervals(model: MaskScores, other: MaskScores, objects: Sequence[str] | None) -> dict[str, dict]:
    """`bootstrap_iou` of `model` against `other`, scored on the same images, by the suffix of the metric names:
    "" resampling images and, with `objects` (one per image: `objects_of`), "_by_object" resampling objects."""
    intervals = {"": bootstrap_iou(model.counts, other.counts)}
    if objects is not None:
        intervals["_by_object"] = bootstrap_iou(model.counts, other.counts, groups=objects)
    return intervals


@torch.no_grad()
def full_size_logits(
    modules: Sequence[MaskDepthModule],
    test: MaskDepthDataset,
    device: torch.device | str = "cpu",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> Iterator[tuple[dict[str, Any], list[torch.Tensor]]]:
    """Each sample of `test` at its stored size (`full_size_samples`, decoded once) with each module's mask logits
    there, float32 [1, 1, H, W] on the CPU (`full_resolution`, with `outline` and `mirror`), with a progress bar."""
    modules = [module.eval().to(device) for module in modules]
    for batch in tqdm(full_size_samples(test), "native size", total=len(test), unit="sample"):
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
            score.update(one, batch["mask"], batch["id"])
    return scores


def native_mask_scores(
    module: MaskDepthModule,
    val: MaskDepthDataset,
    test: MaskDepthDataset,
    device: torch.device | str = "cpu",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict] | None, int]:
    """(model scores, baseline scores with its "threshold", each object's IoU or None: `iou_by_object`, the number
    of samples scored) on `test` at full size (`full_size_logits`), in one pass over its samples; the baseline's
    threshold is chosen on `val` at full size."""
    threshold = fit_threshold(full_size_samples(val), lambda images: images)
    model, baseline = MaskScores(from_logits=True), MaskScores(from_logits=False)
    for batch, (logits,) in full_size_logits([module], test, device, outline, mirror):
        model.update(logits, batch["mask"], batch["id"])
        baseline.update((difference(batch["bg"], batch["fg_bg"]) > threshold).float(), batch["mask"])
    model_scores, baseline_scores = model.compute(), {"threshold": threshold, **baseline.compute()}
    where = test.index.store.describe()
    if model.foreground == 0:
        log.warning("%s: no mask of the %d samples scored holds a foreground pixel: the mask scores compare empty "
                    "masks (IoU 1 for predicting nothing)", where, len(model.counts))  # fmt: skip
    elif model.foreground > MOSTLY_FOREGROUND * model.pixels:
        log.warning("%s: %.0f %% of the scored mask pixels are foreground: are the masks inverted (the object black "
                    "on white)?", where, 100 * model.foreground / model.pixels)  # fmt: skip
    objects = objects_of(test.samples, model.ids)
    for suffix, ci in paired_intervals(model, baseline, objects).items():
        model_scores[f"mask/iou_ci95{suffix}"], baseline_scores[f"mask/iou_ci95{suffix}"] = ci["model"], ci["baseline"]
        model_scores[f"mask/iou_gain_ci95{suffix}"] = ci["gain"]
    by_object = iou_by_object(model, baseline, objects) if objects is not None else None
    return model_scores, baseline_scores, by_object, len(model.counts)
