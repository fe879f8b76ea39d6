"""Known-background alpha on a mask's outline, at native size.

A composite is I = α·F + (1 − α)·B at each pixel, with B the background (given: bg) and F the object's colour. Near
the predicted outline, F is taken as the mean colour of fg_bg over the confidently foreground pixels within `radius`
px, and α is solved in closed form as the projection of I − B on F − B (difference matting with a known backing):

    α = ⟨I − B, F − B⟩ / |F − B|²

Where the object's colour stands out from the background (|F − B| ≥ `min_contrast`) the mask there becomes α > 0.5;
elsewhere (an object in its background's colours, no confident foreground near) the model's logits stay.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from mdeas.config_values import finite_number, whole_number
from mdeas.metrics.morphology import erode, outline_band

MAX_PX = 64  # the largest band or radius accepted, in px


def _box_sum(x: torch.Tensor, px: int) -> torch.Tensor:
    """Sum of `x` [B, C, H, W] over the (2·px + 1)² window around each pixel (zero outside the image), from the
    summed-area table (float64): the same cost for any window."""
    k = 2 * px + 1
    table = F.pad(x.double(), (px + 1, px, px + 1, px)).cumsum(-1).cumsum(-2)
    return (table[..., k:, k:] - table[..., :-k, k:] - table[..., k:, :-k] + table[..., :-k, :-k]).to(x.dtype)


def inside_colour(
    logits: torch.Tensor, fg_bg: torch.Tensor, band: int = 1, radius: int = 6, confident: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The object colour F near each pixel as the outline step estimates it, from mask logits float [B, 1, H, W] and
    fg_bg float [B, 3, H, W]: (the mean of fg_bg over the confident foreground within `radius` px [B, 3, H, W],
    their count [B, 1, H, W]; F is 0 where the count is 0). Confident foreground: logit above `confident` and more
    than `band` px inside the predicted outline."""
    inside = erode((logits > 0).float(), band)
    sure = ((logits > confident) & (inside > 0)).float()
    sums = _box_sum(torch.cat([sure, fg_bg * sure], 1), radius)
    return sums[:, 1:] / sums[:, :1].clamp_min(1e-6), sums[:, :1]


def colour_alpha(
    logits: torch.Tensor,
    bg: torch.Tensor,
    fg_bg: torch.Tensor,
    band: int = 1,
    radius: int = 6,
    confident: float = 1.0,
    colour: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The known-background alpha at every pixel (module docstring), from mask logits float [B, 1, H, W] and
    images bg, fg_bg float [B, 3, H, W] (a per-channel offset and one common scale leave α as it is; scales that
    differ by channel, as ImageNet normalisation's nearly equal stds, change it where I − B is not along F − B). Returns
    (α unclamped, |F − B|² in the images' units, confident-foreground pixels counted within `radius`), each
    [B, 1, H, W]; where that count is 0 no colour F is known and α is meaningless. Confident foreground: logit above
    `confident` and more than `band` px inside the predicted outline. `colour`: the object's colour F [B, 3, H, W]
    where it is known (an oracle's, in the images' units); then it is used as given, and the count is 1 everywhere."""
    logits, bg, fg_bg = logits.float(), bg.float(), fg_bg.float()
    if colour is None:
        colour, weight = inside_colour(logits, fg_bg, band, radius, confident)
    else:
        weight = torch.ones_like(logits)
    contrast = colour.float() - bg
    contrast2 = contrast.square().sum(1, keepdim=True)
    alpha = ((fg_bg - bg) * contrast).sum(1, keepdim=True) / contrast2.clamp_min(1e-12)
    return alpha, contrast2, weight


class KnownBackgroundOutline:
    """Re-decide the mask on a band around its outline from the pair's colours (module docstring).

    `band`: px on either side of the predicted outline that are re-decided; `radius`: px around a pixel whose
    confident foreground gives its object colour; `confident`: least mask logit of a pixel counted as confident
    foreground (it must also lie inside the object, off the band); `min_contrast`: least |F − B| (RGB distance,
    0–1 scale) at which the colours decide."""

    def __init__(self, band: int = 1, radius: int = 6, confident: float = 1.0, min_contrast: float = 0.235) -> None:
        for key, value in (("band", band), ("radius", radius)):
            whole_number(value, f"outline.{key}", 1)
            if value > MAX_PX:  # the summed-area table pads each image by it
                raise ValueError(f"outline.{key} must be at most {MAX_PX} px, got {value}")
        confident = finite_number(confident, "outline.confident")
        if not finite_number(min_contrast, "outline.min_contrast") > 0:
            raise ValueError(f"outline.min_contrast must be positive, got {min_contrast}")
        self.band, self.radius, self.confident, self.min_contrast = band, radius, confident, min_contrast

    def __call__(
        self, logits: torch.Tensor, bg: torch.Tensor, fg_bg: torch.Tensor, colour: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mask logits float [B, 1, H, W] and RGB bg, fg_bg float [B, 3, H, W] in [0, 1] → logits [B, 1, H, W]:
        logit(α) (α clamped to [0.001, 0.999]) where the colours decide, the input logits elsewhere. `colour`: the
        object's true colour F [B, 3, H, W] in [0, 1] instead of the estimate (an oracle's, for experiments)."""
        logits = logits.float()
        alpha, contrast2, weight = colour_alpha(logits, bg, fg_bg, self.band, self.radius, self.confident, colour)
        foreground = (logits > 0).float()
        band = outline_band(foreground, self.band)
        decided = band & (weight > 0) & (contrast2 >= self.min_contrast**2)
        return torch.where(decided, torch.logit(alpha.clamp(0, 1), eps=1e-3), logits)

    def __repr__(self) -> str:
        return (
            f"KnownBackgroundOutline(band={self.band}, radius={self.radius}, confident={self.confident}, "
            f"min_contrast={self.min_contrast})"
        )


def from_config(options: Mapping[str, Any] | None) -> KnownBackgroundOutline | None:
    """The outline step of a CLI's `outline` options (conf/outline/*.yaml); None for none (outline=none)."""
    if options is None:
        return None
    accepted = list(inspect.signature(KnownBackgroundOutline).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown outline options {unknown}; known: {', '.join(accepted)}")
    return KnownBackgroundOutline(**options)
