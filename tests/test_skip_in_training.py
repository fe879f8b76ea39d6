"""Training with data.on_error=skip: left-out samples neither break the image panels nor pass for a perfect score."""

import zipfile
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mdeas.callbacks.image_grid import evenly_spaced
from mdeas.inference import load_module
from mdeas.train import train
from tests.conftest import compose_train, truncated_fg_bg


def test_panel_samples_step_past_left_out_ones() -> None:
    items = [None, *({"x": torch.tensor(i)} for i in range(1, 9)), None]  # positions 0 and 9 left out
    assert evenly_spaced(items, 3)["x"].tolist() == [1, 4]  # 0 → 1, 4, 9 → nothing after it
    assert evenly_spaced([None, None], 2) is None


def test_training_with_left_out_samples_keeps_its_panels_and_scores(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path / "run", truncated_fg_bg(tmp_path, every=2), "data.on_error=skip",
                        "trainer.max_epochs=1", "callbacks.image_grid.num_samples=12")  # fmt: skip
    data = instantiate(cfg.data)
    data.setup()
    val = data.datasets["val"]
    readable = [val[i]["id"] for i in range(len(val)) if val[i] is not None]
    assert 0 < len(readable) < len(val)  # the val split holds both kinds
    assert evenly_spaced(val, 12)["id"] == readable  # every readable one, in order; the others stepped past
    results = train(cfg)
    module = load_module(results["best_checkpoint"])  # val and test are scored on the readable samples alone
    for split in ("val", "test"):
        part = data.datasets[split]
        batch = [part[i] for i in range(len(part)) if part[i] is not None]
        assert 0 < len(batch) < len(part), split
        with torch.no_grad():
            pred = module(*(torch.stack([item[k] for item in batch]) for k in ("bg", "fg_bg")))["mask"] > 0
        truth = torch.stack([item["mask"] for item in batch]) > 0.5
        pooled = ((pred & truth).sum() / (pred | truth).sum()).item()
        assert results[split][f"{split}/mask/iou"] == pytest.approx(pooled, abs=1e-5), split
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"val_images/samples", "val_images/worst"} <= set(events.Tags()["images"])


def _bad_only_in(tmp_path: Path, split: str) -> Path:
    """The 24-sample canonical zip with the fg_bg of every sample of `split` (default data.split) cut short."""
    data = truncated_fg_bg(tmp_path, every=1)
    part = instantiate(compose_train(tmp_path / "probe", data).data)
    part.setup()
    bad = {s.fg_bg for s in part.datasets[split].samples}
    out = tmp_path / f"{split}_bad.zip"
    with zipfile.ZipFile(data) as cut, zipfile.ZipFile(tmp_path / "clean.zip") as clean, zipfile.ZipFile(out, "w") as z:
        for info in cut.infolist():
            z.writestr(info, (cut if info.filename in bad else clean).read(info.filename))
    return out


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("val", r"^val: no sample to score; every one was left out \(data.on_error=skip\)$"),
        ("train", r"^train: no training step was taken: every training sample was left out \(data.on_error=skip\)$"),
    ],
)
def test_a_split_whose_every_sample_is_left_out_is_an_error_not_a_score(tmp_path: Path, split, message) -> None:
    """Not a perfect score of nothing (val), nor an untrained model's scores (train)."""
    cfg = compose_train(tmp_path / "run", _bad_only_in(tmp_path, split), "data.on_error=skip", "trainer.max_epochs=1",
                        "test=false")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        train(cfg)
