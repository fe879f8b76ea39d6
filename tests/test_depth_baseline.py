"""Depth baselines (train median, train mean depth map) and the per-image depth metrics in evaluate's metrics.json."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mdeas.baseline import MEDIAN_BINS, fit_depth_baselines
from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.evaluate import depth_baseline, depth_maps, evaluate, table
from mdeas.metrics.functional import IMAGE_KEYS
from mdeas.train import train
from tests.conftest import compose_train, encode, write_canonical_zip

MAX_MM = 20000  # write_canonical_zip's meta.json: normalised depth 1.0 is 20 m


def with_random_depth(source: Path, path: Path, seed: int = 0, unknown: float = 0.1) -> Path:
    """`source` with every depth map replaced by random millimetres (1000-19000), a share `unknown` of it 0."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.startswith("depth/"):
                shape = np.asarray(Image.open(io.BytesIO(data))).shape
                depth = rng.integers(1000, 19000, shape).astype(np.uint16)
                depth[rng.random(shape) < unknown] = 0
                data = encode(depth, "PNG")
            dst.writestr(name, data)
    return path


def stored_depth(zip_path: Path, samples) -> tuple[np.ndarray, np.ndarray]:
    """Normalised depth [N, H, W] and its valid mask of `samples`, read straight from the zip's PNGs."""
    with zipfile.ZipFile(zip_path) as zf:
        mm = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(s.depth)))) for s in samples]).astype(np.float64)
    return mm / MAX_MM, mm > 0


def datamodule(path: Path, split=(0.7, 0.15, 0.15)) -> MaskDepthDataModule:
    dm = MaskDepthDataModule(path=str(path), image_size=32, batch_size=4, num_workers=0, split=split)
    dm.setup()
    return dm


def test_fit_depth_baselines_by_hand() -> None:
    depth = [torch.tensor([[0.2, 0.4], [0.6, 0.0]]), torch.tensor([[0.4, 0.8], [0.1, 0.3]])]
    valid = [torch.tensor([[True, True], [True, False]]), torch.tensor([[True, False], [True, False]])]
    fitted = fit_depth_baselines(zip(depth, valid, strict=True))
    # counted: 0.2 0.4 0.6 and 0.4 0.1 -> median 0.4; pixel (1, 1) is never valid -> the median there
    assert fitted.constant == pytest.approx(0.4, abs=1e-7)
    expected = torch.tensor([[(0.2 + 0.4) / 2, 0.4], [(0.6 + 0.1) / 2, 0.4]])
    torch.testing.assert_close(fitted.mean_map, expected[None, None])
    # an even count: the mean of the two middle values
    assert fit_depth_baselines([(torch.tensor([[0.1, 0.3]]), torch.ones(1, 2, dtype=torch.bool))]).constant == (
        pytest.approx(0.2, abs=1e-7)
    )
    assert fit_depth_baselines([(depth[0], torch.zeros(2, 2, dtype=torch.bool))]) is None


def test_baselines_of_a_dataset_equal_a_hand_computation(tmp_path: Path) -> None:
    data = with_random_depth(write_canonical_zip(tmp_path / "src.zip", num_samples=12), tmp_path / "d.zip")
    dm = datamodule(data)
    fitted = fit_depth_baselines(depth_maps(dm.datasets["train"]))
    depth, valid = stored_depth(data, dm.datasets["train"].samples)
    assert fitted.constant == pytest.approx(float(np.median(depth[valid])), abs=1 / MEDIAN_BINS)
    mean = (depth * valid).sum(0) / valid.sum(0)  # every pixel is valid in some train image here
    assert valid.any(0).all()
    np.testing.assert_allclose(fitted.mean_map[0, 0].numpy(), mean, rtol=1e-5)
    # another dataset has no train split: fitted on val
    other = datamodule(data, split=(0.0, 0.5, 0.5))
    assert len(other.datasets["train"]) == 0
    result = depth_baseline(other, scale=20.0, align="depth")
    depth, valid = stored_depth(data, other.datasets["val"].samples)
    assert result["fit_on"] == "val"
    assert result["median"] == pytest.approx(20.0 * float(np.median(depth[valid])), abs=20.0 / MEDIAN_BINS)
    assert set(result["constant"]) == set(result["mean_map"]) and "depth/delta1_median" in result["constant"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    """A checkpoint trained one short epoch on a tiny dataset with random depth, evaluated on its test split."""
    root = tmp_path_factory.mktemp("depth_baseline")
    source = write_canonical_zip(root / "src.zip", num_samples=16, size=32, fg_per_bg=2)
    data = with_random_depth(source, root / "data.zip")
    overrides = ("trainer.max_epochs=1", "+trainer.limit_train_batches=1", "callbacks.image_grid=null", "test=false")
    cfg = compose_train(root / "run", data, *overrides)
    ckpt = train(cfg)["best_checkpoint"]
    results = evaluate(ckpt, {}, str(root / "eval"))
    return {"data": data, "results": results, "eval": root / "eval", "ckpt": ckpt, "root": root, "source": source}


def test_evaluate_on_depth_files_with_no_known_pixel_reports_no_depth(evaluated: dict) -> None:
    """Depth files that are all 0 (unknown) are a set without depth: no depth rows, not RMSE 0 and δ1 0 halving
    the score."""
    root = evaluated["root"]
    unknown = with_random_depth(evaluated["source"], root / "unknown.zip", unknown=1.0)
    results = evaluate(evaluated["ckpt"], {"path": str(unknown)}, str(root / "eval_unknown"))
    assert not [k for k in results["model"] if k.startswith(("depth/", "loss/depth"))]
    assert results["model"]["score"] == pytest.approx(results["model"]["mask/iou"], rel=1e-6)
    assert results["model"]["mask/iou"] > 0 and "depth_baseline" not in results


def test_evaluate_reports_per_image_metrics_and_the_depth_baselines(evaluated: dict) -> None:
    results = evaluated["results"]
    assert json.loads((evaluated["eval"] / "metrics.json").read_text()) == results
    for key in IMAGE_KEYS:
        assert f"depth/{key}" in results["model"], key
    assert "depth/images" not in results["model"] and "depth/count" not in results["model"]
    base = results["depth_baseline"]
    assert base["fit_on"] == "train"
    model_depth = {k for k in results["model"] if k.startswith("depth/")}
    assert set(base["constant"]) == set(base["mean_map"]) == model_depth
    # the train split's median, and the constant's pooled AbsRel over the test split, by hand
    dm = datamodule(evaluated["data"])  # the run's data config: 32 px, split 0.7/0.15/0.15, seed 0
    depth, valid = stored_depth(evaluated["data"], dm.datasets["train"].samples)
    median = float(np.median(depth[valid]))
    assert base["median"] == pytest.approx(20.0 * median, abs=20.0 / MEDIAN_BINS)
    depth, valid = stored_depth(evaluated["data"], dm.datasets["test"].samples)
    abs_rel = float(np.mean(np.abs(depth[valid] - base["median"] / 20.0) / depth[valid]))
    assert base["constant"]["depth/abs_rel"] == pytest.approx(abs_rel, rel=1e-5)
    header = table(results).splitlines()[0]
    assert "train median depth" in header and "train mean depth map" in header
    lines = table(results).splitlines()
    assert all(line.replace("\\|", "").count("|") == 6 for line in lines)  # 5 columns in every row
    row = next(line for line in lines if line.startswith("| depth/silog |"))
    assert row.endswith(f"| {base['constant']['depth/silog']:.4f} | {base['mean_map']['depth/silog']:.4f} |")
