import copy
import warnings
from pathlib import Path
from types import SimpleNamespace

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mdeas.export import export
from mdeas.inference import Predictor, full_resolution, load_module, load_weights
from mdeas.losses.group import LossGroup
from mdeas.metrics.functional import mask_metrics
from mdeas.models import create_model
from mdeas.models.refiner import (
    PatchRefiner,
    RefinedNet,
    alpha_maps,
    patch_uncertainty,
    refined,
    select_patches,
    upsample,
)
from mdeas.module import MaskDepthModule
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = {"name": "composed", "encoder": "plain", "encoder_kwargs": {"widths": [8, 16]}, "decoder": "light"}  # stride 4


def tiny_base() -> torch.nn.Module:
    return create_model(**TINY)


def randomise_last_layer(refiner: PatchRefiner) -> PatchRefiner:
    """A refiner that changes the logits it refines (its last conv starts at zero)."""
    torch.nn.init.normal_(refiner.net[-1].weight, std=0.5)
    return refiner


def tiny_module(image_size: int = 64, features: int = 0, alpha: bool = False) -> MaskDepthModule:
    """A MaskDepthModule of a refined tiny base, built from config as training builds it (its refiner reading
    `features` channels of the base's mask head input, and the alpha maps if `alpha`)."""
    refiner = {"_target_": "mdeas.models.refiner.PatchRefiner", "features": features, "alpha": alpha}
    model = {"_target_": "mdeas.models.refiner.refined", **TINY, "refiner": refiner}
    model["hidden"] = "mask_decoder.head" if features else None
    return MaskDepthModule(
        model=model,
        loss=OmegaConf.load(CONF / "loss/bce_dice_ssim.yaml"),
        optim=OmegaConf.load(CONF / "optim/adam.yaml"),
        data={"image_size": image_size, "mean": [0.5] * 3, "std": [0.25] * 3},
    )


def shapes(out: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in out.items()}


def test_shapes_at_training_size_and_at_native_sizes():
    torch.manual_seed(0)
    net = RefinedNet(tiny_base(), PatchRefiner(), downsample=4).eval()
    assert net.stride == 16
    keys = ("mask", "depth", "mask_coarse")
    with torch.no_grad():
        assert shapes(net(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))) == {k: (2, 1, 64, 64) for k in keys}
        for h, w in ((480, 640), (1080, 1920), (37, 45)):
            out = net.forward_full(torch.randn(1, 3, h, w), torch.randn(1, 3, h, w), train_size=64)
            assert shapes(out) == {k: (1, 1, h, w) for k in keys}
    with pytest.raises(ValueError, match="not divisible by the model stride 16"):
        net(torch.zeros(1, 3, 40, 40), torch.zeros(1, 3, 40, 40))


