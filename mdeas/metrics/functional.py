"""Mask and depth metrics as pure tensor functions (no state).

Every metric is computed from sums (``mask_confusion``, ``depth_sums``, ``depth_image_sums``) and finished from
them (``finalize_mask``, ``finalize_depth``, ``finalize_depth_images``), so the stateful classes in
:mod:`mdeas.metrics.classes` reuse the same formulas: ``mask_metrics = finalize_mask(*mask_confusion(...))``,
``depth_metrics = finalize_depth(depth_sums(...))`` (pooled over pixels) and
``depth_image_metrics = finalize_depth_images(depth_image_sums(...))`` (per image, then averaged over images: the
median-scaled, scale-and-shift-aligned and SILog numbers as depth papers report them). Mask pixels are counted by
torchmetrics' ``binary_stat_scores`` (int64) on the labels of :func:`mask_labels`; depth sums are float64.
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


def known_depth(depth: Tensor, valid: Tensor | None = None) -> Tensor:
    """Bool, ``depth``'s shape: the pixels whose depth is known, ``valid`` (any dtype, broadcast; when given) and
    ``depth > 0`` (0 is unknown, e.g. a gray8 0)."""
    known = depth > 0
    return known if valid is None else known & valid.to(torch.bool).expand_as(known)


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


def _logit(probability: float) -> float:
    """The logit whose sigmoid is `probability`: -inf at 0, inf at 1."""
    if probability <= 0 or probability >= 1:
        return math.copysign(math.inf, probability - 0.5)
    return math.log(probability / (1 - probability))


def mask_labels(
    pred: Tensor,
    target: Tensor,
    threshold: float = 0.5,
    from_logits: bool = True,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """int64 labels ``(pred, target)`` of ``[B,1,H,W]`` masks, for torchmetrics' binary stat scores.

    pred: logits (``from_logits=True``) or probabilities; label 1 where the probability is ``> threshold``, decided
    for logits against the threshold's logit (0 for 0.5), as a float32 sigmoid would round logits within 3e-8 of 0
    to 0.5 and call them background where the outline step and ``logits > 0`` call them object. Thresholding here
    means torchmetrics never guesses from the value range whether ``pred`` holds logits. target: label 1
    where ``> 0.5``, 0 elsewhere, and ``MASK_IGNORE`` where the optional bool ``valid`` is False.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p = (pred.detach().float() > (_logit(threshold) if from_logits else threshold)).long()
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
    normalised maps (pred clamped to ``[eps, 1]``, uncounted pixels set to 0 in both, see :func:`ssim_map`) over
    the counted pixels. Uncounted target pixels may hold anything (NaN, inf): no metric reads their values.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred_n = pred.detach().float().clamp(eps, 1.0)
        target_n = target.detach().float()
        m = known_depth(target_n, valid)
        mf = m.to(torch.float64)

        # uncounted pixels read as 0 ("unknown") in both maps inside their counted neighbours' windows, whatever
        # they hold: the prediction is not asked to predict a hole
        target_n = torch.where(m, target_n, 0.0)
        ssim = torch.where(m, ssim_map(torch.where(m, pred_n, 0.0), target_n), 0.0).sum(dtype=torch.float64)

        pr, gt, _, _ = _counted(pred_n, target_n, valid, scale)  # float64; 1 in both where not counted
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


# ---------------------------------------------------------------- per-image depth metrics (depth papers' protocols)

IMAGE_KEYS = ("delta1_median", "abs_rel_median", "delta1_ssi", "abs_rel_ssi", "silog")
IMAGE_SUM_KEYS = ("images", *IMAGE_KEYS)
ALIGN_SPACES = ("depth", "inverse")
SILOG_LAMBDA = 1.0
"""λ of the reported SILog: 1 (fully scale-invariant), as the KITTI benchmark and BTS's/AdaBins' evaluation."""

_IMAGE_DIMS = (1, 2, 3)


