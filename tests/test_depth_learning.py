"""A short training run learns depth: on generated metric-world data its test δ1 beats the best image-blind
predictors fitted on the same training split (the train median depth, a constant; the train mean depth map).

Why these margins: on this world the constant scores δ1 ≈ 0.27 and the mean map ≈ 0.5, and the full default run
reaches 0.69 (experiments/RESULTS.md). A model that ignores the image can do no better than the mean map,
so beating the constant by 0.15 and the mean map at all shows depth read from the image; a broken depth path (a
detached head, an ignored loss, inverted targets) stays at or below the constant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mdeas.evaluate import evaluate
from mdeas.synth.generate import generate
from mdeas.train import train
from tests.conftest import compose_train


@pytest.mark.slow
def test_a_short_run_reads_metric_depth_from_the_image(tmp_path: Path, one_thread: None) -> None:
    data = generate(tmp_path / "metric.zip", 480, image_size=32, seed=5, paste_fraction=1.0, workers=1)
    run = tmp_path / "run"
    cfg = compose_train(
        run,
        data,
        "model=resunet",
        "+model.widths=[16,32,64,128]",
        "+model.bottom=128",
        "loss=bce_dice_ssim",
        "trainer.max_epochs=8",
        "data.batch_size=16",
        "test=false",
        "callbacks.image_grid=null",
    )
    train(cfg)
    results = evaluate(str(run / "checkpoints" / "best.ckpt"), {}, output=str(tmp_path / "eval"))
    model, blind = results["model"]["depth/delta1"], results["depth_baseline"]
    constant, mean_map = blind["constant"]["depth/delta1"], blind["mean_map"]["depth/delta1"]
    assert model > constant + 0.15 and model > mean_map, (model, constant, mean_map)
