"""Loss terms, one function each: ``fn(pred, target, valid=None, **kwargs) -> scalar tensor``.

pred, target: ``[B,1,H,W]`` float. Mask terms get mask **logits** as pred: ``bce``, ``focal`` and ``lovasz_hinge``
work on logits by definition; ``dice``, ``soft_iou`` and ``bce_dice`` apply the sigmoid unless given
``sigmoid=False`` (to compare probabilities or raw maps, e.g. depth); the regression terms compare
``sigmoid(pred)`` only when given ``sigmoid=True``. valid: optional bool ``[B,1,H,W]`` (broadcastable), the
pixels to include; the reduction is then over valid pixels only (0 when there are none). Every term runs in
float32 with autocast off, whatever the input dtype, and returns a float32 scalar.

SSIM terms: ``ssim`` is ``1 - SSIM`` (range [0, 2], what seed 002's weights assume); ``dssim`` is kornia's
``ssim_loss``, ``clip((1 - SSIM) / 2, 0, 1)`` (range [0, 1], the DenseDepth form).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from mdeas.metrics.functional import SSIM_WINDOW, known_depth, log_error_variance, ssim_map
from mdeas.metrics.morphology import erode, outline_band
from mdeas.registry import Registry

Term = Callable[..., Tensor]
TERMS = Registry("loss term", __name__)
"""The loss terms by name."""


def _register(name: str) -> Callable[[Term], Term]:
    """Register ``fn`` under ``name``, wrapped to run in float32 with autocast off and a bool ``valid``."""

    def deco(fn: Term) -> Term:
        @functools.wraps(fn)
        def wrapper(pred: Tensor, target: Tensor, valid: Tensor | None = None, **kwargs) -> Tensor:
            if pred.shape != target.shape:
                raise ValueError(
                    f"loss term {name!r}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
                )
            with torch.autocast(device_type=pred.device.type, enabled=False):
                v = None if valid is None else valid.to(torch.bool).expand_as(pred)
                return fn(pred.float(), target.float(), v, **kwargs)

        return TERMS.register(name)(wrapper)

    return deco


def _mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``values``, over the ``valid`` pixels only when given (0 if none are valid)."""
    if valid is None:
        return values.mean()
    valid = valid.expand_as(values)
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


def _sum(values: Tensor, valid: Tensor | None) -> Tensor:
    """Sum of ``values``, of the ``valid`` pixels only when given."""
    return (values if valid is None else torch.where(valid, values, 0.0)).sum()


def _prob(pred: Tensor, sigmoid: bool) -> Tensor:
    return torch.sigmoid(pred) if sigmoid else pred


# ---------------------------------------------------------------- mask (classification) terms


