"""evaluate scores masks at each sample's stored size by default: the model's logits upsampled, the baseline on
full-size pixels, both against the full-size ground truth."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from experiments.score_selection import score_part
from mdeas.baseline import fit_threshold
from mdeas.compare import compare, same_data, table
from mdeas.data.dataset import MaskDepthDataset, load_sample
from mdeas.data.decode import binarise
from mdeas.data.errors import DataError
from mdeas.data.layouts import Sample, load_index
from mdeas.evaluate import data_config, evaluate, object_table
from mdeas.inference import Predictor, full_resolution, load_module
from mdeas.native_eval import (
    MaskScores,
    bootstrap_iou,
    full_size_logits,
    full_size_samples,
    iou_by_object,
    objects_of,
)
from mdeas.outline import KnownBackgroundOutline
from mdeas.train import train
from tests.conftest import compose_train, encode, truncated_fg_bg, write_canonical_zip

MASK_KEYS = ("mask/iou", "mask/dice", "mask/iou_per_image", "mask/boundary_f")
TINY_TRAIN = ("trainer.max_epochs=1", "+trainer.limit_train_batches=1", "callbacks.image_grid=null", "test=false")
ROOT = Path(__file__).resolve().parents[1]


def predict_half_foreground(ckpt: str) -> None:
    """Move the checkpoint's mask bias by minus its median logit on normal inputs, so that it calls about half of
    the pixels foreground (trained on one batch it calls none, and every model IoU would be 0 == 0)."""
    module = load_module(ckpt)
    with torch.no_grad():
        logits = module(*torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))["mask"]
    state = torch.load(ckpt, weights_only=False)
    state["state_dict"]["model.mask_decoder.head.bias"] -= logits.median()
    torch.save(state, ckpt)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A checkpoint trained one batch at 32 px on a dataset stored at 64 px (its mask bias moved so that it
    predicts some foreground), evaluated both ways."""
    root = tmp_path_factory.mktemp("native")
    data = write_canonical_zip(root / "data.zip", num_samples=40, size=64, fg_per_bg=2)  # 6 test images
    ckpt = train(compose_train(root / "run", data, *TINY_TRAIN))["best_checkpoint"]
    predict_half_foreground(ckpt)
    native = evaluate(ckpt, {}, str(root / "native"))
    model_size = evaluate(ckpt, {}, str(root / "model"), resolution="model")
    return {"ckpt": ckpt, "native": native, "model": model_size, "data": data}


def full_size_test_split(ckpt: str):
    """The checkpoint's module and its data module, set up for the test split."""
    module = load_module(ckpt)
    dm = instantiate(module.hparams.data["config"], _convert_="all")
    dm.setup("test")
    return module, dm


def test_native_is_the_default_and_reports_every_mask_score(run):
    assert run["native"]["resolution"] == "native" and run["model"]["resolution"] == "model"
    for key in MASK_KEYS:
        assert key in run["native"]["model"] and key in run["native"]["baseline"], key
    assert run["native"]["model"]["depth/delta1"] == run["model"]["model"]["depth/delta1"]  # depth: model size


