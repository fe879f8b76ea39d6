"""The leaderboard: entries, shared overrides, table formatting, Pillow plots, and (slow) a tiny end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.leaderboard import (
    BASELINE,
    Entry,
    budget_overrides,
    entries,
    format_table,
    parse_args,
    ranked,
    run_entry,
)
from experiments.plots import LABEL_HEIGHT, LEGEND_HEIGHT, PALETTE, REFERENCE, bar_chart, sample_panel, save_png
from tests.conftest import write_canonical_zip

ROOT = Path(__file__).resolve().parents[1]


def _count(image: Image.Image, colour: tuple[int, int, int]) -> int:
    return int(np.all(np.asarray(image) == colour, axis=-1).sum())


def test_every_model_gets_its_seed_loss_then_the_default() -> None:
    assert entries(["densenet_dilated", "mobile_unet", "dwsep_pair"]) == [
        Entry("densenet_dilated", "ssim_mse"),
        Entry("densenet_dilated", "bce_dice_ssim"),
        Entry("mobile_unet", "bce_dice_ssim"),
        Entry("dwsep_pair", "smoothl1_dice"),
        Entry("dwsep_pair", "bce_dice_ssim"),
    ]
    assert Entry("resunet", "rmse_dice").name == "resunet__rmse_dice"


def test_flags_become_the_shared_train_overrides() -> None:
    args = parse_args(
        ["--image-size", "32", "--epochs", "2", "--limit", "100", "--data-path", "d.zip", "optim.lr=0.01"]
    )
    assert budget_overrides(args) == [
        "data.image_size=32",
        "trainer.max_epochs=2",
        "data.synth.num_samples=2000",
        "data.batch_size=32",
        "seed=0",
        "callbacks.image_grid=null",
        "data.limit=100",
        "data.path=d.zip",
        "optim.lr=0.01",
    ]


def test_an_unknown_model_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--models", "densenet"])
    assert exit_info.value.code == 2
    assert "unknown model 'densenet'; known models: composed, densenet_dilated," in capsys.readouterr().err


def test_an_entry_trained_with_other_settings_is_an_error(tmp_path) -> None:
    run = tmp_path / "mobile_unet__bce_dice_ssim" / ".hydra"
    run.mkdir(parents=True)
    (run / "overrides.yaml").write_text("- model=mobile_unet\n- loss=bce_dice_ssim\n- seed=1\n")
    with pytest.raises(
        SystemExit, match=r"mobile_unet__bce_dice_ssim: trained with seed=1, not seed=0 \+trainer.enable_"
    ):
        run_entry(Entry("mobile_unet", "bce_dice_ssim"), tmp_path, ["seed=0"], 10)


def test_table_rows_are_ranked_and_formatted_exactly() -> None:
    rows = [
        {"model": "`a`", "loss": "`l1`", "params": 1234567, "gflops": 4.3, "samples_per_s": 12.345,
         "val_iou": 0.5, "val_dice": 0.6, "test_iou": 0.55, "test_dice": 0.66, "rmse": 1.2345, "abs_rel": 0.1,
         "delta1": 0.9, "delta1_ssi": 0.95, "real_iou": 0.25},
        {"model": BASELINE, "loss": "threshold 0.12", "test_iou": 0.7, "test_dice": 0.8, "real_iou": 0.3},
        {"model": "`b`", "loss": "`l2`", "params": 10, "gflops": 0.5, "samples_per_s": None, "val_iou": 0.1,
         "val_dice": 0.2, "test_iou": None, "test_dice": 0.3, "rmse": 2.0, "abs_rel": 0.2, "delta1": 0.5},
    ]  # fmt: skip
    header = (
        "| model | loss | params | GFLOPs at 224 | train samples/s | val IoU | val Dice | test IoU | test Dice "
        "| depth RMSE | AbsRel | δ1 | δ1 scale-and-shift |"
    )
    assert format_table(ranked(rows)).splitlines() == [
        header,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        r"| \|fg_bg − bg\| baseline | threshold 0.12 |  |  |  |  |  | 0.700 | 0.800 |  |  |  |  |",
        "| `a` | `l1` | 1,234,567 | 4.30 | 12.3 | 0.500 | 0.600 | 0.550 | 0.660 | 1.234 | 0.100 | 0.900 | 0.950 |",
        "| `b` | `l2` | 10 | 0.50 |  | 0.100 | 0.200 |  | 0.300 | 2.000 | 0.200 | 0.500 |  |",
    ]
    with_real = format_table(rows[:2], real=True).splitlines()
    assert with_real[0] == header + " real IoU |"
    assert with_real[2].endswith("| 0.900 | 0.950 | 0.250 |") and with_real[3].endswith("|  |  |  |  | 0.300 |")


def test_bar_chart_draws_bars_in_proportion_to_their_values() -> None:
    panels = {
        "IoU": {"m1": {"x": 0.8, "y": 0.4}, "m2": {"x": None, "y": 1.0}},
        "delta": {"m1": {"x": 0.5, "y": 0.5}, "m2": {"x": 0.0, "y": 0.25}},
    }
    image = bar_chart(panels, {"IoU": 0.3}, width=600, panel_height=200)
    assert image.size == (600, LEGEND_HEIGHT + 2 * 200)
    top, bottom = (image.crop((0, LEGEND_HEIGHT + k * 200, 600, LEGEND_HEIGHT + (k + 1) * 200)) for k in (0, 1))
    x, y = PALETTE[0], PALETTE[1]
    # same bar width everywhere (two slots per group); heights ∝ values: x = 0.8, y = 0.4 + 1.0 in the top panel
    assert _count(top, y) / _count(top, x) == pytest.approx(1.4 / 0.8, rel=0.04)
    assert _count(bottom, x) / _count(bottom, y) == pytest.approx(0.5 / 0.75, rel=0.04)
    assert _count(top, REFERENCE) > 0 and _count(bottom, REFERENCE) == 0  # the baseline line in its panel only
    assert _count(image.crop((0, 0, 600, LEGEND_HEIGHT)), x) == 13 * 13  # the legend's colour boxes


def test_sample_panel_stacks_labelled_grids_at_the_tile_size() -> None:
    """Each 32 px tile of the grids is one flat colour: in the panel it fills its 50 px tile (read at the tile's
    centre), the grids under their label bands, the first grid's 4 rows above the second's 2."""
    colours = torch.randint(0, 256, (3, 4, 5), generator=torch.Generator().manual_seed(0))
    grid = colours.repeat_interleave(32, 1).repeat_interleave(32, 2) / 255  # make_grid of 4 samples at 32 px
    panel = sample_panel({"loss a": grid, "loss b": grid[:, :64]}, tile=50)
    assert panel.size == (5 * 50, LABEL_HEIGHT * 3 + 6 * 50)
    pixels = np.asarray(panel)
    tops = {"loss a": 2 * LABEL_HEIGHT, "loss b": 3 * LABEL_HEIGHT + 4 * 50}
    for label, rows in (("loss a", 4), ("loss b", 2)):
        for row in range(rows):
            for col in range(5):
                centre = pixels[tops[label] + row * 50 + 25, col * 50 + 25]
                assert centre.tolist() == colours[:, row, col].tolist(), (label, row, col)
        band = pixels[tops[label] - LABEL_HEIGHT : tops[label]]
        assert (band != 255).any(), label  # the label is written in its band
    assert (pixels[:LABEL_HEIGHT] != 255).any()  # the column titles


def test_save_png_shrinks_an_image_to_the_byte_budget(tmp_path) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8))
    written = save_png(noise, tmp_path / "deep" / "noise.png", max_bytes=100_000)
    assert written == (tmp_path / "deep" / "noise.png").stat().st_size <= 100_000
    with Image.open(tmp_path / "deep" / "noise.png") as image:
        assert image.format == "PNG" and 64 <= image.width < 600 and image.width == image.height


@pytest.mark.slow
def test_a_tiny_leaderboard_end_to_end(tmp_path) -> None:
    data = write_canonical_zip(tmp_path / "tiny.zip", num_samples=24, size=32, fg_per_bg=2)
    real = write_canonical_zip(tmp_path / "real.zip", num_samples=24, size=32, fg_per_bg=2, seed=1)
    results = tmp_path / "pub" / "RESULTS.md"
    results.parent.mkdir()
    results.write_text("# Results\n")
    out = tmp_path / "lb"
    command = [sys.executable, "-m", "experiments.leaderboard", "--models", "densenet_dilated", "--image-size", "32",
               "--epochs", "1", "--batch-size", "4", "--data-path", str(data), "--real", str(real), "--out", str(out),
               "--results", str(results), "data.num_workers=0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    table = [line for line in (out / "leaderboard.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 6 and table[0].endswith("| δ1 | δ1 scale-and-shift | real IoU |")
    assert [line.split(" | ")[1] for line in table[-2:]] == ["sees no image", "sees no image"]
    losses = sorted(line.split(" | ")[1] for line in table[1:-2])
    assert losses[:2] == ["`bce_dice_ssim`", "`ssim_mse`"] and losses[2].startswith("threshold 0.")
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["budget"] == {"samples_per_epoch": 16, "steps_per_epoch": 4, "epochs": 1, "batch_size": 4,
                                 "image_size": 32, "seed": 0}  # fmt: skip
    entry, base, constant = summary["rows"][0], summary["rows"][-3], summary["rows"][-2]
    assert constant["model"] == "train median depth (constant)" and 0 <= constant["delta1"] <= 1
    assert entry["params"] == 1521026 and entry["samples_per_s"] > 0 and 0 <= entry["test_iou"] <= 1
    assert entry["real_iou"] is not None and base["model"] == BASELINE and 0 < base["test_iou"] <= 1
    assert "## Leaderboard: which model and loss" in results.read_text() and "(leaderboard.png)" in results.read_text()
    for png, width in (
        (results.parent / "leaderboard.png", 900),
        (results.parent / "panels/densenet_dilated.png", 560),
    ):
        assert 2_000 < png.stat().st_size < 300_000
        with Image.open(png) as image:
            assert image.width == width
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("trained already") == 2
    assert json.loads((out / "leaderboard.json").read_text())["rows"] == summary["rows"]
