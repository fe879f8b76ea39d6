"""Pictures of a leaderboard, drawn with Pillow: grouped bar charts and sample panels of trained checkpoints.

`bar_chart` draws one panel per metric (groups of bars, one colour per series, values in [0, 1], an optional dashed
reference line); `sample_grid` runs a checkpoint on evenly spaced samples of its own test split; `sample_panel`
stacks such grids under labels; `save_png` writes a palette PNG no larger than a byte budget. Text uses Pillow's
default font, which has Latin letters only (write "delta1", not "δ1").
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from hydra.utils import instantiate
from PIL import Image, ImageDraw, ImageFont

from mdeas.callbacks.image_grid import evenly_spaced
from mdeas.data.dataset import MaskDepthDataset
from mdeas.inference import load_module, stored_data_config

PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
)
WHITE, INK, GRID, REFERENCE = (255, 255, 255), (0, 0, 0), (225, 225, 225), (90, 90, 90)
LEGEND_HEIGHT = 28  # the legend row above the panels
TITLE, LEFT, RIGHT, BOTTOM = 22, 40, 12, 30  # panel margins (px)
COLUMNS = ("fg_bg", "mask GT", "mask pred", "depth GT", "depth pred")
LABEL_HEIGHT = 18

Bars = dict[str, dict[str, float | None]]  # group → series → value in [0, 1] (None: no bar, the slot stays)


def _centred(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, font, fill=INK) -> None:
    width = draw.textlength(text, font=font)
    draw.text((x - width / 2, y), text, fill=fill, font=font)


def _legend(draw: ImageDraw.ImageDraw, colours: dict[str, tuple[int, int, int]], font) -> None:
    x = LEFT
    for name, colour in colours.items():
        draw.rectangle((x, 8, x + 12, 20), fill=colour)
        draw.text((x + 16, 8), name, fill=INK, font=font)
        x += 16 + draw.textlength(name, font=font) + 18


def _panel(draw, box, title: str, groups: Bars, colours, reference: float | None, font) -> None:
    x0, y0, x1, y1 = box
    draw.text((x0, y0 - TITLE + 4), title, fill=INK, font=font)
    for k in range(5):
        y = y1 - k / 4 * (y1 - y0)
        draw.line((x0, y, x1, y), fill=GRID)
        label = f"{k / 4:.2f}"
        draw.text((x0 - 6 - draw.textlength(label, font=font), y - 6), label, fill=INK, font=font)
    slot = (x1 - x0) / max(len(groups), 1)
    for g, (group, bars) in enumerate(groups.items()):
        left = x0 + g * slot
        width = min(40.0, 0.8 * slot / max(len(bars), 1))
        start = left + (slot - width * len(bars)) / 2
        for j, (series, value) in enumerate(bars.items()):
            if value is None:
                continue
            top = y1 - min(max(value, 0.0), 1.0) * (y1 - y0)
            bx = start + j * width
            draw.rectangle((round(bx + 1), round(top), round(bx + width - 1), y1), fill=colours[series])
            if width >= 24:
                _centred(draw, bx + width / 2, top - 12, f"{value:.2f}", font)
        _centred(draw, left + slot / 2, y1 + 6, group, font)
    if reference is not None:
        y = y1 - min(max(reference, 0.0), 1.0) * (y1 - y0)
        for x in range(x0, x1, 10):
            draw.line((x, y, min(x + 6, x1), y), fill=REFERENCE, width=2)
        label = f"baseline {reference:.2f}"
        draw.text((x1 - draw.textlength(label, font=font), y - 14), label, fill=REFERENCE, font=font)


def bar_chart(
    panels: dict[str, Bars],
    references: dict[str, float] | None = None,
    width: int = 900,
    panel_height: int = 240,
) -> Image.Image:
    """One panel per title, stacked under a legend: image `width` × (LEGEND_HEIGHT + panels × `panel_height`).

    `panels[title][group][series]` is a bar's value, clipped to [0, 1]; series keep their colour (PALETTE, in order
    of first appearance) across groups and panels; `references[title]` draws a dashed "baseline" line.
    """
    series = dict.fromkeys(s for groups in panels.values() for bars in groups.values() for s in bars)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    font = ImageFont.load_default()
    image = Image.new("RGB", (width, LEGEND_HEIGHT + len(panels) * panel_height), WHITE)
    draw = ImageDraw.Draw(image)
    _legend(draw, colours, font)
    for k, (title, groups) in enumerate(panels.items()):
        top = LEGEND_HEIGHT + k * panel_height
        box = (LEFT, top + TITLE, width - RIGHT, top + panel_height - BOTTOM)
        _panel(draw, box, title, groups, colours, (references or {}).get(title), font)
    return image


def make_grid(
    fg_bg: torch.Tensor,
    mask: torch.Tensor,
    mask_prob: torch.Tensor,
    depth: torch.Tensor,
    depth_pred: torch.Tensor,
) -> torch.Tensor:
    """Rows of samples, five columns: RGB [N,3,H,W] in [0,1] and four [N,1,H,W] maps in [0,1] → [3, N·H, 5·W]."""
    grey = [t.clamp(0, 1).expand(-1, 3, -1, -1) for t in (mask, mask_prob, depth, depth_pred)]
    rows = torch.cat([fg_bg.clamp(0, 1), *grey], dim=3)  # [N, 3, H, 5W]
    return torch.cat(list(rows), dim=1)


@torch.no_grad()
def predict_grid(module: torch.nn.Module, dataset: MaskDepthDataset, count: int) -> torch.Tensor:
    """`make_grid` of the model's predictions on `count` evenly spaced samples of `dataset`."""
    batch = evenly_spaced(dataset, count)
    if batch is None:
        raise ValueError(f"{dataset.name}: no sample could be read for the panel (data.on_error=skip left out all)")
    device = next(module.parameters()).device
    out = module(batch["bg"].to(device), batch["fg_bg"].to(device))
    return make_grid(
        dataset.denormalise(batch["fg_bg"]),
        batch["mask"],
        torch.sigmoid(out["mask"].float()).cpu(),
        batch["depth"],
        out["depth"].float().cpu(),
    )