def full_size_masks(module, dm, data, outline=None, mirror=False):
    """(decoded arrays, truth, model's mask) of each sample of `data` at its stored size, computed by hand (with
    `mirror`: the logits averaged with those of the pair flipped left to right, flipped back, before `outline`)."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (dm.mean, dm.std))
    for sample in data.samples:
        arrays = load_sample(data.index, sample)
        truth = binarise(arrays["mask"]) > 0.5
        rgb = [torch.from_numpy(arrays[k]).permute(2, 0, 1)[None].float() / 255 for k in ("bg", "fg_bg")]
        bg, fg_bg = ((x - mean) / std for x in rgb)
        logits = full_resolution(module, bg, fg_bg)["mask"]
        if mirror:
            logits = (logits + full_resolution(module, bg.flip(-1), fg_bg.flip(-1))["mask"].flip(-1)) / 2
        if outline is not None:
            logits = outline(logits, *rgb)
        logits = logits[0, 0]
        yield arrays, truth, (logits > 0).numpy()  # as scored: the logit itself, not a float32 sigmoid rounding to 0.5


def test_native_scores_equal_a_hand_computation_at_full_size(run):
    module, dm = full_size_test_split(run["ckpt"])
    inter = union = inter_base = union_base = 0
    threshold = run["native"]["baseline"]["threshold"]
    chosen_on = {part: fit_threshold(full_size_samples(dm.datasets[part]), lambda x: x) for part in ("val", "test")}
    assert chosen_on["val"] != chosen_on["test"]  # so that the next line tells which split chose it
    assert threshold == chosen_on["val"]  # chosen on val at full size, never on the scored split
    for arrays, truth, pred in full_size_masks(module, dm, dm.datasets["test"]):
        assert arrays["mask"].shape == (64, 64)  # scored at the stored size, not the model's 32 px
        inter, union = inter + (pred & truth).sum(), union + (pred | truth).sum()
        base = np.abs(arrays["fg_bg"].astype(np.float32) - arrays["bg"]).mean(axis=2) / 255 > threshold
        inter_base, union_base = inter_base + (base & truth).sum(), union_base + (base | truth).sum()
    assert 0 < inter < union  # the model calls some pixels foreground, not all of them rightly
    assert run["native"]["model"]["mask/iou"] == pytest.approx(inter / union, abs=1e-6)
    assert run["native"]["baseline"]["mask/iou"] == pytest.approx(inter_base / union_base, abs=1e-6)


def test_evaluate_and_predict_refine_the_outline_as_full_resolution_does(run, tmp_path):
    step = KnownBackgroundOutline(confident=0.0, min_contrast=0.05)  # the tiny model is nowhere confident
    refined = evaluate(run["ckpt"], {}, str(tmp_path), outline=step)
    assert refined["outline"] == repr(step) and run["native"]["outline"] is None
    module, dm = full_size_test_split(run["ckpt"])
    inter = union = 0
    predictor = Predictor(module, outline=step)
    for arrays, truth, pred in full_size_masks(module, dm, dm.datasets["test"], step):
        inter, union = inter + (pred & truth).sum(), union + (pred | truth).sum()
        predicted = predictor([arrays["bg"]], [arrays["fg_bg"]])[0].mask > 0.5
        flipped = [a[:, ::-1] for a in (arrays["bg"], arrays["fg_bg"])]  # negative strides are taken too
        copied = [np.ascontiguousarray(a) for a in flipped]
        assert np.array_equal(predictor(*([a] for a in flipped))[0].mask, predictor(*([a] for a in copied))[0].mask)
        assert (predicted != pred).mean() < 1e-3  # the same masks but for a rounding at p = 0.5
    assert refined["model"]["mask/iou"] == pytest.approx(inter / union, abs=1e-6)
    assert refined["model"]["mask/iou"] != pytest.approx(run["native"]["model"]["mask/iou"], abs=1e-4)


def test_evaluate_compare_and_predict_average_each_mask_with_the_mirrored_pairs(run, tmp_path):
    step = KnownBackgroundOutline(confident=0.0, min_contrast=0.05)
    mirrored = evaluate(run["ckpt"], {}, str(tmp_path), outline=step, mirror=True)
    assert mirrored["mirror"] is True and run["native"]["mirror"] is False
    module, dm = full_size_test_split(run["ckpt"])
    inter = union = inter_one = union_one = 0
    predictor = Predictor(module, outline=step, mirror=True)
    for arrays, truth, pred in full_size_masks(module, dm, dm.datasets["test"], step, mirror=True):
        inter, union = inter + (pred & truth).sum(), union + (pred | truth).sum()
        predicted = predictor([arrays["bg"]], [arrays["fg_bg"]])[0].mask > 0.5
        assert (predicted != pred).mean() < 1e-3  # the same masks but for a rounding at p = 0.5
    for _, truth, pred in full_size_masks(module, dm, dm.datasets["test"], step):
        inter_one, union_one = inter_one + (pred & truth).sum(), union_one + (pred | truth).sum()
    assert inter / union != pytest.approx(inter_one / union_one, abs=1e-4)  # the tiny model is not symmetric
    assert mirrored["model"]["mask/iou"] == pytest.approx(inter / union, abs=1e-6)
    compared = compare([run["ckpt"]], {}, str(tmp_path / "compare"), outline=step, mirror=True)
    assert compared["mirror"] is True and compared["rows"][0]["mask/iou"] == pytest.approx(inter / union, abs=1e-6)


def test_an_unknown_resolution_is_refused(run):
    with pytest.raises(ValueError, match=r"^resolution must be one of \('native', 'model'\), got 'full'$"):
        evaluate(run["ckpt"], {}, None, resolution="full")


def test_evaluate_at_the_model_size_scores_one_pass_whatever_the_native_options(run, tmp_path):
    """`resolution=model` scores the model's own mask as validation does: the outline step and mirroring (the CLI's
    defaults) are not applied there, and the results say so."""
    with_options = evaluate(
        run["ckpt"], {}, str(tmp_path), resolution="model", outline=KnownBackgroundOutline(), mirror=True
    )
    assert with_options["mirror"] is False and with_options["outline"] is None
    assert with_options["model"]["mask/iou"] == pytest.approx(run["model"]["model"]["mask/iou"], abs=1e-6)


def test_bootstrap_intervals_hold_the_point_estimate_and_pair_the_images(run):
    model, baseline = run["native"]["model"], run["native"]["baseline"]
    lo, hi = model["mask/iou_ci95"]
    assert lo <= model["mask/iou"] <= hi
    lo, hi = baseline["mask/iou_ci95"]
    assert lo <= baseline["mask/iou"] <= hi
    # identical predictions: every resample gives the same IoU for both, so the gain interval is exactly [0, 0]
    counts = [(3, 4), (0, 2), (5, 5)]
    ci = bootstrap_iou(counts, counts, draws=50, min_images=3)
    assert ci["gain"] == [0.0, 0.0] and ci["model"] == ci["baseline"]
    one = bootstrap_iou([(3, 4)], [(1, 4)], draws=10, min_images=1)  # one image: no spread, a false certainty
    assert one == {"model": [0.75, 0.75], "baseline": [0.25, 0.25], "gain": [0.5, 0.5]}
    assert bootstrap_iou([(3, 4)] * 4, [(1, 4)] * 4) == {"model": None, "baseline": None, "gain": None}  # under 5
    # three images of union 4: a resample's IoU is its intersections' sum over 12; all three drawn alike has
    # probability 1/27 (3.7 %, above 2.5 %) each way, so the 95 % interval runs from the lowest to the highest
    spread = bootstrap_iou([(0, 4), (4, 4), (2, 4)], [(0, 4), (3, 4), (1, 4)], draws=2000, min_images=3)
    assert spread["model"] == [0.0, 1.0] and spread["baseline"] == [0.0, 0.75]
    # paired: the per-image gains are 0, 1/12 and 1/12, never negative (unpaired, the interval would cross 0)
    assert spread["gain"] == [0.0, 0.25]


def test_the_bootstrap_by_object_resamples_whole_objects():
    """Object a: ten images the model misses (0 of 1 each); objects b–e: one image each it gets (1 of 1). Drawing
    five objects, none is a with chance (4/5)^5 = 33 %, above 2.5 %, so the interval over objects reaches 1.0;
    drawing 14 images, none of a's ten has chance (4/14)^14 < 1e-7, so the interval over images stays below it."""
    model, baseline = [(0, 1)] * 10 + [(1, 1)] * 4, [(0, 1)] * 14
    objects = ["a"] * 10 + ["b", "c", "d", "e"]
    grouped, images = bootstrap_iou(model, baseline, groups=objects), bootstrap_iou(model, baseline)
    assert grouped["model"][1] == 1.0 and images["model"][1] < 0.75
    assert grouped["baseline"] == images["baseline"] == [0.0, 0.0] and grouped["gain"] == grouped["model"]
    # a drawn 5, 4 or 3 times of 5: IoU 0, 1/41 or 2/32, with chances 0.03 %, 0.6 % and 5 %: 2.5 % lies at 2/32
    assert grouped["model"][0] == pytest.approx(2 / 32) and images["model"][0] > 2 / 32
    # one image per group, labels in sorted order: the same draws as resampling images
    counts, other = [(3, 4), (0, 2), (5, 5), (1, 3), (2, 2)], [(1, 4), (1, 2), (4, 5), (0, 3), (2, 2)]
    assert bootstrap_iou(counts, other, groups=list("abcde")) == bootstrap_iou(counts, other)
    # ten images of two objects: too few objects to resample, however many images
    assert bootstrap_iou(counts * 2, other * 2, groups=list("ab") * 5) == {
        "model": None,
        "baseline": None,
        "gain": None,
    }
    with pytest.raises(ValueError, match="bootstrap_iou needs a group per image: 2 groups for 14 images"):
        bootstrap_iou(model, baseline, groups=["a", "b"])