def test_each_image_chooses_its_own_patches_whatever_the_batch():
    torch.manual_seed(0)
    net = RefinedNet(tiny_base(), PatchRefiner(), downsample=4, fraction=0.1).eval()
    randomise_last_layer(net.refiner)
    bg, fg_bg = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        batch, alone = net(bg, fg_bg), net(bg[1:2], fg_bg[1:2])
    for key in ("mask", "depth", "mask_coarse"):
        assert torch.allclose(batch[key][1:2], alone[key], atol=1e-5), key
    assert not torch.allclose(batch["mask"][1:2], batch["mask_coarse"][1:2])  # patches were refined


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"fraction": "abc"}, "model.fraction must be a finite number, got 'abc'"),
        ({"fraction": 0}, r"model.fraction must be in \(0, 1\], got 0"),
        ({"threshold": 5}, r"model.threshold \(the least uncertainty refined\) must be in \[0, 1\], got 5"),
        ({"threshold": "abc"}, "model.threshold must be a finite number, got 'abc'"),  # stored, then failed in evaluate
        ({"downsample": 0}, "model.downsample must be a whole number >= 1, got 0"),
    ],
)
def test_a_refined_model_names_a_bad_option(option, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        RefinedNet(tiny_base(), PatchRefiner(), **option)


def test_only_the_selected_patches_change_the_coarse_logits():
    torch.manual_seed(0)
    bg, fg_bg, coarse = torch.randn(2, 3, 37, 45), torch.randn(2, 3, 37, 45), 3 * torch.randn(2, 1, 37, 45)
    refiner = PatchRefiner(patch=8)
    assert torch.equal(refiner(bg, fg_bg, coarse, k=5), coarse)  # last layer at zero: the coarse logits as they are
    randomise_last_layer(refiner)
    refined_logits = refiner(bg, fg_bg, coarse, k=5)
    padded = F.pad(coarse, (0, 3, 0, 3), mode="replicate")  # 40 × 48: whole patches
    image, row, col = select_patches(patch_uncertainty(padded, 8), 5)
    selected = torch.zeros(2, 1, 40, 48, dtype=torch.bool)
    for b, r, c in zip(image.tolist(), row.tolist(), col.tolist(), strict=True):
        selected[b, 0, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = True
    selected = selected[..., :37, :45]
    assert torch.equal(refined_logits[~selected], coarse[~selected])
    assert (refined_logits[selected] != coarse[selected]).float().mean() > 0.9
    assert image.bincount().tolist() == [5, 5]


@pytest.mark.parametrize(("dilations", "features", "alpha"), [(None, 0, False), ((1, 3), 0, True), (None, 2, True)])
def test_refining_every_patch_equals_the_dense_pass(dilations, features, alpha):
    torch.manual_seed(0)
    bg, fg_bg, coarse = torch.randn(2, 3, 37, 45), torch.randn(2, 3, 37, 45), torch.randn(2, 1, 37, 45)
    hidden = torch.randn(2, features, 37, 45) if features else None
    maps = alpha_maps(coarse, bg, fg_bg) if alpha else None
    refiner = randomise_last_layer(PatchRefiner(patch=8, dilations=dilations, features=features, alpha=alpha))
    if alpha:
        torch.nn.init.normal_(refiner.alpha.weight)  # it starts at zero: make the maps count
    rows, cols = refiner.grid((37, 45))
    every = refiner(bg, fg_bg, coarse, k=rows * cols, features=hidden, alpha=maps)
    assert torch.allclose(every, refiner(bg, fg_bg, coarse, k=None, features=hidden, alpha=maps), atol=1e-5)


def test_alpha_maps_hold_the_opacity_of_a_composite_and_its_contrast():
    """A square of one colour pasted with a soft left edge on a plain bg: beside the coarse mask's confident
    inside, the first map is the paste's opacity and the second |F − B|; far from it 0.5 and 0."""
    bg = torch.full((1, 3, 32, 32), -1.0)
    colour = torch.tensor([1.0, 0.5, -0.5]).view(1, 3, 1, 1)
    opacity = torch.zeros(1, 1, 32, 32)
    opacity[..., 8:24, 10:24] = 1.0
    opacity[..., 8:24, 9], opacity[..., 8:24, 8] = 0.75, 0.25  # the soft edge, 2 px wide
    fg_bg = opacity * colour + (1 - opacity) * bg
    coarse = torch.where(opacity > 0.5, 4.0, -4.0)
    maps = alpha_maps(coarse, bg, fg_bg)
    assert maps.shape == (1, 2, 32, 32)
    near = maps[0, 0, 8:24, 4:28]  # every pixel here has confident inside within 6 px
    assert torch.allclose(near, opacity[0, 0, 8:24, 4:28], atol=1e-5)
    assert torch.allclose(maps[0, 1, 8:24, 4:28], torch.tensor(2.0**2 + 1.5**2 + 0.5**2).sqrt())
    assert torch.equal(maps[0, :, 0, 0], torch.tensor([0.5, 0.0]))  # no confident foreground within 6 px


def test_a_refiner_reading_alpha_maps_checks_it_gets_them():
    bg, coarse = torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="the refiner reads alpha maps, got False"):
        PatchRefiner(alpha=True)(bg, bg, coarse, k=1)
    with pytest.raises(ValueError, match="the refiner reads no alpha maps, got True"):
        PatchRefiner()(bg, bg, coarse, k=1, alpha=torch.zeros(1, 2, 16, 16))


def test_dilations_widen_the_context_and_a_patch_reads_nothing_beyond_it():
    torch.manual_seed(0)
    refiner = randomise_last_layer(PatchRefiner(widths=(8, 8, 8), dilations=(1, 2, 3), patch=8))
    assert refiner.context == 7  # 1 + 2 + 3 px from the hidden convs, 1 from the last
    bg, fg_bg, coarse = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40), torch.zeros(1, 1, 40, 40)

    def patch_22(bg: torch.Tensor) -> torch.Tensor:  # the refined logits of the patch at row 2, column 2
        with torch.no_grad():
            return refiner(bg, fg_bg, coarse, k=25)[..., 16:24, 16:24]

    inside, outside = bg.clone(), bg.clone()
    inside[..., 16 - 7, 20] += 5.0  # 7 px above the patch: within its context
    outside[..., 16 - 8, 20] += 5.0  # 8 px above: beyond it
    assert not torch.equal(patch_22(inside), patch_22(bg))
    assert torch.equal(patch_22(outside), patch_22(bg))
    with pytest.raises(ValueError, match=r"dilations must be 2 integers ≥ 1 \(one per width\), got \[1\]"):
        PatchRefiner(widths=(8, 8), dilations=(1,))


