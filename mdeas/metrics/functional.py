"""Mask and depth metrics as pure tensor functions (no state).

Every metric is computed from sums (``mask_confusion``, ``depth_sums``) and finished from them
(``finalize_mask``, ``finalize_depth``), so the stateful classes in :mod:`mdeas.metrics.classes` reuse the
same formulas: ``mask_metrics = finalize_mask(*mask_confusion(...))`` and
``depth_metrics = finalize_depth(depth_sums(...))``. Mask pixels are counted by torchmetrics'
``binary_stat_scores`` (int64) on the labels of :func:`mask_labels`; depth sums are float64.
"""

from __future__ import annotations

import math

import kornia
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_stat_scores

SSIM_WINDOW = 11
"""Gaussian window side (sigma 1.5, fixed by kornia) used by every SSIM in the package."""

MASK_KEYS = ("iou", "dice", "accuracy", "precision", "recall")
MASK_IGNORE = -1
"""Target label of a pixel that is not counted (``valid`` False), torchmetrics' ``ignore_index``."""
DEPTH_KEYS = ("rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "delta1", "delta2", "delta3", "ssim")
DEPTH_SUM_KEYS = (
    "count",
    "sq_err",
    "abs_rel",
    "sq_rel",
    "sq_log_err",
    "log10_err",
    "delta1",
    "delta2",
    "delta3",
    "ssim",
)


def ssim_map(img1: Tensor, img2: Tensor, window_size: int = SSIM_WINDOW, max_val: float = 1.0) -> Tensor:
    """SSIM index map of two ``[B,C,H,W]`` images, same shape out, float32 (float64 inputs stay float64).

    ``kornia.metrics.ssim``: Gaussian window ``window_size`` x ``window_size`` with sigma 1.5,
    C1 = (0.01 max_val)^2, C2 = (0.03 max_val)^2, ``padding="same"``, i.e. the moments are filtered after
    **reflect** padding and the map keeps ``(H, W)``. No epsilon is added to the denominator (C1 and C2 keep
    it positive), which matches the reference formula. Runs with autocast off; H and W must exceed
    ``window_size // 2`` (a reflect-padding requirement).
    """
    if img1.shape != img2.shape or img1.dim() != 4:
        raise ValueError(
            f"ssim needs two [B,C,H,W] tensors of one shape, got {tuple(img1.shape)} and {tuple(img2.shape)}"
        )
    h, w = img1.shape[-2:]
    if min(h, w) <= window_size // 2:
        raise ValueError(
            f"ssim with a {window_size}x{window_size} window and reflect padding needs H and W > "
            f"{window_size // 2}, got {h}x{w}"
        )
    dtype = torch.float64 if torch.float64 in (img1.dtype, img2.dtype) else torch.float32
    with torch.autocast(device_type=img1.device.type, enabled=False):
        return kornia.metrics.ssim(
            img1.to(dtype), img2.to(dtype), window_size=window_size, max_val=float(max_val), eps=0.0
        )


def _probs(pred: Tensor, from_logits: bool) -> Tensor:
    pred = pred.detach().float()
    return torch.sigmoid(pred) if from_logits else pred


def mask_labels(
    pred: Tensor,
    target: Tensor,
    threshold: float = 0.5,
    from_logits: bool = True,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """int64 labels ``(pred, target)`` of ``[B,1,H,W]`` masks, for torchmetrics' binary stat scores.

    pred: logits (``from_logits=True``, passed through the sigmoid) or probabilities (used as they are); label 1
    where the probability is ``> threshold``. Thresholding here means torchmetrics never guesses from the value
    range whether ``pred`` holds logits. target: label 1 where ``> 0.5``, 0 elsewhere, and ``MASK_IGNORE`` where
    the optional bool ``valid`` is False.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p = (_probs(pred, from_logits) > threshold).long()
        t = (target.detach().float() > 0.5).long()
    if valid is not None:
        t = torch.where(valid.to(torch.bool).expand_as(t), t, MASK_IGNORE)
    return p, t


def mask_confusion(
    pred: Tensor,
    target: Tensor,
    threshold: float = 0.5,
    from_logits: bool = True,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixel counts ``(tp, fp, fn, tn)`` over the whole batch, float64 scalars.

    pred, target, threshold, from_logits, valid: as in :func:`mask_labels`; counted by torchmetrics'
    ``binary_stat_scores`` (global over the batch, ``valid`` False pixels ignored).
    """
    p, t = mask_labels(pred, target, threshold, from_logits, valid)
    tp, fp, tn, fn, _ = binary_stat_scores(p, t, ignore_index=MASK_IGNORE, validate_args=False).to(torch.float64)
    return tp, fp, fn, tn


def _ratio(num: Tensor, den: Tensor, empty: Tensor) -> Tensor:
    """``num / den``, and where ``den == 0`` the value ``empty`` instead (never NaN)."""
    return torch.where(den > 0, num / den.clamp_min(1), empty)


def finalize_mask(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor) -> dict[str, Tensor]:
    """IoU, Dice, accuracy, precision and recall (float64 scalars) from micro-averaged pixel counts.

    A 0/0 ratio is 1 when there is neither foreground nor predicted foreground (``tp + fp + fn == 0``: a
    perfect empty prediction) and 0 otherwise (e.g. precision when nothing is predicted but an object is
    there). torchmetrics' ``zero_division`` is one constant for every 0/0, so its precision and recall cannot
    follow this rule; hence these formulas, on torchmetrics' counts.
    """
    tp, fp, fn, tn = (x.to(torch.float64) for x in (tp, fp, fn, tn))
    perfect = (tp + fp + fn == 0).to(torch.float64)
    return {
        "iou": _ratio(tp, tp + fp + fn, perfect),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, perfect),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, torch.ones_like(tp)),
        "precision": _ratio(tp, tp + fp, perfect),
        "recall": _ratio(tp, tp + fn, perfect),
    }