def test_each_objects_iou_pools_its_own_images():
    model, baseline = MaskScores(from_logits=False), MaskScores(from_logits=False)
    model.counts, baseline.counts = [(1, 2), (3, 4), (0, 0)], [(0, 2), (1, 4), (0, 3)]
    assert iou_by_object(model, baseline, ["7", "3", "7"]) == {
        "3": {"images": 1, "model": 0.75, "baseline": 0.25},
        "7": {"images": 2, "model": 0.5, "baseline": 0.0},  # (1 + 0) / (2 + 0) and (0 + 0) / (2 + 3)
    }
    table = object_table(iou_by_object(model, baseline, ["7", "3", "7"]), shown=1)
    assert table.splitlines()[0] == "the 1 lowest of 2 objects (all in metrics.json):"
    assert table.splitlines()[-1] == "| 7 | 2 | 0.5000 | 0.0000 |"


def test_objects_of_reads_each_scored_id_or_gives_none():
    named = [
        Sample(f"b00000_o00{i}_m0_s0_p0", "bg/b00000.jpg", f"fg_bg/{i}.jpg", f"mask/{i}.png", None) for i in (1, 2)
    ]
    assert objects_of(named, [named[1].id, named[0].id, named[1].id]) == ["002", "001", "002"]
    nameless = Sample("photo_1", "bg/a.jpg", "fg_bg/photo_1.jpg", "mask/photo_1.png", None)
    assert objects_of([*named, nameless], [named[0].id, nameless.id]) is None  # one without an object: no groups