def test_the_refiner_reads_the_bases_hidden_map_through_a_projection():
    torch.manual_seed(0)
    net = RefinedNet(
        tiny_base(), randomise_last_layer(PatchRefiner(features=4)), fraction=0.5, hidden="mask_decoder.head"
    )
    assert (net.project.in_channels, net.project.out_channels) == (16, 4)  # the tiny base's mask head reads 16
    bg, fg_bg = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    twin = copy.deepcopy(net)
    out = net(bg, fg_bg)
    out["mask"].sum().backward()
    assert net.project.weight.grad.abs().sum() > 0  # the features reach the refined mask
    with torch.no_grad():
        assert torch.equal(twin(bg, fg_bg)["mask"], out["mask"])  # a copy records its own base's map
        twin.project.weight.zero_()
        twin.project.bias.zero_()
        assert not torch.equal(twin(bg, fg_bg)["mask"], out["mask"])
        assert shapes(net.eval().forward_full(torch.randn(1, 3, 37, 45), torch.randn(1, 3, 37, 45), 64))["mask"] == (
            1,
            1,
            37,
            45,
        )


def test_hidden_features_need_a_module_of_the_base_and_a_refiner_reading_them():
    with pytest.raises(ValueError, match="a refiner reading 4 feature channels needs hidden"):
        RefinedNet(tiny_base(), PatchRefiner(features=4))
    with pytest.raises(ValueError, match="a refiner reading 0 feature channels needs hidden"):
        RefinedNet(tiny_base(), PatchRefiner(), hidden="mask_decoder.head")
    with pytest.raises(ValueError, match="the base has no module 'mask_head' \\(hidden\\)"):
        RefinedNet(tiny_base(), PatchRefiner(features=4), hidden="mask_head")
    with pytest.raises(ValueError, match="the refiner reads 4 feature channels, got 0"):
        PatchRefiner(features=4)(*torch.zeros(2, 1, 3, 16, 16), torch.zeros(1, 1, 16, 16), k=1)


