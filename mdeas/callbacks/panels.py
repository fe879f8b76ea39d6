"""Labelled image panels of predictions: one row per sample, eight columns, a header row naming them.

Columns: bg | fg_bg | mask GT | mask pred (probability) | mask error | depth GT | depth pred | depth error. Depth
goes through the turbo colour map (near = blue, far = red) on one scale per row, the ground truth's valid range,
written on the depth GT tile (in metres; for relative depth as it is stored, 0–1); unknown depth is black. Errors
are signed on black: mask error is the thresholded (0.5) prediction − truth (red: extra, blue: missed; the pixels
IoU counts), depth error is (pred − GT) / the row's range (red: too far, blue: too near). Tiles are upsampled
(nearest) by a whole factor to at least `tile` px; the mask pred tile carries the sample's IoU at threshold 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import ColorMap, ColorMapType
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from mdeas.metrics.functional import known_depth
from mdeas.metrics.per_image import iou_per_image

COLUMNS = ("bg", "fg_bg", "mask GT", "mask pred", "mask error", "depth GT", "depth pred", "depth error")
GAP = 2  # px between tiles
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
RED, BLUE = (235, 70, 60), (80, 140, 255)
TURBO = ColorMap(ColorMapType.turbo, num_colors=256).colors  # float [3, 256] in [0, 1]
HINTS: dict[str, list[tuple[str, tuple[int, int, int]]]] = {  # coloured words under a column's name
    "mask error": [("extra", RED), (" · ", TEXT), ("missed", BLUE)],
    "depth GT": [("near", (70, 110, 240)), (" · ", TEXT), ("far", (200, 40, 20))],
    "depth error": [("too far", RED), (" · ", TEXT), ("too near", BLUE)],
}


def turbo(values: Tensor) -> Tensor:
    """[N,1,H,W] in [0, 1] → RGB [N,3,H,W] in [0, 1] through the turbo colour map (256 levels; NaN as 0)."""
    index = (values.nan_to_num(0.0).clamp(0, 1) * 255).round().long()[:, 0]  # [N,H,W]
    return TURBO.to(values.device)[:, index].permute(1, 0, 2, 3)


def signed(error: Tensor) -> Tensor:
    """[N,1,H,W] in [-1, 1] → RGB [N,3,H,W]: red for positive, blue for negative, black for 0."""
    error = error.clamp(-1, 1)
    return torch.cat([error.clamp(min=0), torch.zeros_like(error), (-error).clamp(min=0)], dim=1)


def depth_ranges(depth: Tensor, valid: Tensor, fallback: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row (low, high) [N,1,1,1] of normalised `depth` over `valid` pixels ([N,1,H,W]); rows without a valid
    pixel take the range of `fallback` (the prediction). High exceeds low by at least 1e-3."""
    known = known_depth(depth, valid)
    rows = known.flatten(1).any(1)
    source = torch.where(rows.view(-1, 1, 1, 1), depth, fallback)
    mask = torch.where(rows.view(-1, 1, 1, 1), known, torch.ones_like(known))
    low = torch.where(mask, source, torch.inf).flatten(1).amin(1)
    high = torch.where(mask, source, -torch.inf).flatten(1).amax(1)
    return low.view(-1, 1, 1, 1), torch.maximum(high.view(-1, 1, 1, 1), low.view(-1, 1, 1, 1) + 1e-3)


def panel_tiles(
    bg: Tensor, fg_bg: Tensor, mask: Tensor, mask_prob: Tensor, depth: Tensor, depth_pred: Tensor, valid: Tensor
) -> Tensor:
    """The eight RGB tiles of each row, [N, 8, 3, H, W] in [0, 1]: images [N,3,H,W] in [0, 1], masks and the mask
    probability [N,1,H,W] in [0, 1], normalised depth and prediction [N,1,H,W], `valid` [N,1,H,W] (depth known)."""
    known = known_depth(depth, valid)
    low, high = depth_ranges(depth, valid, depth_pred)
    span = high - low
    grey = [m.clamp(0, 1).expand(-1, 3, -1, -1) for m in (mask, mask_prob)]
    tiles = [
        bg.clamp(0, 1),
        fg_bg.clamp(0, 1),
        *grey,
        signed((mask_prob > 0.5).float() - mask),
        turbo((depth - low) / span) * known,
        turbo((depth_pred - low) / span),
        signed((depth_pred - depth) / span) * known,
    ]
    return torch.stack(tiles, dim=1)