def test_evaluate_reports_intervals_over_objects_and_each_objects_iou(run, tmp_path):
    data = write_canonical_zip(tmp_path / "objects.zip", num_samples=40, size=64, objects=6)
    results = evaluate(run["ckpt"], {"path": str(data)}, str(tmp_path / "e"))
    model, baseline, by_object = results["model"], results["baseline"], results["by_object"]
    assert sorted(by_object) == [f"{o:03d}" for o in range(6)]
    assert sum(row["images"] for row in by_object.values()) == results["samples"]
    module = load_module(run["ckpt"])
    dm = instantiate(data_config(module.hparams.data["config"], {"path": str(data)}), _convert_="all")
    dm.setup("test")
    test, inter_union = dm.datasets["test"], {name: np.zeros(2) for name in by_object}
    for sample, (batch, (logits,)) in zip(test.samples, full_size_logits([module], test), strict=True):
        pred, truth = logits[0, 0] > 0, batch["mask"][0, 0] > 0.5
        inter_union[sample.id.split("_")[1][1:]] += [int((pred & truth).sum()), int((pred | truth).sum())]
    for name, (inter, union) in inter_union.items():
        assert by_object[name]["model"] == pytest.approx(inter / union, abs=1e-9), name
    for scores in (model, baseline):
        lo, hi = scores["mask/iou_ci95_by_object"]
        assert lo <= scores["mask/iou"] <= hi
    lo, hi = model["mask/iou_gain_ci95_by_object"]
    assert lo <= model["mask/iou"] - baseline["mask/iou"] <= hi
    assert "by_object" not in run["native"]  # ids that name no object: no groups
    same = compare([run["ckpt"], run["ckpt"]], {"path": str(data)}, str(tmp_path / "c"))
    assert same["rows"][0]["mask/iou_ci95_by_object"] == model["mask/iou_ci95_by_object"]
    assert same["rows"][1]["mask/iou_gain_ci95_by_object"] == [0.0, 0.0]
    assert "gain, objects resampled [95 %]" in table(same).splitlines()[0]
    assert "gain, objects resampled" not in table(compare([run["ckpt"]], {}, str(tmp_path / "n")))