@_register("bce")
def bce(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Binary cross-entropy with logits: mean of ``-(t log s(x) + (1-t) log(1-s(x)))``."""
    return _mean(F.binary_cross_entropy_with_logits(pred, target, reduction="none"), valid)


@_register("boundary_bce")
def boundary_bce(pred: Tensor, target: Tensor, valid: Tensor | None = None, width: int = 2) -> Tensor:
    """BCE with logits averaged over the band within ``width`` px of the target's outline (the pixels whose
    (2·width + 1)² square holds both classes), 0 where a target has no outline. Whole-image BCE and Dice spread
    their weight over pixels that are easy; this term puts it where a mask is decided to the pixel."""
    labels = (target > 0.5).float()
    band = outline_band(labels, width)
    return bce(pred, target, band if valid is None else band & valid)


@_register("dice")
def dice(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    smooth: float = 1e-6,
    squared: bool = False,
    sigmoid: bool = True,
) -> Tensor:
    """Soft Dice loss on ``p = sigmoid(pred)`` (``p = pred`` with ``sigmoid=False``), sums over the whole batch.

    ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)``: ``smooth=1e-6`` is seed 000's and 001's form.
    ``squared=True`` sums ``p^2`` and ``t^2`` in the denominator: seed 004's ``1 - (2I + 1) / (sum p^2 + sum t^2
    + 1)`` with ``smooth=1``, which is minimal at ``p = t`` for any real ``p`` (seed 004 used it on depth).
    """
    p = _prob(pred, sigmoid)
    inter = _sum(p * target, valid)
    den = _sum(p * p, valid) + _sum(target * target, valid) if squared else _sum(p, valid) + _sum(target, valid)
    return 1.0 - (2.0 * inter + smooth) / (den + smooth)


@_register("bce_dice")
def bce_dice(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, smooth: float = 1e-6, sigmoid: bool = True
) -> Tensor:
    """``bce + dice`` on the same map (seed 001's "Dice + BCE"): logits, or with ``sigmoid=False`` probabilities
    in [0, 1] (the cross-entropy then on ``clamp(pred, 1e-6, 1 - 1e-6)``)."""
    if sigmoid:
        cross = bce(pred, target, valid)
    else:
        probabilities = pred.clamp(1e-6, 1.0 - 1e-6)
        cross = _mean(F.binary_cross_entropy(probabilities, target, reduction="none"), valid)
    return cross + dice(pred, target, valid, smooth=smooth, sigmoid=sigmoid)


@_register("soft_iou")
def soft_iou(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, smooth: float = 1e-6, sigmoid: bool = True
) -> Tensor:
    """Soft IoU loss on ``p = sigmoid(pred)``: ``1 - (sum(p t) + s) / (sum(p) + sum(t) - sum(p t) + s)``."""
    p = _prob(pred, sigmoid)
    inter = _sum(p * target, valid)
    union = _sum(p, valid) + _sum(target, valid) - inter
    return 1.0 - (inter + smooth) / (union + smooth)


@_register("focal")
def focal(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, alpha: float | None = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss on logits (Lin et al. 2017): mean of ``-a_t (1 - p_t)^gamma log(p_t)``, by
    ``kornia.losses.binary_focal_loss_with_logits``.

    ``p_t = p`` where ``t = 1`` and ``1 - p`` where ``t = 0``; ``a_t = alpha`` / ``1 - alpha`` likewise (no
    weighting with ``alpha=None``). ``gamma=0, alpha=None`` is ``bce``. The per-pixel map is averaged here, over
    the ``valid`` pixels when given (kornia's ``ignore_index`` would keep ignored pixels in the denominator).
    """
    values = kornia.losses.binary_focal_loss_with_logits(pred, target, alpha=alpha, gamma=gamma, reduction="none")
    return _mean(values, valid)


@_register("lovasz_hinge")
def lovasz_hinge(pred: Tensor, target: Tensor, valid: Tensor | None = None, per_image: bool = True) -> Tensor:
    """Binary Lovasz hinge on logits, a convex surrogate of ``1 - IoU`` (Berman et al. 2018), by
    ``kornia.losses.lovasz_hinge_loss``.

    ``per_image=True`` (the paper's default): the loss of each image's (valid) pixels, averaged over the batch (an
    image without valid pixels counts 0); ``per_image=False``: one loss over all pixels of the batch. Labels are
    ``target > 0.5``. An empty target predicted empty (all logits <= -1) costs 0. Invalid pixels enter kornia as
    background with logit ``-inf``: their hinge error ``-inf`` sorts them after every valid pixel, where they
    neither add an error nor change the Jaccard weights of the valid ones.
    """
    labels = (target > 0.5).to(pred.dtype)
    if valid is not None:
        pred = torch.where(valid, pred, float("-inf"))
        labels = torch.where(valid, labels, 0.0)
    if not per_image:
        pred, labels = pred.reshape(1, 1, 1, -1), labels.reshape(1, 1, 1, -1)
    return kornia.losses.lovasz_hinge_loss(pred, labels[:, 0])


# ---------------------------------------------------------------- regression (depth) terms


@_register("mse")
def mse(pred: Tensor, target: Tensor, valid: Tensor | None = None, sigmoid: bool = False) -> Tensor:
    """Mean squared error (on ``sigmoid(pred)`` with ``sigmoid=True``)."""
    return _mean((_prob(pred, sigmoid) - target) ** 2, valid)


@_register("l1")
def l1(pred: Tensor, target: Tensor, valid: Tensor | None = None, sigmoid: bool = False) -> Tensor:
    """Mean absolute error (on ``sigmoid(pred)`` with ``sigmoid=True``)."""
    return _mean((_prob(pred, sigmoid) - target).abs(), valid)


@_register("rmse")
def rmse(pred: Tensor, target: Tensor, valid: Tensor | None = None, sigmoid: bool = False) -> Tensor:
    """``sqrt(MSE + 1e-6)`` (on ``sigmoid(pred)`` with ``sigmoid=True``); 1e-6 keeps the gradient finite. 0 when no
    pixel is valid."""
    value = torch.sqrt(_mean((_prob(pred, sigmoid) - target) ** 2, valid) + 1e-6)
    return value if valid is None else torch.where(valid.any(), value, 0.0)


@_register("smooth_l1")
def smooth_l1(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, beta: float = 1.0, sigmoid: bool = False
) -> Tensor:
    """Smooth L1: ``0.5 x^2 / beta`` if ``|x| < beta`` else ``|x| - 0.5 beta`` (``torch.nn.SmoothL1Loss``)."""
    return _mean(F.smooth_l1_loss(_prob(pred, sigmoid), target, reduction="none", beta=beta), valid)


@_register("huber")
def huber(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, delta: float = 1.0, sigmoid: bool = False
) -> Tensor:
    """Huber: ``0.5 x^2`` if ``|x| < delta`` else ``delta (|x| - 0.5 delta)`` (``delta * smooth_l1(beta=delta)``)."""
    return _mean(F.huber_loss(_prob(pred, sigmoid), target, reduction="none", delta=delta), valid)


@_register("berhu")
def berhu(pred: Tensor, target: Tensor, valid: Tensor | None = None, sigmoid: bool = False) -> Tensor:
    """Reverse Huber: ``|x|`` if ``|x| <= c`` else ``(x^2 + c^2) / (2c)``, ``x = pred - target``.

    ``c = 0.2 * max|x|`` over the batch's (valid) pixels, detached, and at least 1e-6 so that a perfect
    prediction keeps a finite gradient.
    """
    diff = (_prob(pred, sigmoid) - target).abs()
    worst = diff.detach() if valid is None else torch.where(valid, diff.detach(), 0.0)
    c = (0.2 * worst.max()).clamp_min(1e-6)
    values = torch.where(diff <= c, diff, (diff * diff + c * c) / (2.0 * c))
    return _mean(values, valid)


@_register("silog")
def silog(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    lam: float = 0.5,
    eps: float = 1e-3,
    root: bool = False,
) -> Tensor:
    """Scale-invariant log loss (Eigen et al. 2014) per image, averaged over images with known pixels.

    ``d = log(max(pred, eps)) - log(target)`` over the image's n valid pixels with ``target > 0``;
    ``mean(d^2) - lam * mean(d)^2`` (Eigen's training loss: ``lam=0`` is the MSE of log depth, ``lam=1`` is fully
    scale-invariant, Eigen trained with 0.5). ``root=True`` is BTS's and AdaBins' form
    ``10 * sqrt(mean(d^2) - lam * mean(d)^2)`` (they use ``lam=0.85``; the square root is taken at 1e-12 or more).
    Depth is compared in the normalised unit (the loss does not depend on it for ``lam=1``); 0 when no pixel is
    known. A pixel predicted below ``eps`` gets no gradient from this term.
    """
    known = known_depth(target, valid)
    d = torch.where(known, torch.log(pred.clamp_min(eps)) - torch.log(target.clamp_min(eps)), 0.0)
    per_image = log_error_variance(d, known, lam)
    if root:
        per_image = 10.0 * per_image.clamp_min(1e-12).sqrt()
    has = known.flatten(1).any(1).to(pred.dtype)
    return (per_image * has).sum() / has.sum().clamp_min(1)


@_register("log_l1")
def log_l1(pred: Tensor, target: Tensor, valid: Tensor | None = None, eps: float = 1e-3) -> Tensor:
    """L1 of log depth: mean of ``|log max(pred, eps) - log max(target, eps)|`` over valid pixels with
    ``target > 0``.

    Depth is normalised (metres / the dataset's max depth), so ``eps`` is a fraction of that range: 1e-3 is 2 cm at
    20 m, the floor the depth metrics clamp predictions to. A pixel predicted below ``eps`` gets no gradient from
    this term.
    """
    diff = torch.log(pred.clamp_min(eps)) - torch.log(target.clamp_min(eps))
    return _mean(diff.abs(), known_depth(target, valid))


@_register("inverse_l1")
def inverse_l1(pred: Tensor, target: Tensor, valid: Tensor | None = None, eps: float = 1e-2) -> Tensor:
    """L1 of inverse depth: mean of ``|1 / max(pred, eps) - 1 / max(target, eps)|`` over valid pixels with
    ``target > 0``.

    Depth is normalised (metres / the dataset's max depth), so inverse depth is in units of 1 / max depth and
    ``1 / eps`` bounds it: the default 1e-2 (20 cm at 20 m) caps a pixel's inverse depth at 100 and its gradient at
    1e4. A pixel predicted below ``eps`` gets no gradient from this term.
    """
    diff = 1.0 / pred.clamp_min(eps) - 1.0 / target.clamp_min(eps)
    return _mean(diff.abs(), known_depth(target, valid))


def _lower_median(values: Tensor, known: Tensor) -> Tensor:
    """Lower median of each image's known values, ``[B,1,1,1]`` (0 for an image with none); differentiable."""
    flat = torch.where(known, values, float("nan")).flatten(1)
    median = torch.nanmedian(flat, dim=1).values
    return torch.where(known.flatten(1).any(dim=1), median, 0.0).view(-1, 1, 1, 1)


def _ssi_normalise(values: Tensor, known: Tensor) -> Tensor:
    """``(x - median(x)) / mean|x - median(x)|`` per image over known pixels (the mean at least 1e-6); 0 at unknown
    pixels."""
    centred = torch.where(known, values - _lower_median(values, known), 0.0)
    n = known.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    spread = (centred.abs().sum(dim=(1, 2, 3), keepdim=True) / n).clamp_min(1e-6)
    return centred / spread


def gradient_matching(pred: Tensor, target: Tensor, valid: Tensor | None = None, scales: int = 4) -> Tensor:
    """Multi-scale gradient matching (Li & Snavely 2018, as MiDaS trains), ``[B,1,H,W]`` maps, float32 scalar.

    With ``R = pred - target``, at scale k = 0 .. scales-1 (every 2^k-th row and column): the sum over horizontal
    and vertical neighbour pairs that are both valid of ``|R(p) - R(q)|``, divided by the image's valid pixels at
    that scale; summed over scales, averaged over images with valid pixels. Invariant to a constant offset between
    pred and target.
    """
    valid = torch.ones_like(pred, dtype=torch.bool) if valid is None else valid.expand_as(pred)
    has = valid.flatten(1).any(dim=1).to(pred.dtype)
    diff = torch.where(valid, pred - target, 0.0)
    per_image = torch.zeros_like(has)
    for k in range(scales):
        step = 2**k
        r, m = diff[..., ::step, ::step], valid[..., ::step, ::step]
        gx = torch.where(m[..., :, 1:] & m[..., :, :-1], (r[..., :, 1:] - r[..., :, :-1]).abs(), 0.0)
        gy = torch.where(m[..., 1:, :] & m[..., :-1, :], (r[..., 1:, :] - r[..., :-1, :]).abs(), 0.0)
        n = m.sum(dim=(1, 2, 3)).clamp_min(1)
        per_image = per_image + (gx.sum(dim=(1, 2, 3)) + gy.sum(dim=(1, 2, 3))) / n
    return (per_image * has).sum() / has.sum().clamp_min(1)


@_register("ssi")
def ssi(pred: Tensor, target: Tensor, valid: Tensor | None = None, alpha: float = 0.5, scales: int = 4) -> Tensor:
    """Scale-and-shift-invariant MAE plus multi-scale gradient matching (Ranftl et al. 2020, MiDaS).

    Per image, pred and target are each aligned over the known pixels (``valid`` and ``target > 0``) to median 0
    and mean absolute deviation 1: ``x_hat = (x - median(x)) / mean|x - median(x)|``. The loss is half the mean
    of ``|pred_hat - target_hat|`` per image (MiDaS's ``1 / 2M``), averaged over images with known pixels, plus
    ``alpha`` times :func:`gradient_matching` of ``pred_hat`` against ``target_hat`` over ``scales`` scales. 0 for any
    ``pred = a * target + b`` with ``a > 0``: for relative depth known up to scale and shift (the seeds' maps).
    """
    known = known_depth(target, valid)
    pred_hat, target_hat = _ssi_normalise(pred, known), _ssi_normalise(target, known)
    n = known.sum(dim=(1, 2, 3))
    per_image = (pred_hat - target_hat).abs().sum(dim=(1, 2, 3)) / (2 * n.clamp_min(1))
    has = (n > 0).to(pred.dtype)
    data = (per_image * has).sum() / has.sum().clamp_min(1)
    return data + alpha * gradient_matching(pred_hat, target_hat, known, scales)


# ---------------------------------------------------------------- structure terms


@_register("ssim")
def ssim(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    sigmoid: bool = False,
    window_size: int = SSIM_WINDOW,
) -> Tensor:
    """``1 - mean SSIM`` by ``kornia.metrics.ssim``: 11x11 Gaussian window, sigma 1.5, C1 = 0.01^2,
    C2 = 0.03^2 (data range 1), reflect padding (``padding="same"``: the map keeps H x W, which must
    exceed 5 x 5).

    With ``valid`` the SSIM map is averaged over valid pixels; invalid pixels still enter the windows of their
    valid neighbours. ``sigmoid=True`` compares ``sigmoid(pred)`` (for mask logits).
    """
    dissimilarity = 1.0 - ssim_map(_prob(pred, sigmoid), target, window_size=window_size)
    return _mean(dissimilarity, valid)  # 0, not 1, when no pixel is valid


@_register("dssim")
def dssim(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    sigmoid: bool = False,
    window_size: int = SSIM_WINDOW,
) -> Tensor:
    """Structural dissimilarity ``mean(clip((1 - SSIM) / 2, 0, 1))`` = ``kornia.losses.ssim_loss``, i.e. half of
    ``ssim`` (SSIM lies in [-1, 1], so the clip never binds). The SSIM map, window and ``valid`` as in ``ssim``.
    Seeds 001 and 003 used this form (kornia's ``SSIM`` loss; 001 with ``window_size=3``).
    """
    values = ((1.0 - ssim_map(_prob(pred, sigmoid), target, window_size=window_size)) / 2.0).clamp(0.0, 1.0)
    return _mean(values, valid)


@_register("gradient_l1")
def gradient_l1(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, sigmoid: bool = False, mode: str = "sobel"
) -> Tensor:
    """Edge loss: ``mean(|dy(pred) - dy(t)| + |dx(pred) - dx(t)|)`` (DenseDepth's and seed 001's form), gradients
    by ``kornia.filters.spatial_gradient`` (normalised, replicate border). With ``valid`` a pixel counts only if its
    whole 3x3 neighbourhood is valid.
    """
    gp = kornia.filters.spatial_gradient(_prob(pred, sigmoid), mode=mode)  # [B,C,2,H,W]
    gt = kornia.filters.spatial_gradient(target, mode=mode)
    diff = (gp - gt).abs().sum(dim=2)  # |d/dx| + |d/dy|, [B,C,H,W]
    if valid is not None:
        valid = erode(valid.float(), 1) == 1
    return _mean(diff, valid)


@_register("densedepth")
def densedepth(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    w_ssim: float = 1.0,
    w_edge: float = 1.0,
    w_l1: float = 0.1,
    window_size: int = SSIM_WINDOW,
) -> Tensor:
    """DenseDepth's depth loss (Alhashim & Wonka 2018): ``1.0 dssim + 1.0 gradient_l1 + 0.1 l1`` by default."""
    return (
        w_ssim * dssim(pred, target, valid, window_size=window_size)
        + w_edge * gradient_l1(pred, target, valid)
        + w_l1 * l1(pred, target, valid)
    )