@torch.no_grad()
def sample_grid(ckpt_path: str | Path, count: int = 4) -> torch.Tensor:
    """The checkpoint's predictions on `count` evenly spaced samples of its own test split (rebuilt from the data
    config it stores): `make_grid` rows fg_bg | mask GT | mask pred | depth GT | depth pred, [3, N·H, 5·W] in [0, 1]."""
    module = load_module(ckpt_path)
    config = stored_data_config(module, ckpt_path)
    if not config:
        raise ValueError(f"{ckpt_path}: the checkpoint holds no data config")
    datamodule = instantiate(config, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("test")
    return predict_grid(module, datamodule.datasets["test"], count)


def _to_image(grid: torch.Tensor, tile: int) -> Image.Image:
    array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    rows = grid.shape[1] * 5 // grid.shape[2]
    return Image.fromarray(array).resize((5 * tile, rows * tile), Image.Resampling.BILINEAR)


def sample_panel(grids: dict[str, torch.Tensor], tile: int = 112) -> Image.Image:
    """`sample_grid` outputs stacked under their labels, each tile resized to `tile` px, column titles on top:
    width 5·tile, height LABEL_HEIGHT · (1 + len(grids)) + tile · (rows of all grids)."""
    font = ImageFont.load_default()
    images = {label: _to_image(grid, tile) for label, grid in grids.items()}
    height = LABEL_HEIGHT * (1 + len(images)) + sum(im.height for im in images.values())
    panel = Image.new("RGB", (5 * tile, height), WHITE)
    draw = ImageDraw.Draw(panel)
    for c, name in enumerate(COLUMNS):
        _centred(draw, (c + 0.5) * tile, 3, name, font)
    y = LABEL_HEIGHT
    for label, image in images.items():
        draw.text((4, y + 3), label, fill=INK, font=font)
        panel.paste(image, (0, y + LABEL_HEIGHT))
        y += LABEL_HEIGHT + image.height
    return panel


def save_png(image: Image.Image, path: str | Path, max_bytes: int = 300_000) -> int:
    """Write `image` as a 256-colour PNG, shrunk by 0.8× steps until it fits `max_bytes` (or its smaller side
    would drop under 64 px); returns the bytes written."""
    image = image.convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.quantize(256).save(buffer, format="PNG", optimize=True)
        small = min(image.size) * 0.8 < 64
        if buffer.tell() <= max_bytes or small:
            break
        image = image.resize((round(image.width * 0.8), round(image.height * 0.8)), Image.Resampling.LANCZOS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()