def test_compare_table_rows_written_out() -> None:
    scores = {"mask/iou_per_image": 0.25, "mask/boundary_f": 0.125, "mask/precision": 1.0, "mask/recall": 0.5}
    first = {"checkpoint": "a|b.ckpt", "mask/iou": 0.5, "mask/iou_ci95": None, **scores}
    second = {"checkpoint": "c.ckpt", "mask/iou": 0.55, "mask/iou_ci95": [0.5, 0.6], **scores,
              "mask/iou_gain_ci95": [-0.01, 0.02]}  # fmt: skip
    assert table({"rows": [first, second]}).splitlines()[2:] == [
        "| a\\|b.ckpt | 0.5000 (too few images) | – | 0.2500 | 0.1250 | 1.0000 | 0.5000 |",
        "| c.ckpt | 0.5500 [0.5000, 0.6000] | [-0.0100, +0.0200] | 0.2500 | 0.1250 | 1.0000 | 0.5000 |",
    ]
    second |= {"mask/iou_ci95_by_object": [0.4, 0.7], "mask/iou_gain_ci95_by_object": [0.0, 0.03]}
    lines = table({"rows": [first, second]}).splitlines()
    assert lines[0].split(" | ")[3] == "gain, objects resampled [95 %]"
    assert lines[2].split(" | ")[2:4] == ["–", "–"] and lines[3].split(" | ")[2:4] == [
        "[-0.0100, +0.0200]",
        "[+0.0000, +0.0300]",
    ]


def test_evaluate_refuses_an_empty_val_split_where_the_baseline_chooses_its_threshold(run, tmp_path):
    with pytest.raises(DataError, match=r"data\.zip: the val split is empty: the \|fg_bg − bg\| baseline's thr"):
        evaluate(run["ckpt"], {"split": [0.5, 0.0, 0.5]}, str(tmp_path / "e"))


def test_evaluate_refuses_an_empty_test_split_in_one_line(run, tmp_path):
    with pytest.raises(DataError, match=r"data\.zip: the test split is empty: it is what is scored; change data\.spl"):
        evaluate(run["ckpt"], {"split": [0.5, 0.5, 0.0]}, str(tmp_path / "e"))


def test_evaluate_warns_when_the_checkpoints_own_data_no_longer_holds_what_it_trained_on(run, tmp_path, caplog):
    ckpt = torch.load(run["ckpt"], weights_only=True)
    ckpt["hyper_parameters"]["data"]["contents"] = ["0" * 16]  # as if the zip at its path had been replaced
    torch.save(ckpt, tmp_path / "moved.ckpt")
    with caplog.at_level(logging.WARNING, logger="mdeas.evaluate"):
        evaluate(run["ckpt"], {}, str(tmp_path / "same"), resolution="model")
        assert "not the files this checkpoint trained on" not in caplog.text
        evaluate(str(tmp_path / "moved.ckpt"), {}, str(tmp_path / "moved"), resolution="model")
        assert f"{run['data']}: not the files this checkpoint trained on (their contents differ" in caplog.text
        caplog.clear()  # named again by its path, the replaced zip keeps the training split: the same warning
        evaluate(str(tmp_path / "moved.ckpt"), {"path": str(run["data"])}, str(tmp_path / "named"), resolution="model")
    assert f"{run['data']}: not the files this checkpoint trained on (their contents differ" in caplog.text


def test_mask_scores_keep_one_id_per_image_or_none():
    pred, target = torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    scores = MaskScores(from_logits=False)
    scores.update(pred, target, ["a", "b"])
    assert scores.ids == ["a", "b"]
    with pytest.raises(ValueError, match=r"one sample id per image: 2 images, ids \['c'\]"):
        scores.update(pred, target, ["c"])
    with pytest.raises(ValueError, match="one sample id per image: 2 images, ids 'cd'"):
        scores.update(pred, target, "cd")
    scores.update(pred, target)  # a batch without ids: no object can be told for any image
    scores.update(pred, target, ["e", "f"])
    assert scores.ids is None and len(scores.counts) == 6 and objects_of([], scores.ids) is None


def test_a_checkpoint_without_a_data_config_is_evaluated_with_the_data_modules_defaults(run, tmp_path):
    ckpt = torch.load(run["ckpt"], weights_only=True)
    ckpt["hyper_parameters"]["data"] = None
    torch.save(ckpt, tmp_path / "bare.ckpt")
    with pytest.raises(ValueError, match=r"^the checkpoint holds no data config; give data\.path=\.\.\.$"):
        evaluate(str(tmp_path / "bare.ckpt"), {}, str(tmp_path / "e"))
    results = evaluate(str(tmp_path / "bare.ckpt"), {"path": str(run["data"]), "num_workers": 0}, str(tmp_path / "e"))
    # with no record of its training data, the set counts as another one: 15 % of its 20 backgrounds (3, with 2
    # samples each) pick the baseline's threshold, the other 34 samples are scored
    assert results["samples"] == 40 - 3 * 2 and 0 <= results["model"]["mask/iou"] <= 1