def draw_panel(tiles: Tensor, captions: list[dict[int, str]], tile: int = 128) -> np.ndarray:
    """Lay out `tiles` [N, C, 3, H, W] (C = len(COLUMNS)) under a header of COLUMNS (and HINTS), each tile upsampled
    (nearest) by the smallest whole factor giving at least `tile` px; `captions[r][c]` is written on tile (r, c).
    Returns uint8 RGB [header + N·(h + GAP) + GAP, C·(w + GAP) + GAP, 3]."""
    n, c = tiles.shape[:2]
    factor = max(1, math.ceil(tile / min(tiles.shape[-2:])))
    big = F.interpolate(tiles.flatten(0, 1).float(), scale_factor=factor, mode="nearest").unflatten(0, (n, c))
    h, w = big.shape[-2:]
    font, small = (ImageFont.load_default(size=max(s, w // d)) for s, d in ((12, 9), (10, 11)))
    header = font.size + small.size + 4 * GAP
    canvas = np.empty((header + n * (h + GAP) + GAP, c * (w + GAP) + GAP, 3), np.uint8)
    canvas[:] = BACKGROUND
    pixels = (big.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    for r in range(n):
        for k in range(c):
            y, x = header + r * (h + GAP), GAP + k * (w + GAP)
            canvas[y : y + h, x : x + w] = pixels[r, k]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for k, name in enumerate(COLUMNS[:c]):
        x = GAP + k * (w + GAP) + 2
        draw.text((x, GAP), name, fill=TEXT, font=font)
        for word, colour in HINTS.get(name, []):
            draw.text((x, 2 * GAP + font.size), word, fill=colour, font=small)
            x += draw.textlength(word, font=small)
    for r, row in enumerate(captions):
        for k, text in row.items():
            xy = (GAP + k * (w + GAP) + 3, header + r * (h + GAP) + 2)
            draw.text(xy, text, fill=TEXT, font=small, stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(image)


def prediction_panel(
    bg: Tensor,
    fg_bg: Tensor,
    mask: Tensor,
    mask_logits: Tensor,
    depth: Tensor,
    depth_pred: Tensor,
    valid: Tensor,
    depth_scale_m: float | None,
    ids: list[str] | None = None,
    tile: int = 128,
    with_depth: bool = True,
) -> np.ndarray:
    """The panel of a batch (CPU tensors, shapes as `panel_tiles`; `mask_logits` the model's [N,1,H,W] logits),
    each row captioned with its id (on bg), its depth range in metres (`depth_scale_m` = depth 1.0; None: relative
    depth, the range as it is) and its IoU; without `with_depth` (a model that learns none) the mask columns only.
    Returns uint8 RGB [H', W', 3] (see `draw_panel`)."""
    prob = torch.sigmoid(mask_logits.float())
    iou = iou_per_image(prob > 0.5, mask > 0.5)
    low, high = depth_ranges(depth, valid, depth_pred)
    captions = []
    for r in range(len(bg)):
        if depth_scale_m is None:
            depth_range = f"{low[r].item():.2f} to {high[r].item():.2f}"
        else:
            depth_range = f"{low[r].item() * depth_scale_m:.1f} to {high[r].item() * depth_scale_m:.1f} m"
        row = {3: f"IoU {iou[r]:.2f}", **({5: depth_range} if with_depth else {})}
        if ids is not None:
            row[0] = ids[r][-16:]
        captions.append(row)
    tiles = panel_tiles(bg, fg_bg, mask, prob, depth, depth_pred, valid)
    return draw_panel(tiles if with_depth else tiles[:, : COLUMNS.index("depth GT")], captions, tile)