def mask_metrics(
    pred: Tensor,
    target: Tensor,
    threshold: float = 0.5,
    from_logits: bool = True,
    valid: Tensor | None = None,
) -> dict[str, Tensor]:
    """Mask metrics of ``[B,1,H,W]`` logits/probabilities against a ``[B,1,H,W]`` {0,1} target.

    Keys ``iou, dice, accuracy, precision, recall``; micro-averaged over every pixel of the batch; float64.
    """
    return finalize_mask(*mask_confusion(pred, target, threshold, from_logits, valid))


def depth_sums(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-3,
) -> dict[str, Tensor]:
    """Per-pixel sums (float64 scalars, keys ``DEPTH_SUM_KEYS``) for the depth metrics.

    pred, target: ``[B,1,H,W]`` normalised depth in [0, 1]; both are multiplied by ``scale`` (the dataset's
    unit) and pred is clamped to ``[eps * scale, scale]``. Pixels count where ``valid`` (bool ``[B,1,H,W]``,
    optional) and ``target > 0``. ``count`` is the number of counted pixels; ``ssim`` sums the SSIM map of the
    normalised maps (pred clamped to ``[eps, 1]``, uncounted target pixels set to 0, see :func:`ssim_map`) over the
    counted pixels. Uncounted target pixels may hold anything (NaN, inf): no metric reads their values.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred_n = pred.detach().float().clamp(eps, 1.0)
        target_n = target.detach().float()
        m = target_n > 0
        if valid is not None:
            m = m & valid.to(torch.bool).expand_as(m)
        mf = m.to(torch.float64)

        # uncounted pixels read as 0 ("unknown") inside their counted neighbours' windows, whatever they hold
        target_n = torch.where(m, target_n, 0.0)
        ssim = torch.where(m, ssim_map(pred_n, target_n), 0.0).sum(dtype=torch.float64)

        # float64 for the pointwise terms; counted-out pixels become gt = pred = 1 so no log/division sees 0
        one = torch.ones((), dtype=torch.float64, device=pred.device)
        gt = torch.where(m, target_n.to(torch.float64) * scale, one)
        pr = torch.where(m, pred_n.to(torch.float64) * scale, one)
        err = gt - pr
        log_err = torch.log(gt) - torch.log(pr)
        ratio = torch.maximum(gt / pr, pr / gt)
        sums = {
            "count": mf.sum(),
            "sq_err": (err**2).sum(),
            "abs_rel": (err.abs() / gt).sum(),
            "sq_rel": (err**2 / gt).sum(),
            "sq_log_err": (log_err**2).sum(),
            "log10_err": (log_err.abs() / math.log(10.0)).sum(),
            "ssim": ssim,
        }
        for k in (1, 2, 3):
            sums[f"delta{k}"] = ((ratio < 1.25**k) & m).sum(dtype=torch.float64)
    return sums


def finalize_depth(sums: dict[str, Tensor]) -> dict[str, Tensor]:
    """Depth metrics (float64 scalars) from :func:`depth_sums` (or their totals over many batches).

    Keys ``DEPTH_KEYS`` plus ``count``. RMSE = sqrt(sum sq_err / count), RMSE-log likewise, the others are
    sums / count. With ``count == 0`` every metric is 0 (never NaN): callers skip such results by ``count``.
    """
    count = sums["count"].to(torch.float64)
    n = count.clamp_min(1)

    def mean(key: str) -> Tensor:
        return sums[key].to(torch.float64) / n

    return {
        "rmse": mean("sq_err").sqrt(),
        "abs_rel": mean("abs_rel"),
        "sq_rel": mean("sq_rel"),
        "rmse_log": mean("sq_log_err").sqrt(),
        "log10": mean("log10_err"),
        "delta1": mean("delta1"),
        "delta2": mean("delta2"),
        "delta3": mean("delta3"),
        "ssim": mean("ssim"),
        "count": count,
    }


def depth_metrics(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-3,
) -> dict[str, Tensor]:
    """Depth metrics of ``[B,1,H,W]`` normalised prediction vs target over valid pixels, in ``scale`` units.

    Keys ``rmse, abs_rel, sq_rel, rmse_log, log10, delta1, delta2, delta3, ssim`` and ``count`` (number of
    pixels used; all metrics are 0 when it is 0). Per-pixel (micro) averages over the batch; float64.
    """
    return finalize_depth(depth_sums(pred, target, valid, scale, eps))