def test_the_score_follows_the_native_mask_iou(run):
    model = run["native"]["model"]
    assert model["score"] == pytest.approx((model["mask/iou"] + model["depth/delta1"]) / 2)
    assert abs(model["mask/iou"] - run["model"]["model"]["mask/iou"]) > 1e-3  # the native IoU, not the model size's


def test_compare_scores_each_checkpoint_as_evaluate_does_and_pairs_the_gain(run, tmp_path):
    data = run["data"]
    other = train(compose_train(tmp_path / "other", data, *TINY_TRAIN, "seed=1"))["best_checkpoint"]
    same = compare([run["ckpt"], run["ckpt"]], {}, str(tmp_path / "same"))
    assert json.loads((tmp_path / "same" / "compare.json").read_text()) == same
    assert same["rows"][0]["mask/iou"] == pytest.approx(run["native"]["model"]["mask/iou"], abs=1e-9)
    assert same["rows"][1]["mask/iou_gain_ci95"] == [0.0, 0.0] and "mask/iou_gain_ci95" not in same["rows"][0]
    two = compare([run["ckpt"], other], {}, str(tmp_path / "two"))
    gain = two["rows"][1]["mask/iou"] - two["rows"][0]["mask/iou"]
    lo, hi = two["rows"][1]["mask/iou_gain_ci95"]
    assert gain != 0 and lo <= gain <= hi, (gain, lo, hi)
    assert "| " + other + " |" in table(two)
    one = compare([run["ckpt"]], {}, str(tmp_path / "one"))  # one checkpoint: its scores and interval, no gain
    assert len(one["rows"]) == 1 and "mask/iou_gain_ci95" not in one["rows"][0]
    assert one["rows"][0]["mask/iou"] == pytest.approx(run["native"]["model"]["mask/iou"], abs=1e-9)
    with pytest.raises(ValueError, match="ckpt_paths needs a checkpoint or more, got none"):
        compare([], {})


def test_compare_scores_the_val_split_when_asked(run, tmp_path):
    """part=val scores the val split (a check set's selection part): its pooled IoU equal to a hand computation at
    full size, one pass (`mirror` off, as `full_size_masks` predicts)."""
    module = load_module(run["ckpt"]).eval()
    datamodule = instantiate(data_config(module.hparams.data["config"], {}), _convert_="all")
    datamodule.setup("test")
    val = datamodule.datasets["val"]
    inter = union = 0
    for _, truth, pred in full_size_masks(module, datamodule, val):
        inter, union = inter + (pred & truth).sum(), union + (pred | truth).sum()
    results = compare([run["ckpt"], run["ckpt"]], {}, str(tmp_path), "cpu", part="val")
    assert (results["part"], results["samples"]) == ("val", len(val))
    assert results["rows"][0]["mask/iou"] == pytest.approx(inter / union, abs=1e-6)
    assert results["rows"][0]["mask/iou"] != pytest.approx(run["native"]["model"]["mask/iou"], abs=1e-9)
    with pytest.raises(ValueError, match="part must be one of test, val, got 'train'"):
        compare([run["ckpt"], run["ckpt"]], {}, part="train")


def test_compare_refuses_an_empty_part(run, tmp_path):
    with pytest.raises(DataError, match=r"data\.zip: the val split is empty: change data\.split or part$"):
        compare([run["ckpt"]], {"split": [0.5, 0.0, 0.5]}, str(tmp_path / "c"), part="val")