def test_selection_picks_the_most_uncertain_patches():
    logits = torch.full((1, 1, 32, 32), 12.0)  # a 4 × 4 grid of 8-px patches, all sure
    for (r, c), value in {(0, 3): 0.0, (2, 1): -0.5, (3, 0): 1.5, (1, 2): -3.0}.items():
        logits[0, 0, 8 * r + 5, 8 * c + 2] = value  # one unsure pixel makes its patch unsure
    uncertainty = patch_uncertainty(logits, 8)
    p = torch.sigmoid(logits)
    expected = F.max_pool2d(1 - (2 * p - 1).abs(), 8)[:, 0]
    assert torch.allclose(uncertainty, expected, atol=1e-6)
    _, row, col = select_patches(uncertainty, k=3)
    assert list(zip(row.tolist(), col.tolist(), strict=True)) == [(0, 3), (2, 1), (3, 0)]
    _, row, col = select_patches(uncertainty, k=3, threshold=0.5)  # (3, 0): 1 - tanh(0.75) = 0.37 is below
    assert list(zip(row.tolist(), col.tolist(), strict=True)) == [(0, 3), (2, 1)]
    sure = torch.zeros(2, 8, 8)  # patches that tie: the first ones in row-major order (torch's topk takes others)
    sure[:, 0, :2] = 0.5
    sure[1, 7, 7] = 0.7
    image, row, col = select_patches(sure, k=4)
    assert list(zip(image.tolist(), row.tolist(), col.tolist(), strict=True)) == [
        (0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (1, 7, 7), (1, 0, 0), (1, 0, 1), (1, 0, 2)
    ]  # fmt: skip


def test_a_margin_makes_the_patches_beside_an_unsure_pixel_unsure_too():
    logits = torch.full((1, 1, 24, 24), 12.0)  # a 3 × 3 grid of 8-px patches, all sure
    logits[0, 0, 8, 14] = 0.0  # patch (1, 1): 1 px below patch (0, 1), 2 px left of patch (1, 2)
    assert (patch_uncertainty(logits, 8)[0] > 0.5).nonzero().tolist() == [[1, 1]]
    assert (patch_uncertainty(logits, 8, margin=1)[0] > 0.5).nonzero().tolist() == [[0, 1], [1, 1]]
    unsure = (patch_uncertainty(logits, 8, margin=2)[0] > 0.5).nonzero().tolist()
    assert unsure == [[0, 1], [0, 2], [1, 1], [1, 2]]  # within 2 px: above, on the right, and their corner
    refiner = randomise_last_layer(PatchRefiner(patch=8, margin=2))
    images = torch.rand(2, 1, 3, 24, 24)
    with torch.no_grad():
        changed = (refiner(*images, logits, k=9, threshold=0.5) != logits)[0, 0]
    assert changed.view(3, 8, 3, 8).any(3).any(1).nonzero().tolist() == unsure  # the refiner refines just those
    with pytest.raises(ValueError, match=r"margin must be in \[0, patch / 2 = 4\] px, got 5"):
        PatchRefiner(patch=8, margin=5)


def test_patches_refined_scale_with_the_image_area_and_stop_at_the_threshold():
    torch.manual_seed(0)
    net = RefinedNet(tiny_base(), randomise_last_layer(PatchRefiner()), downsample=4, fraction=0.25).eval()
    assert (
        net.patches_per_image((64, 64)) == 16
        and net.patches_per_image((1080, 1920)) == 8100
        and net.patches_per_image((37, 45)) == 8
    )
    assert RefinedNet(tiny_base(), PatchRefiner(), fraction=1.0).patches_per_image((1080, 1920)) is None
    bg, fg_bg = torch.randn(1, 3, 120, 160), torch.randn(1, 3, 120, 160)
    with torch.no_grad():
        for threshold, changed in ((0.0, 0.25), (1.01, 0.0)):  # uncertainty is at most 1: none above 1.01
            net.threshold = threshold
            out = net.forward_full(bg, fg_bg, train_size=64)
            assert (out["mask"] != out["mask_coarse"]).float().mean() == pytest.approx(changed, abs=0.01)
        net.fraction = 1.0  # every patch may be refined; at native size the threshold still chooses
        for threshold, changed in ((0.0, 1.0), (1.01, 0.0)):
            net.threshold = threshold
            out = net.forward_full(bg, fg_bg, train_size=64)
            assert (out["mask"] != out["mask_coarse"]).float().mean() == pytest.approx(changed, abs=0.01)


def test_a_mask_coarse_loss_term_scores_the_coarse_mask_against_the_mask():
    torch.manual_seed(0)
    outputs = {"mask": torch.randn(2, 1, 8, 8), "mask_coarse": torch.randn(2, 1, 8, 8)}
    batch = {"mask": (torch.rand(2, 1, 8, 8) > 0.5).float()}
    group = LossGroup({"fine": {"target": "mask", "fn": "bce"}, "coarse": {"target": "mask_coarse", "fn": "bce"}})
    total, parts = group(outputs, batch)
    assert parts["coarse"] == pytest.approx(
        float(F.binary_cross_entropy_with_logits(outputs["mask_coarse"], batch["mask"]))
    )
    assert total == pytest.approx(float(parts["fine"] + parts["coarse"]))


@pytest.mark.parametrize("loss", ["bce_dice_ssim", "ssim_mse"])
def test_the_default_recipe_supervises_the_coarse_mask_under_any_loss(tmp_path: Path, loss: str) -> None:
    cfg = compose_train(tmp_path, tmp_path / "d.zip", "model=resunet_detail", f"loss={loss}")
    names = {spec.name: spec.target for spec in LossGroup(cfg.loss.terms).terms}
    assert names["mask_coarse_bce"] == "mask_coarse"
    assert names.keys() - {"mask_coarse_bce"} == set(OmegaConf.load(CONF / f"loss/{loss}.yaml").terms)
    plain = compose_train(tmp_path, tmp_path / "d.zip", "model=resunet", f"loss={loss}")
    assert "mask_coarse_bce" not in plain.loss.terms  # a plain preset has no coarse mask to score


def save_base_checkpoint(path: Path, base: torch.nn.Module, model_cfg: dict) -> Path:
    """A checkpoint of a base model alone, as a base run leaves it (weights under `model.`)."""
    state = {f"model.{k}": v for k, v in base.state_dict().items()}
    torch.save({"hyper_parameters": {"model": model_cfg}, "state_dict": state}, path)
    return path


def test_a_refined_model_loads_a_base_checkpoint_into_its_base_and_freezes_it(tmp_path):
    torch.manual_seed(0)
    base = tiny_base()
    ckpt = save_base_checkpoint(tmp_path / "base.ckpt", base, {"_target_": "mdeas.models.create_model", **TINY})
    net = refined(**TINY, refiner=PatchRefiner(), freeze_base=True)
    load_weights(net, ckpt)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in net.base.state_dict().items())
    net.train()
    assert not net.base.training and net.refiner.training
    out = net(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    (out["mask"].mean() + out["depth"].mean()).backward()
    assert all(p.grad is None for p in net.base.parameters())
    assert net.refiner.net[-1].weight.grad.abs().sum() > 0


def test_a_refiner_trained_without_alpha_maps_loads_into_one_that_reads_them(tmp_path):
    """Second stage with `model.refiner.alpha=true` from a run without: every weight loads, the alpha conv keeps
    its zero start, so the model starts from the run's masks exactly and learns from the maps."""
    torch.manual_seed(0)
    trained = RefinedNet(tiny_base(), randomise_last_layer(PatchRefiner()), fraction=0.5)
    path = save_base_checkpoint(tmp_path / "refined.ckpt", trained, {"_target_": "mdeas.models.refiner.refined"})
    reading = RefinedNet(tiny_base(), PatchRefiner(alpha=True), fraction=0.5)
    load_weights(reading, path)
    assert reading.refiner.alpha.weight.abs().sum() == 0
    bg, fg_bg = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    trained.eval(), reading.eval()
    with torch.no_grad():
        assert torch.equal(reading(bg, fg_bg)["mask"], trained(bg, fg_bg)["mask"])
    reading.train()(bg, fg_bg)["mask"].sum().backward()
    assert reading.refiner.alpha.weight.grad.abs().sum() > 0


def test_second_stage_training_from_a_base_checkpoint_keeps_the_base(tmp_path):
    """`+model/refiner=patch model.freeze_base=true init_from=<base ckpt>`: the run trains the refiner only."""
    data = write_canonical_zip(tmp_path / "tiny.zip", num_samples=12, size=32)
    torch.manual_seed(0)
    base = create_model("densenet_dilated")
    ckpt = save_base_checkpoint(
        tmp_path / "base.ckpt", base, {"_target_": "mdeas.models.create_model", "name": "densenet_dilated"}
    )
    overrides = ("+model/refiner=patch", "model.downsample=2", "model.freeze_base=true", f"init_from={ckpt}")
    cfg = compose_train(
        tmp_path / "run", data, "trainer.max_epochs=1", "callbacks.image_grid=null", "test=false", *overrides
    )
    module = load_module(train(cfg)["best_checkpoint"])
    assert isinstance(module.model, RefinedNet)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in module.model.base.state_dict().items())  # BN stats too
    assert module.model.refiner.net[-1].weight.abs().sum() > 0  # the refiner learned from its zero start


