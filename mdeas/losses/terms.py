"""Loss terms, one function each: ``fn(pred, target, valid=None, **kwargs) -> scalar tensor``.

pred, target: ``[B,1,H,W]`` float. Mask terms get mask **logits** as pred: the probability terms (dice,
soft_iou) always apply the sigmoid, the others do when given ``sigmoid=True``. valid: optional bool
``[B,1,H,W]`` (broadcastable), the pixels to include; the reduction is then the mean over valid pixels (0 when
there are none). Every term runs in float32 with autocast off, whatever the input dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from mdeas.metrics.functional import SSIM_WINDOW, ssim_map

Term = Callable[..., Tensor]
TERMS: dict[str, Term] = {}
"""Registry of loss terms by name."""


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

        TERMS[name] = wrapper
        return wrapper

    return deco


def get_term(name: str) -> Term:
    """The registered term called ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return TERMS[name]
    except KeyError:
        raise KeyError(f"unknown loss term {name!r}; known: {', '.join(sorted(TERMS))}") from None


def _mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``values``, over the ``valid`` pixels only when given (0 if none are valid)."""
    if valid is None:
        return values.mean()
    valid = valid.expand_as(values)
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


def _sum(values: Tensor, valid: Tensor | None) -> Tensor:
    return values.sum() if valid is None else torch.where(valid, values, 0.0).sum()


def _prob(pred: Tensor, sigmoid: bool) -> Tensor:
    return torch.sigmoid(pred) if sigmoid else pred


@_register("bce")
def bce(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Binary cross-entropy with logits: mean of ``-(t log s(x) + (1-t) log(1-s(x)))``."""
    return _mean(F.binary_cross_entropy_with_logits(pred, target, reduction="none"), valid)


@_register("dice")
def dice(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, smooth: float = 1e-6, squared: bool = False
) -> Tensor:
    """Soft Dice loss on ``p = sigmoid(pred)``, sums over the whole batch.

    ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)``; ``squared=True`` sums ``p^2`` and ``t^2`` in
    the denominator (seed 004's form, used there with ``smooth=1``).
    """
    p = torch.sigmoid(pred)
    inter = _sum(p * target, valid)
    den = _sum(p * p, valid) + _sum(target * target, valid) if squared else _sum(p, valid) + _sum(target, valid)
    return 1.0 - (2.0 * inter + smooth) / (den + smooth)


@_register("soft_iou")
def soft_iou(pred: Tensor, target: Tensor, valid: Tensor | None = None, smooth: float = 1e-6) -> Tensor:
    """Soft IoU loss on ``p = sigmoid(pred)``: ``1 - (sum(p t) + s) / (sum(p) + sum(t) - sum(p t) + s)``."""
    p = torch.sigmoid(pred)
    inter = _sum(p * target, valid)
    union = _sum(p, valid) + _sum(target, valid) - inter
    return 1.0 - (inter + smooth) / (union + smooth)


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
    """``sqrt(MSE + 1e-6)`` (on ``sigmoid(pred)`` with ``sigmoid=True``); 1e-6 keeps the gradient finite."""
    return torch.sqrt(_mean((_prob(pred, sigmoid) - target) ** 2, valid) + 1e-6)


@_register("smooth_l1")
def smooth_l1(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, beta: float = 1.0, sigmoid: bool = False
) -> Tensor:
    """Smooth L1 (Huber / beta): ``0.5 x^2 / beta`` if ``|x| < beta`` else ``|x| - 0.5 beta``."""
    values = F.smooth_l1_loss(_prob(pred, sigmoid), target, reduction="none", beta=beta)
    return _mean(values, valid)


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
    return 1.0 - _mean(ssim_map(_prob(pred, sigmoid), target, window_size=window_size), valid)


@_register("gradient_l1")
def gradient_l1(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, sigmoid: bool = False, mode: str = "sobel"
) -> Tensor:
    """L1 between spatial gradients (``kornia.filters.spatial_gradient``, normalised, replicate border), mean
    over the x and y components. With ``valid`` a pixel counts only if its whole 3x3 neighbourhood is valid.
    """
    gp = kornia.filters.spatial_gradient(_prob(pred, sigmoid), mode=mode)  # [B,C,2,H,W]
    gt = kornia.filters.spatial_gradient(target, mode=mode)
    if valid is not None:
        invalid = F.max_pool2d((~valid).float(), kernel_size=3, stride=1, padding=1) > 0
        valid = (~invalid).unsqueeze(2).expand_as(gp)
    return _mean((gp - gt).abs(), valid)