def _counted(pred: Tensor, target: Tensor, valid: Tensor | None, scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """float64 ``(pred, target)`` ``[B,1,H,W]`` in ``scale`` units, the bool counted mask and per-image counts ``[B]``.

    Counted: ``valid`` and ``target > 0``, as in :func:`depth_sums`. Uncounted pixels hold 1 in both maps, so no
    log or division ever sees their values; pred is not clamped here.
    """
    pred64 = pred.detach().to(torch.float64)
    target64 = target.detach().to(torch.float64)
    m = known_depth(target64, valid)
    one = torch.ones((), dtype=torch.float64, device=pred.device)
    pr = torch.where(m, pred64 * scale, one)
    gt = torch.where(m, target64 * scale, one)
    return pr, gt, m, m.sum(dim=_IMAGE_DIMS)


def _image_mean(values: Tensor, m: Tensor, n: Tensor) -> Tensor:
    """Mean of ``values`` ``[B,1,H,W]`` over each image's counted pixels, ``[B]`` (0 for an image with none)."""
    return torch.where(m, values, 0.0).sum(dim=_IMAGE_DIMS) / n.clamp_min(1)


def log_error_variance(d: Tensor, known: Tensor, lam: float) -> Tensor:
    """Per image ``[B]``: ``mean(d^2) - lam * mean(d)^2`` of log errors ``d`` ``[B,1,H,W]`` over its bool ``known``
    pixels (0 for an image with none); differentiable (the SILog loss and metric)."""
    n = known.sum(dim=_IMAGE_DIMS).to(d.dtype)
    mean_d = _image_mean(d, known, n)
    return _image_mean(d * d, known, n) - lam * mean_d**2


def _median_per_image(values: Tensor, m: Tensor, n: Tensor) -> Tensor:
    """Median of ``values`` over each image's counted pixels, ``[B]``: the middle value, or the mean of the two
    middle values for an even count (``numpy.median``); 1 for an image with none."""
    ordered = torch.where(m, values, math.inf).flatten(1).sort(dim=1).values
    lo, hi = ((n - 1).clamp_min(0) // 2)[:, None], (n // 2)[:, None]
    middle = (ordered.gather(1, lo) + ordered.gather(1, hi))[:, 0] / 2
    return torch.where(n > 0, middle, 1.0)


def median_align(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, scale: float = 1.0, eps: float = 1e-3
) -> Tensor:
    """Per-image median scaling (monodepth2): pred x median(target) / median(pred) over each image's counted pixels.

    pred, target: ``[B,1,H,W]`` normalised depth; counted pixels as in :func:`depth_sums`. pred is clamped below at
    ``eps`` first (not above: the scaling rescales it). Returns float64 ``[B,1,H,W]`` in ``scale`` units, clamped to
    ``[eps * scale, scale]`` as the pooled metrics clamp their prediction; uncounted pixels hold 1.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pr, gt, m, n = _counted(pred.detach().float().clamp_min(eps), target, valid, scale)
        ratio = _median_per_image(gt, m, n) / _median_per_image(pr, m, n)
        return torch.where(m, (pr * ratio.view(-1, 1, 1, 1)).clamp(eps * scale, scale), 1.0)


def scale_shift_align(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-3,
    align: str = "depth",
) -> Tensor:
    """Per-image least-squares scale and shift (MiDaS): ``s x + t`` minimising ``sum (s x + t - y)^2`` over each
    image's counted pixels.

    ``align="depth"``: x, y are pred and target depth (pred as it is, unclamped); ``"inverse"``: their inverses
    (disparity; pred clamped below at ``eps``), and the aligned disparity, clamped below at ``1 / scale`` (depth at
    most the dataset's range), is turned back into depth. An image whose x is constant gets ``s = 0`` and ``t`` the
    mean of y (the least-squares solution). Returns float64 ``[B,1,H,W]`` depth in ``scale`` units, clamped to
    ``[eps * scale, scale]``; uncounted pixels hold 1.
    """
    if align not in ALIGN_SPACES:
        raise ValueError(f"align must be one of {ALIGN_SPACES}, got {align!r}")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred = pred.detach().float()
        pr, gt, m, n = _counted(pred if align == "depth" else pred.clamp_min(eps), target, valid, scale)
        x, y = (pr, gt) if align == "depth" else (1.0 / pr, 1.0 / gt)
        mean_x, mean_y = (_image_mean(v, m, n).view(-1, 1, 1, 1) for v in (x, y))
        dx = x - mean_x
        var = torch.where(m, dx * dx, 0.0).sum(dim=_IMAGE_DIMS)
        cov = torch.where(m, dx * (y - mean_y), 0.0).sum(dim=_IMAGE_DIMS)
        s = torch.where(var > 0, cov / torch.where(var > 0, var, 1.0), 0.0).view(-1, 1, 1, 1)
        aligned = mean_y + s * dx  # = s x + t in centred form, which stays exact for a near-constant x
        if align == "inverse":
            aligned = 1.0 / aligned.clamp_min(1.0 / scale)
        return torch.where(m, aligned.clamp(eps * scale, scale), 1.0)


def silog_per_image(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    eps: float = 1e-3,
    lam: float = SILOG_LAMBDA,
) -> Tensor:
    """Scale-invariant log error of each image (Eigen et al. 2014), ``[B]`` float64, 0 for an image without
    counted pixels.

    ``silog = 100 * sqrt(mean(d^2) - lam * mean(d)^2)`` with ``d = log(pred) - log(target)`` over the image's
    counted pixels (as in :func:`depth_sums`), pred clamped below at ``eps`` (not above). ``lam = 1`` (default) is
    ``100 *`` the standard deviation of ``d``, invariant to any scale of pred: the KITTI benchmark's SILog and what
    BTS and AdaBins report (their training loss uses ``lam = 0.85`` and a factor 10). Depth units cancel in ``d``.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pr, gt, m, n = _counted(pred.detach().float().clamp_min(eps), target, valid, 1.0)
        return 100.0 * log_error_variance(torch.log(pr) - torch.log(gt), m, lam).clamp_min(0.0).sqrt()


def _delta1_abs_rel(aligned: Tensor, gt: Tensor, m: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image δ1 (fraction with max(gt/pred, pred/gt) < 1.25) and AbsRel (mean |gt - pred| / gt), ``[B]``."""
    ratio = torch.maximum(gt / aligned, aligned / gt)
    return _image_mean((ratio < 1.25).to(torch.float64), m, n), _image_mean((gt - aligned).abs() / gt, m, n)


def depth_per_image(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-3,
    align: str = "depth",
    silog_lambda: float = SILOG_LAMBDA,
) -> dict[str, Tensor]:
    """Per-image depth metrics of ``[B,1,H,W]`` normalised pred vs target, each over the image's counted pixels.

    Keys ``IMAGE_KEYS``, float64 ``[B]``, plus ``count`` (counted pixels per image, int64 ``[B]``; every metric is 0
    where it is 0): ``delta1_median``, ``abs_rel_median`` after :func:`median_align`; ``delta1_ssi``,
    ``abs_rel_ssi`` after :func:`scale_shift_align` in ``align`` space; ``silog`` from :func:`silog_per_image`.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        _, gt, m, n = _counted(pred, target, valid, scale)
        d1_median, rel_median = _delta1_abs_rel(median_align(pred, target, valid, scale, eps), gt, m, n)
        d1_ssi, rel_ssi = _delta1_abs_rel(scale_shift_align(pred, target, valid, scale, eps, align), gt, m, n)
        silog = silog_per_image(pred, target, valid, eps, silog_lambda)
    return {
        "delta1_median": d1_median,
        "abs_rel_median": rel_median,
        "delta1_ssi": d1_ssi,
        "abs_rel_ssi": rel_ssi,
        "silog": silog,
        "count": n,
    }


def depth_image_sums(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-3,
    align: str = "depth",
    silog_lambda: float = SILOG_LAMBDA,
) -> dict[str, Tensor]:
    """Sums over the batch's images that have counted pixels (float64 scalars, keys ``IMAGE_SUM_KEYS``):
    ``images`` is their number, the others the sums of :func:`depth_per_image`'s values. Images without a counted
    pixel are skipped (not counted)."""
    values = depth_per_image(pred, target, valid, scale, eps, align, silog_lambda)
    has = values.pop("count") > 0
    sums = {key: torch.where(has, value, 0.0).sum() for key, value in values.items()}
    return {"images": has.sum(dtype=torch.float64), **sums}


def finalize_depth_images(sums: dict[str, Tensor]) -> dict[str, Tensor]:
    """Means over images (float64 scalars, keys ``IMAGE_KEYS`` plus ``images``) from :func:`depth_image_sums` or
    their totals; 0 when no image was counted."""
    images = sums["images"].to(torch.float64)
    return {key: sums[key].to(torch.float64) / images.clamp_min(1) for key in IMAGE_KEYS} | {"images": images}


def depth_image_metrics(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-3,
    align: str = "depth",
    silog_lambda: float = SILOG_LAMBDA,
) -> dict[str, Tensor]:
    """Per-image depth metrics averaged over the images with counted pixels (macro average; float64 scalars).

    Keys ``delta1_median, abs_rel_median, delta1_ssi, abs_rel_ssi, silog`` and ``images`` (images averaged; all
    metrics are 0 when it is 0). See :func:`depth_per_image`.
    """
    return finalize_depth_images(depth_image_sums(pred, target, valid, scale, eps, align, silog_lambda))