def test_predictor_and_full_resolution_return_full_size_outputs():
    torch.manual_seed(0)
    module = tiny_module(image_size=64)
    randomise_last_layer(module.model.refiner)
    rng = np.random.default_rng(0)
    bgs = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((1080, 1920), (30, 50))]
    fg_bgs = [bg.copy() for bg in bgs]
    fg_bgs[0][400:700, 800:1100] = (250, 20, 20)
    predictions = Predictor(module)(bgs, fg_bgs)
    for p, bg in zip(predictions, bgs, strict=True):
        assert p.mask.shape == p.depth.shape == p.depth_norm.shape == bg.shape[:2]
    pair = bgs[0], fg_bgs[0]  # normalised as the Predictor does (mean 0.5, std 0.25 on the 0-255 scale)
    normalised = [torch.from_numpy((im.astype(np.float32) - 127.5) / 63.75).permute(2, 0, 1)[None] for im in pair]
    out = full_resolution(module, *normalised)
    assert np.allclose(predictions[0].mask, torch.sigmoid(out["mask"])[0, 0].numpy(), atol=1e-5)


def test_a_refined_model_mirrors_at_full_resolution():
    """`mirror`: the refined outputs of the pair and of the pair flipped left to right (its patches chosen on the
    flipped coarse mask), averaged; the Predictor's refined path gives the same masks."""
    torch.manual_seed(0)
    module = tiny_module(image_size=64).eval()
    randomise_last_layer(module.model.refiner)
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    fg_bg = bg.copy()
    fg_bg[10:50, 20:45] = (250, 20, 20)
    pair = [torch.from_numpy((im.astype(np.float32) - 127.5) / 63.75).permute(2, 0, 1)[None] for im in (bg, fg_bg)]
    out = full_resolution(module, *pair, mirror=True)
    once, flipped = full_resolution(module, *pair), full_resolution(module, *(x.flip(-1) for x in pair))
    for key in ("mask", "depth"):
        assert out[key].shape == (1, 1, 60, 90)
        assert torch.allclose(out[key], (once[key] + flipped[key].flip(-1)) / 2, atol=1e-6)
    assert not torch.allclose(out["mask"], once["mask"], atol=1e-3)  # the untrained model is not symmetric
    prediction = Predictor(module, mirror=True)([bg], [fg_bg])[0]
    assert np.allclose(prediction.mask, torch.sigmoid(out["mask"])[0, 0].numpy(), atol=1e-5)