def test_compare_warns_when_a_checkpoint_trained_on_another_split_of_the_scored_data(run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mdeas.compare"):
        compare([run["ckpt"]], {}, str(tmp_path / "same"))
        compare([run["ckpt"]], {"limit": 20}, str(tmp_path / "fewer"))  # a limit cuts each part: none moves
        assert "trained on another split" not in caplog.text
        compare([run["ckpt"]], {"seed": 1}, str(tmp_path / "reshuffled"))  # its training samples among the scored
    assert f"{run['ckpt']} trained on another split of the data scored here: its scores may include its own" in (
        caplog.text
    )


def test_two_data_configs_read_the_same_samples_when_they_name_the_same_files_or_generated_set(tmp_path):
    generated = {"path": None, "synth": {"num_samples": 100, "seed": 0}}
    assert same_data(generated, {**generated, "seed": 1})  # the same generated set, split another way
    assert not same_data(generated, {"path": None, "synth": {"num_samples": 100, "seed": 1}})  # another set
    zip_path = str(write_canonical_zip(tmp_path / "d.zip", num_samples=2, size=16))
    assert same_data({"path": zip_path}, {"path": [zip_path], "synth": generated["synth"]})
    assert not same_data({**generated, "path": zip_path}, generated)  # a file against a generated set
    assert not same_data({"path": None, "synth": None}, {"path": None, "synth": None})  # nothing to read


def test_compare_entry_names_a_missing_checkpoint_in_one_line(run, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mdeas.compare", f"ckpt_paths=[{run['ckpt']},nope.ckpt]"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "error: nope.ckpt: no such checkpoint file"
    one = subprocess.run(
        [sys.executable, "-m", "mdeas.compare", f"ckpt_paths={run['ckpt']}"],  # one path, not a list
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    rows = [line for line in one.stdout.splitlines() if line.startswith(f"| {run['ckpt']} |")]
    assert len(rows) == 1 and "| – |" in rows[0]  # scored, with no gain column to fill


def varied_masks(src: Path, dst: Path) -> Path:
    """A copy of the 64 px canonical zip `src` whose masks are squares of side 8 + 6 b px on background b: each
    background's samples have a foreground area of their own, so that scores of different parts differ whatever
    the model predicts."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.startswith("mask/"):
                side = 8 + 6 * int(Path(info.filename).stem[1:4])  # ids b003_f06: background 3
                mask = np.zeros((64, 64), np.uint8)
                mask[4 : 4 + side, 6 : 6 + side] = 255
                data = encode(mask, "PNG")
            out.writestr(info, data)
    return dst


def test_the_selection_scorer_scores_val_where_evaluate_scores_test(run, tmp_path):
    """The report part is the test split that evaluate scores; the selection part is the val split, which shares no
    background with it, its IoU and pixel accuracy equal to a hand computation at full size."""
    data = str(varied_masks(run["data"], tmp_path / "varied.zip"))
    parts = {"split_by": "background", "split": [0.0, 0.5, 0.5], "seed": 0}  # the tiny set's ids name no object
    evaluated = evaluate(run["ckpt"], {"path": data, **parts}, str(tmp_path / "e"))
    report = score_part(run["ckpt"], data, "test", parts)
    assert report["samples"] == evaluated["samples"] > 0
    for key in ("mask/iou", "mask/accuracy"):
        assert report[key] == pytest.approx(evaluated["model"][key], abs=1e-9), key
    selection = score_part(run["ckpt"], data, "val", parts)
    module = load_module(run["ckpt"])
    dm = instantiate(data_config(module.hparams.data["config"], {"path": data, **parts}), _convert_="all")
    dm.setup("test")
    val, test = dm.datasets["val"], dm.datasets["test"]
    assert not {s.bg for s in val.samples} & {s.bg for s in test.samples}  # the parts share no background
    assert selection["samples"] == len(val) > 0
    inter = union = correct = pixels = 0
    for _, truth, pred in full_size_masks(module, dm, val):
        inter, union = inter + (pred & truth).sum(), union + (pred | truth).sum()
        correct, pixels = correct + (pred == truth).sum(), pixels + truth.size
    assert selection["mask/iou"] == pytest.approx(inter / union, abs=1e-6)
    assert selection["mask/accuracy"] == pytest.approx(correct / pixels, abs=1e-6)
    assert abs(selection["mask/accuracy"] - report["mask/accuracy"]) > 1e-3  # the two parts score apart


def test_interval_counts_threshold_as_the_pooled_scores_do():
    """A logit of 3e-8 (probability 0.5 in float32) is object, as the outline step decides, for the pooled IoU and
    for the per-image counts alike."""
    scores = MaskScores(from_logits=True)
    pred = torch.tensor([[[[3e-8, 5.0], [-5.0, 5.0]]]])
    scores.update(pred, torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))
    assert scores.counts == [(2, 3)] and scores.compute()["mask/iou"] == pytest.approx(2 / 3)


def test_full_size_samples_leave_out_unreadable_ones_only_when_asked_and_count_them(tmp_path, caplog):
    index = load_index(str(truncated_fg_bg(tmp_path, every=6)), strict=False)  # 4 of 24 fg_bg cut short
    skipping = MaskDepthDataset(index, index.samples, 32, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="mdeas.native_eval"):
        assert len(list(full_size_samples(skipping))) == 20
    assert "left out 4 of 24 samples that cannot be read (data.on_error=skip)" in caplog.text
    with pytest.raises(DataError, match="cannot decode image"):
        list(full_size_samples(MaskDepthDataset(index, index.samples, 32)))
    unreadable = [sample for i, sample in enumerate(index.samples) if i % 6 == 0]  # the 4 cut short
    nothing = MaskDepthDataset(index, unreadable, 32, on_error="skip", name="test")
    with pytest.raises(DataError, match=r"bad\.zip: test: no sample to score; every one of its 4 was left out"):
        list(full_size_samples(nothing))  # an empty score would read as a perfect one


def test_evaluate_and_compare_count_the_samples_they_scored(run, tmp_path):
    bad = truncated_fg_bg(tmp_path, every=3)  # 8 of 24 fg_bg cut short
    data = {"path": str(bad), "on_error": "skip"}
    results = evaluate(run["ckpt"], data, str(tmp_path / "e"))
    compared = compare([run["ckpt"]], data, str(tmp_path / "c"))
    clean = compare([run["ckpt"]], {"path": str(tmp_path / "clean.zip")}, str(tmp_path / "k"))  # the same split
    at_model_size = evaluate(run["ckpt"], data, str(tmp_path / "m"), resolution="model")
    assert results["samples"] == compared["samples"] == at_model_size["samples"]
    module = load_module(run["ckpt"])
    dm = instantiate(data_config(module.hparams.data["config"], {"path": str(tmp_path / "clean.zip")}), _convert_="all")
    dm.setup("test")
    with zipfile.ZipFile(bad) as archive:  # the fg_bg entries cut short, as `truncated_fg_bg` chose them
        cut = set(sorted(name for name in archive.namelist() if name.startswith("fg_bg/"))[::3])
    whole = [s for s in dm.datasets["test"].samples if s.fg_bg not in cut]  # one zip: keys are entry names
    assert len(cut) == 8 and clean["samples"] == len(dm.datasets["test"]) > compared["samples"] == len(whole) > 0


def test_evaluate_refuses_an_empty_or_numeric_data_path_before_reading_anything():
    """`data.path=[]` would read as no path (the generated set, scored in place of the checkpoint's own data)."""
    for path in ([], 2024):
        with pytest.raises(ValueError) as refused:
            data_config({"path": "set.zip"}, {"path": path})
        assert str(refused.value).startswith(f"data.path must be a zip or a list of zips, got {path!r}")


def masks_changed(src: Path, dst: Path, change) -> Path:
    """A copy of zip `src` with each mask entry's array replaced by `change(mask)`."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.startswith("mask/"):
                data = encode(change(np.asarray(Image.open(io.BytesIO(data)))), "PNG")
            out.writestr(info, data)
    return dst


def test_evaluate_warns_when_no_scored_mask_holds_foreground_or_most_pixels_do(run, tmp_path, caplog):
    """Empty truths score any empty prediction as IoU 1, and inverted ones make the background the object: said,
    not passed off as a result."""
    empty = masks_changed(run["data"], tmp_path / "empty.zip", np.zeros_like)
    inverted = masks_changed(run["data"], tmp_path / "inverted.zip", lambda mask: 255 - mask)
    with caplog.at_level(logging.WARNING, logger="mdeas.native_eval"):
        evaluate(run["ckpt"], {}, str(tmp_path / "full"))
        results = evaluate(run["ckpt"], {"path": str(empty)}, str(tmp_path / "e"))
        evaluate(run["ckpt"], {"path": str(inverted)}, str(tmp_path / "i"))
    first, second = (r.getMessage() for r in caplog.records if r.name == "mdeas.native_eval")  # none on the data
    said = f"{empty}: no mask of the {results['samples']} samples scored holds a foreground pixel: the mask scores "
    assert first == said + "compare empty masks (IoU 1 for predicting nothing)"
    share = re.fullmatch(
        rf"{re.escape(str(inverted))}: (\d+) % of the scored mask pixels are foreground: are the masks inverted "
        r"\(the object black on white\)\?",
        second,
    )
    assert share and 50 < int(share.group(1)) < 100, second
