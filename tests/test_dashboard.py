"""What a tiny run leaves in TensorBoard: the lr every step, no repeated val points, HPARAMS without hp/* scalars,
labelled image panels, PR curves of the model and the baseline, and the graph when asked for."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from mdeas.callbacks.image_grid import ImageGrid
from mdeas.callbacks.panels import COLUMNS, GAP, TURBO, depth_ranges, prediction_panel, signed, turbo
from mdeas.metrics.pr_curve import precision_recall, threshold_counts
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip
from tests.test_schedules import cosine_warmup, lrs

EPOCHS, TILE = 2, 128


def _accumulators(run: Path) -> list[EventAccumulator]:
    guidance = {"scalars": 0, "images": 0, "tensors": 0}
    return [
        EventAccumulator(str(f), size_guidance=guidance).Reload() for f in sorted(run.glob("events.out.tfevents.*"))
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run at 32 px of the real config, with the graph switched on."""
    tmp = tmp_path_factory.mktemp("dashboard")
    data = write_canonical_zip(tmp / "tiny.zip", num_samples=24, size=32)
    cfg = compose_train(tmp / "run", data, f"trainer.max_epochs={EPOCHS}", "test=false", "logger.log_graph=true")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg)
    finally:
        torch.set_num_threads(threads)
    return tmp / "run"


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of each scalar tag in one run folder."""
    series: dict[str, list[tuple[int, float]]] = {}
    for acc in _accumulators(run):
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return series


def test_lr_once_per_optimiser_step_and_no_repeated_val_points(run: Path) -> None:
    series = scalars(run / "tensorboard")
    steps = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert [step for step, _ in series["train/lr"]] == list(range(steps))
    # the rate each step used (logged before the scheduler steps): warm-up over the first epoch, then cosine to 0
    expected = lrs(cosine_warmup(1e-3, total=steps, batches=steps // EPOCHS), steps)
    assert [value for _, value in series["train/lr"]] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert {"val/score", "val/mask/iou", "val/depth/delta1"} <= series.keys()
    for tag, points in series.items():
        if tag.startswith("val/"):
            assert len(points) == EPOCHS and max(Counter(s for s, _ in points).values()) == 1, (tag, points)
    assert not [tag for tag in series if tag.startswith("hp/") or tag == "epoch"]


def test_hparams_show_the_run_and_the_best_checkpoint(run: Path) -> None:
    """The HPARAMS tab holds the run's hyper-parameters and the kept checkpoint's val metrics: by default best.ckpt
    is the last epoch (conf/callbacks/default.yaml), so those of the last validation, written at its step."""
    plugin = {}
    for acc in _accumulators(run / "tensorboard"):
        try:
            plugin |= acc.PluginTagToContent("hparams")
        except KeyError:  # an event file without hparams summaries
            continue
    start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model"].string_value == "densenet_dilated" and start.hparams["lr"].number_value == 1e-3
    assert {"loss", "image_size", "batch_size", "epochs", "seed", "loss/mask_bce"} <= set(start.hparams)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/experiment"]).experiment
    metrics = [(m.name.group, m.name.tag) for m in experiment.metric_infos]
    assert metrics[:3] == [("best", "val/score"), ("best", "val/mask/iou"), ("best", "val/depth/delta1")]
    assert {h.name for h in experiment.hparam_infos if h.differs} == {"model", "loss", "lr"}
    best = scalars(run / "tensorboard" / "best")
    val = json.loads((run / "metrics.json").read_text())["val"]
    (step, value), = best["val/score"]  # fmt: skip
    assert value == pytest.approx(val["val/score"])
    curve = scalars(run / "tensorboard")["val/score"]
    assert len(curve) == EPOCHS and (step, value) == (curve[-1][0], pytest.approx(curve[-1][1]))
    kept, last = (torch.load(run / "checkpoints" / f"{n}.ckpt", weights_only=False) for n in ("best", "last"))
    assert kept["epoch"] == last["epoch"] == EPOCHS - 1 and kept["global_step"] == last["global_step"]


def test_image_panels_pr_curves_and_graph(run: Path) -> None:
    images, pr, graph = {}, {}, False
    for acc in _accumulators(run / "tensorboard"):
        images |= {tag: acc.Images(tag) for tag in acc.Tags()["images"]}
        pr |= {tag: acc.Tensors(tag) for tag in acc.Tags()["tensors"] if tag.startswith("val/mask/pr")}
        graph |= acc.Tags()["graph"]
    width = len(COLUMNS) * (TILE + GAP) + GAP  # 32 px tiles upsampled 4x
    for tag in ("val_images/samples", "val_images/worst"):
        assert len(images[tag]) == EPOCHS and {event.width for event in images[tag]} == {width}, tag
    assert len(pr["val/mask/pr"]) == EPOCHS and len(pr["val/mask/pr_baseline"]) == 1
    assert graph  # the model graph was written (logger.log_graph=true)
    # rows TP, FP, TN, FN, precision, recall over 201 thresholds, counted over every val pixel
    curves = [tensor_util.make_ndarray(pr[tag][-1].tensor_proto) for tag in ("val/mask/pr", "val/mask/pr_baseline")]
    for tp, fp, tn, fn, precision, recall in curves:
        total = tp + fp + tn + fn
        assert tp.shape == (201,) and (total == total[0]).all() and total[0] % (32 * 32) == 0
        assert tn[0] == fn[0] == 0 and (np.diff(tp) <= 0).all() and (np.diff(fp) <= 0).all()
        assert np.allclose(recall, tp / tp[0]) and np.allclose(precision[tp + fp > 0], (tp / (tp + fp))[tp + fp > 0])
    assert curves[0][0][0] == curves[1][0][0] and curves[0][1][0] == curves[1][1][0]  # the same val pixels


def _fitting(tmp_path: Path) -> SimpleNamespace:
    """What ImageGrid reads of a trainer validating during a fit, on rank 0, with one TensorBoard logger."""
    return SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), sanity_checking=False, is_global_zero=True,
                           loggers=[TensorBoardLogger(tmp_path)], global_step=3)  # fmt: skip


def test_no_sample_panel_asked_logs_none_and_reads_no_sample(tmp_path: Path) -> None:
    class Unreadable:
        def __len__(self) -> int:
            return 5

        def __getitem__(self, index: int):
            raise AssertionError("read a sample")

    trainer = _fitting(tmp_path)
    trainer.val_dataloaders = SimpleNamespace(dataset=Unreadable())
    for none in (0, None):  # null in the config (callbacks.image_grid.worst=null) means none too
        grid = ImageGrid(num_samples=none, worst=none)
        grid.on_validation_batch_end(trainer, None, {"mask": torch.zeros(2, 1, 4, 4)}, {}, 0)
        grid.on_validation_epoch_end(trainer, SimpleNamespace(hparams={}))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_worst_panel_keeps_the_lowest_iou_samples_lowest_first(tmp_path: Path) -> None:
    """4 x 4 masks, the truth the top row: samples a-d predict the row, half of it, the next row and one of its
    pixels, IoU 1, 0.5, 0 and 0.25. The two lowest, c then d, are kept, each with its own rows; fed in two batches,
    a sample kept from the first is dropped for lower ones of the second."""
    ids = ["a", "b", "c", "d"]
    truth = torch.zeros(4, 1, 4, 4)
    truth[:, :, 0] = 1
    pred = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
    pred[0, :, 0], pred[1, :, 0, :2], pred[2, :, 1], pred[3, :, 0, 0] = True, True, True, True
    logits = torch.where(pred, 5.0, -5.0)
    batch = {"bg": torch.rand(4, 3, 4, 4), "fg_bg": torch.rand(4, 3, 4, 4), "mask": truth,
             "depth": torch.rand(4, 1, 4, 4), "valid": torch.ones(4, 1, 4, 4, dtype=torch.bool), "id": ids}  # fmt: skip
    outputs = {"mask": logits, "depth": torch.rand(4, 1, 4, 4)}
    trainer = _fitting(tmp_path)

    def part(tree: dict, picks: list[int]) -> dict:
        return {k: [v[i] for i in picks] if k == "id" else v[picks] for k, v in tree.items()}

    for batches in ([[0, 1, 2, 3]], [[0, 2], [1, 3]]):
        grid = ImageGrid(num_samples=0, worst=2)
        grid.on_validation_epoch_start(trainer, None)
        for index, picks in enumerate(batches):
            grid.on_validation_batch_end(trainer, None, part(outputs, picks), part(batch, picks), index)
        assert [(r["id"], r["iou"]) for r in grid._worst] == [("c", 0.0), ("d", 0.25)], batches
        for row in grid._worst:
            i = ids.index(row["id"])
            assert torch.equal(row["mask_logits"], logits[i]) and torch.equal(row["depth_pred"], outputs["depth"][i])
            assert all(torch.equal(row[k], batch[k][i]) for k in ("bg", "fg_bg", "mask", "depth", "valid"))


def test_threshold_counts_match_counting_by_hand() -> None:
    draw = torch.Generator().manual_seed(0)
    scores, labels = torch.rand(500, generator=draw), torch.rand(500, generator=draw) > 0.6
    tp, fp = threshold_counts(scores, labels, 11)
    for i, t in enumerate(torch.linspace(0, 1, 11)):
        positive = torch.floor(scores * 10) >= i  # TensorBoard's bucketing: score ≥ i / (T − 1)
        assert (tp[i], fp[i]) == ((positive & labels).sum(), (positive & ~labels).sum()), t
    precision, recall = precision_recall(tp, fp)
    assert recall[0] == 1 and precision[0] == pytest.approx(labels.float().mean().item())


def test_threshold_counts_and_precision_recall_edge_cases() -> None:
    scores = torch.tensor([float("nan"), 1.5, -0.2, 0.5])  # NaN and -0.2 count as 0, 1.5 as 1
    tp, fp = threshold_counts(scores, torch.tensor([1, 1, 0, 0]).bool(), 3)
    assert tp.tolist() == [2, 1, 1] and fp.tolist() == [2, 1, 0]
    precision, recall = precision_recall(torch.tensor([3, 2, 0]), torch.tensor([5, 1, 0]))
    assert precision.tolist() == pytest.approx([3 / 8, 2 / 3, 1.0])  # nothing predicted positive: precision 1
    assert recall.tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    _, recall = precision_recall(torch.zeros(3, dtype=torch.long), torch.tensor([4, 2, 1]))
    assert recall.tolist() == [0.0, 0.0, 0.0]  # no positive pixel: recall 0, not NaN


def test_depth_ranges_signed_errors_and_turbo() -> None:
    depth = torch.tensor([[0.2, 0.4, 0.0], [0.3, 0.3, 0.3], [0.9, 0.9, 0.9]]).view(3, 1, 1, 3)
    valid = torch.tensor([[1, 1, 1], [1, 1, 1], [0, 0, 0]]).bool().view(3, 1, 1, 3)
    pred = torch.tensor([[0.0, 1.0, 0.5], [0.1, 0.2, 0.3], [0.5, 0.7, 0.6]]).view(3, 1, 1, 3)
    low, high = depth_ranges(depth, valid, pred)
    # row 0: the known depth (0 is unknown); row 1: constant, widened by 1e-3; row 2: nothing valid, the prediction's
    assert low.flatten().tolist() == pytest.approx([0.2, 0.3, 0.5])
    assert high.flatten().tolist() == pytest.approx([0.4, 0.301, 0.7])
    colours = signed(torch.tensor([0.5, -2.0, 0.0]).view(1, 1, 1, 3))[0, :, 0].T
    assert colours.tolist() == [[0.5, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]  # red, blue (clamped), black
    levels = turbo(torch.tensor([float("nan"), 0.0, 1.0, 2.0, 0.5]).view(1, 1, 1, 5))[0, :, 0].T
    for got, index in zip(levels, (0, 0, 255, 255, 128), strict=True):  # NaN as 0, clamped to [0, 1], 256 levels
        assert torch.equal(got, TURBO[:, index]), index


def test_panel_layout_and_captions() -> None:
    n, size = 3, 48
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 10:30, 10:30] = 1
    rows = {
        "bg": torch.rand(n, 3, size, size),
        "fg_bg": torch.rand(n, 3, size, size),
        "mask": mask,
        "mask_logits": (mask * 2 - 1) * 5,
        "depth": torch.rand(n, 1, size, size),
        "depth_pred": torch.rand(n, 1, size, size),
        "valid": torch.ones(n, 1, size, size, dtype=torch.bool),
    }
    image = prediction_panel(**rows, depth_scale_m=20.0, ids=["a", "b", "c"])
    tile = size * 3  # the smallest whole factor reaching 128 px
    header = image.shape[0] - n * (tile + GAP) - GAP
    assert image.dtype.name == "uint8" and image.shape[1:] == (len(COLUMNS) * (tile + GAP) + GAP, 3)
    assert 20 < header < 60 and image[:header].std() > 0  # the labels are drawn
    top = header + (tile + GAP)  # row 1; its fg_bg and mask GT tiles carry no caption
    for column, source in (("fg_bg", rows["fg_bg"][1]), ("mask GT", mask[1].expand(3, -1, -1))):
        left = GAP + COLUMNS.index(column) * (tile + GAP)
        enlarged = source.repeat_interleave(3, dim=1).repeat_interleave(3, dim=2)  # nearest, ×3
        expected = (enlarged * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(image[top : top + tile, left : left + tile], expected), column
    relative = prediction_panel(**rows, depth_scale_m=None, ids=["a", "b", "c"])  # relative depth: no metres
    changed = (relative != image).any(-1).nonzero()[1]  # columns of the pixels that differ
    depth_gt = COLUMNS.index("depth GT") * (tile + GAP) + GAP
    assert len(changed) and changed.min() >= depth_gt and changed.max() < depth_gt + tile  # only its caption
    masks_only = prediction_panel(**rows, depth_scale_m=20.0, ids=["a", "b", "c"], with_depth=False)
    kept = COLUMNS.index("depth GT") * (tile + GAP) + GAP  # the mask columns, as in the whole panel
    assert masks_only.shape == (image.shape[0], kept, 3) and np.array_equal(masks_only[header:], image[header:, :kept])