def test_predict_masks_are_the_masks_evaluate_scores_for_a_plain_model():
    """Logits upsampled, then the sigmoid (not probabilities upsampled), as full-size scoring does; both resize the
    pair as the data pipeline does (INTER_AREA), here by 1.5625, where torch's area mode would differ."""
    torch.manual_seed(0)
    module = tiny_module()
    module.model = tiny_base().eval()
    with torch.no_grad():  # logits of several units (at init they are within ±0.04, where the sigmoid is linear)
        module.model.mask_decoder.head.weight.mul_(300)
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (100, 100, 3)).astype(np.uint8)
    fg_bg = bg.copy()
    fg_bg[40:90, 30:70] = (250, 20, 20)
    prediction = Predictor(module)([bg], [fg_bg])[0]
    normalised = [
        torch.from_numpy((im.astype(np.float32) - 127.5) / 63.75).permute(2, 0, 1)[None] for im in (bg, fg_bg)
    ]
    out = full_resolution(module, *normalised)
    assert prediction.mask.shape == (100, 100)
    assert np.allclose(prediction.mask, torch.sigmoid(out["mask"])[0, 0].numpy(), atol=1e-5)
    assert np.allclose(prediction.depth_norm, out["depth"].clamp(0, 1)[0, 0].numpy(), atol=1e-5)


def test_full_resolution_of_a_plain_model_upsamples_its_outputs():
    torch.manual_seed(0)
    module = tiny_module()
    module.model = tiny_base().eval()
    bg, fg_bg = torch.randn(1, 3, 30, 50), torch.randn(1, 3, 30, 50)
    out = full_resolution(module, bg, fg_bg)
    pipeline = [  # the data pipeline's resize (albumentations' Resize with INTER_AREA), on the HWC arrays
        torch.from_numpy(
            A.Resize(64, 64, interpolation=cv2.INTER_AREA)(image=im[0].permute(1, 2, 0).numpy())["image"]
        ).permute(2, 0, 1)[None]
        for im in (bg, fg_bg)
    ]
    with torch.no_grad():
        small = module.model(*pipeline)
    for key in ("mask", "depth"):
        torch.testing.assert_close(out[key], upsample(small[key], (30, 50)), atol=1e-6, rtol=0)


def test_an_onnx_export_refines_the_same_patches_where_they_tie(tmp_path):
    """A confident coarse mask: every patch ties at uncertainty 0, so the choice of patches is only the order."""
    pytest.importorskip("onnxruntime")
    import onnxruntime

    torch.manual_seed(0)
    module = tiny_module(image_size=64)
    randomise_last_layer(module.model.refiner)
    with torch.no_grad():
        module.model.base.mask_decoder.head.bias.fill_(-30.0)  # far from 0.5 everywhere: p = 0
        module.model.refiner.net[-1].bias.fill_(40.0)  # a refined patch turns to p = 1
    ckpt = tmp_path / "sure.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    with warnings.catch_warnings():  # the exporter's own notices are not the user's concern (export.py)
        warnings.simplefilter("error")
        assert export(str(ckpt), "onnx", str(tmp_path / "sure.onnx")) < 1e-4
    bg, fg_bg = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in (1, 2))
    session = onnxruntime.InferenceSession(str(tmp_path / "sure.onnx"), providers=["CPUExecutionProvider"])
    mask, _ = (torch.from_numpy(a) for a in session.run(None, {"bg": bg.numpy(), "fg_bg": fg_bg.numpy()}))
    with torch.no_grad():
        ref = module.eval().model((bg - 0.5) / 0.25, (fg_bg - 0.5) / 0.25)
    refined = torch.sigmoid(ref["mask"]) > 0.5
    assert 0 < refined.float().mean() < 0.5  # some patches refined, not all
    torch.testing.assert_close(mask, torch.sigmoid(ref["mask"]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize(("features", "alpha"), [(0, False), (4, False), (0, True)])
def test_export_keeps_the_patch_selection(tmp_path, fmt, features, alpha):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    module = tiny_module(image_size=64, features=features, alpha=alpha)
    randomise_last_layer(module.model.refiner)
    if alpha:
        torch.nn.init.normal_(module.model.refiner.alpha.weight)
    ckpt = tmp_path / "refined.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    assert export(str(ckpt), fmt, str(tmp_path / "refined.out")) < 1e-4
    bg, fg_bg = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in (1, 2))
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "refined.out"), providers=["CPUExecutionProvider"])
        mask, depth = (torch.from_numpy(a) for a in session.run(None, {"bg": bg.numpy(), "fg_bg": fg_bg.numpy()}))
    else:
        mask, depth = torch.jit.load(str(tmp_path / "refined.out"))(bg, fg_bg)
    with torch.no_grad():  # the module itself on the pair normalised with the checkpoint's mean 0.5 and std 0.25
        ref = module.eval().model((bg - 0.5) / 0.25, (fg_bg - 0.5) / 0.25)
    torch.testing.assert_close(mask, torch.sigmoid(ref["mask"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(depth, ref["depth"], atol=1e-5, rtol=0)


def striped_batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised noise backgrounds with a 24-px block of 2-px stripes pasted in one colour; the stripes' mask."""
    generator = torch.Generator().manual_seed(0)
    bg = torch.randn(n, 3, size, size, generator=generator)
    mask = torch.zeros(n, 1, size, size)
    stripes = (torch.arange(24) % 4 < 2).float()
    for i in range(n):
        top, left = 8 + 8 * (i % 3), 8 + 8 * (i // 2)
        mask[i, 0, top : top + 24, left : left + 24] = stripes[None, :] if i % 2 else stripes[:, None]
    colour = torch.tensor([2.0, -1.5, 1.0]).view(1, 3, 1, 1).expand_as(bg)
    return bg, torch.where(mask.bool(), colour, bg), mask


def overfit_iou(net: RefinedNet, output: str, steps: int = 50) -> float:
    """Mask IoU of `net`'s `output` on the striped batch after `steps` Adam steps of BCE on that output."""
    bg, fg_bg, mask = striped_batch()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(net(bg, fg_bg)[output], mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(mask_metrics(net.eval()(bg, fg_bg)[output], mask)["iou"])


def test_the_refiner_recovers_detail_the_base_cannot_see():
    """2-px stripes average out at the base's 16 px: trained on its own output, the base alone scores ~0.3 IoU;
    trained on the refined output (a quarter of the patches refined at 64 px), base + refiner ~1."""
    torch.manual_seed(0)
    base = tiny_base()
    alone = overfit_iou(RefinedNet(copy.deepcopy(base), PatchRefiner(), downsample=4), "mask_coarse")
    with_refiner = overfit_iou(RefinedNet(copy.deepcopy(base), PatchRefiner(), downsample=4), "mask")
    assert with_refiner > 0.9 and with_refiner > alone + 0.3, (with_refiner, alone)


def test_a_detail_base_reads_the_full_size_difference_shrunk_with_the_images():
    seen = []

    class Record(torch.nn.Module):
        stride = 1
        fusion = SimpleNamespace(difference=True)

        def forward(self, bg, fg_bg, difference=None):
            seen.append((bg, fg_bg, difference))
            return {"mask": torch.zeros_like(bg[:, :1]), "depth": torch.zeros_like(bg[:, :1])}

    # a texture that moved: a 1-px checkerboard against its shift keeps every 4x4 mean, changes every pixel
    board = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    bg = board.float().expand(1, 3, 16, 16)
    fg_bg = 1 - bg
    for detail in (True, False):
        RefinedNet(Record(), PatchRefiner(), downsample=4, detail=detail)(bg, fg_bg)
    small_bg, small_fg_bg, difference = seen[0]
    assert torch.equal(small_bg, F.avg_pool2d(bg, 4)) and torch.equal(small_fg_bg, F.avg_pool2d(fg_bg, 4))
    assert torch.equal(difference, torch.ones(1, 3, 4, 4))  # |fg_bg − bg| = 1 everywhere, then averaged
    assert torch.equal((small_fg_bg - small_bg).abs(), torch.zeros(1, 3, 4, 4))  # what the shrunk pair shows
    assert seen[1][2] is None  # without detail the base computes its own difference, if it has one
    with pytest.raises(ValueError, match="detail=true needs a base that reads"):
        refined("resunet", PatchRefiner(), difference=False, detail=True)
    model = refined("resunet", PatchRefiner(), difference=True, detail=True).eval()
    assert model.forward_full(torch.randn(1, 3, 120, 88), torch.randn(1, 3, 120, 88), 256)["mask"].shape[-2:] == (
        120,
        88,
    )
