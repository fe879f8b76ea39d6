from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mdeas.models import create_model, list_models
from mdeas.models.blocks import DenseBlock, upsampling_layer
from mdeas.summary import summarise

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_size_not_divisible_by_stride_is_a_clear_error():
    model = create_model("densenet_dilated")
    with pytest.raises(ValueError, match="not divisible by the model stride 16"):
        model(torch.zeros(1, 3, 72, 72), torch.zeros(1, 3, 72, 72))


def test_dense_block_links_are_additive():
    # hand-check: with every separable conv's output at zero, the block reduces to its 1×1 projection of x
    block = DenseBlock(4, 8).eval()
    for conv in block.convs:
        torch.nn.init.zeros_(conv[3].weight)
        torch.nn.init.zeros_(conv[3].bias)
    x = torch.randn(1, 4, 6, 6)
    assert torch.allclose(block(x), block.proj(x))
    # with each conv the identity, dense links sum x1 = x, x2 = x + x1 = 2x, x3 = x + x1 + x2 = 4x: proj(8x)
    # (convs that each read x alone would give proj(4x))
    block.convs = torch.nn.ModuleList(torch.nn.Identity() for _ in range(3))
    assert torch.allclose(block(x), block.proj(8 * x)) and not torch.allclose(block(x), block.proj(4 * x))


def test_upsample_kinds():
    x = torch.randn(1, 8, 4, 4)
    layer, ch = upsampling_layer("pixel_shuffle", 8)
    assert ch == 2 and layer(x).shape == (1, 2, 8, 8)
    shuffled = upsampling_layer("pixel_shuffle", 4)[0](torch.arange(4.0).view(1, 4, 1, 1))
    assert shuffled.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]  # channel c → pixel (c // 2, c % 2)
    layer, ch = upsampling_layer("nearest", 8)
    assert ch == 8 and torch.equal(layer(x), x.repeat_interleave(2, -1).repeat_interleave(2, -2))
    layer, ch = upsampling_layer("bilinear", 8)
    assert ch == 8 and torch.allclose(layer(torch.ones(1, 8, 3, 3)), torch.ones(1, 8, 6, 6))
    layer, ch = upsampling_layer("transpose", 8, out_channels=3)
    assert ch == 3 and layer(x).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="pixel_shuffle needs channels divisible by 4, got 6"):
        upsampling_layer("pixel_shuffle", 6)
    with pytest.raises(ValueError, match="unknown upsampling 'cubic'"):
        upsampling_layer("cubic", 8)


def test_registry_lists_and_rejects_unknown_names():
    assert "densenet_dilated" in list_models()
    with pytest.raises(KeyError, match="unknown model 'nope'; known models: .*densenet_dilated") as caught:
        create_model("nope")
    assert str(caught.value).startswith("unknown model")  # no quotes around the message, as a KeyError would add


@pytest.mark.parametrize(
    ("name", "overrides", "key", "shown"),
    [
        ("resunet", {"widths": [0, 8, 8, 8]}, "model.widths", "[0, 8, 8, 8]"),
        ("resunet", {"bottom": 2.5}, "model.bottom", "2.5"),
        ("unet_shared", {"mask_width": True}, "model.mask_width", "True"),
        ("densenet_dilated", {"encoder_channels": []}, "model.encoder_channels", "[]"),
        ("composed", {"encoder_kwargs": {"widths": [8, -8]}}, "model.encoder_kwargs.widths", "[8, -8]"),
    ],
)
def test_a_channel_count_under_one_is_named_when_the_model_is_built(name, overrides, key, shown):
    """PyTorch builds a layer of 0 channels and fails only in its first forward pass, without naming the option."""
    with pytest.raises(ValueError) as refused:
        create_model(name, **overrides)
    assert str(refused.value) == f"{key} must be a number of channels >= 1 or a list of them, got {shown}"


def test_a_refiner_width_under_one_is_named():
    from mdeas.models.refiner import PatchRefiner

    with pytest.raises(ValueError, match=r"^model\.refiner\.widths must be a number of channels >= 1 .*got \[0, 32\]$"):
        PatchRefiner(widths=[0, 32])
    assert PatchRefiner(widths=[8, 4]).net[-1].in_channels == 4


def test_model_switches_and_refiner_counts_of_the_wrong_kind_are_named():
    """`model.freeze_base=no` froze the base and `difference=maybe` added the channels: text is true to Python."""
    from mdeas.models.refiner import PatchRefiner, refined

    with pytest.raises(ValueError, match=r"^model\.difference must be true or false, got 'maybe'$"):
        create_model("resunet", difference="maybe")
    for key, value in (("freeze_base", "no"), ("detail", 1)):
        with pytest.raises(ValueError, match=rf"^model\.{key} must be true or false, got {value!r}$"):
            refined("resunet", PatchRefiner(), **{key: value}, difference=True)
    for key, value, least in (("patch", "abc", 1), ("features", -1, 0), ("margin", 1.5, 0)):
        with pytest.raises(ValueError, match=rf"^model\.refiner\.{key} must be a whole number >= {least}, got "):
            PatchRefiner(**{key: value})
    with pytest.raises(ValueError, match=r"^model\.refiner\.alpha must be true or false, got 'no'$"):
        PatchRefiner(alpha="no")


def test_summary_names_an_image_size_that_does_not_fit_in_memory(monkeypatch):
    from mdeas import summary

    def out_of_memory(model, image_size):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 1 bytes")

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("summary", overrides=["model=densenet_dilated", "data.image_size=40000"])
    monkeypatch.setattr(summary, "summarise", out_of_memory)
    with pytest.raises(SystemExit) as caught:
        summary.main.__wrapped__(cfg)
    assert caught.value.code == "error: data.image_size=40000: the forward pass does not fit in memory"
    monkeypatch.setattr(summary, "summarise", lambda model, size: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # any other fault surfaces as it is
        summary.main.__wrapped__(cfg)


def test_summary_takes_a_presets_own_input_size_and_224_otherwise():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        sizes = [compose("summary", overrides=o).data.image_size for o in ([], ["model=resunet_detail"])]
    assert sizes == [224, 256]  # resunet_detail needs a multiple of 64


def test_summary_ends_with_total_params():
    text = summarise(create_model("densenet_dilated"), 64)
    assert text.splitlines()[-1] == "total params: 1,521,026"
    assert "fusion.fg_bg_stem.0.0" in text and "[1, 32, 64, 64]" in text
    assert "forward GFLOPs per image" in text


# --- parts: registries, blocks, encoders, fusions, decoders ---------------------------------------------------------

from functools import partial  # noqa: E402

from mdeas.models.blocks import (  # noqa: E402
    ChannelMean,
    DilatedContext,
    Residual,
    basic_block,
    conv_stem,
    make_divisible,
    preact_block,
    resnet_stem,
)
from mdeas.models.decoders.unet import unet_stages  # noqa: E402
from mdeas.models.fusion import DualStem, EarlyConcat, SiameseDiff  # noqa: E402
from mdeas.models.necks import SharedNeck  # noqa: E402
from mdeas.models.registry import DECODERS, ENCODERS, FUSIONS, NECKS  # noqa: E402
from mdeas.registry import Registry  # noqa: E402


def test_part_registries_list_their_names_and_reject_unknown_ones():
    assert ENCODERS.names() == ["dense", "mobile", "plain", "preact", "residual", "resnet"]
    assert FUSIONS.names() == ["dual_stem", "early_concat", "siamese_diff"]
    assert NECKS.names() == ["dilated", "shared"]
    assert DECODERS.names() == ["light", "unet"]
    with pytest.raises(KeyError, match="unknown encoder 'vit'; known encoders: dense, mobile, plain"):
        ENCODERS.get("vit")


def test_a_name_registers_once():
    registry = Registry("thing", "mdeas.models.blocks")
    registry.register("a")(int)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        registry.register("a")(float)


@pytest.mark.parametrize("name", ["dense", "mobile", "plain", "preact", "residual", "resnet"])
def test_encoders_declare_the_channels_and_strides_they_return(name):
    encoder = ENCODERS.get(name)(6).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 6, 64, 64))
    assert [f.shape[1] for f in features] == encoder.channels
    assert [64 // f.shape[-1] for f in features] == encoder.strides


@pytest.mark.parametrize(
    ("stem", "channels", "stride"), [(conv_stem, 32, 2), (partial(resnet_stem, channels=16), 16, 1)]
)
def test_dual_stem_features_follow_the_stem(stem, channels, stride):
    fusion = DualStem(partial(ENCODERS.get("resnet"), widths=(24, 40), depths=(1, 1), strides=(2, 2)), stem).eval()
    assert fusion.channels == [channels, 2 * channels, 24, 40]
    assert fusion.strides == [stride, stride, 2 * stride, 4 * stride]
    with torch.no_grad():
        features = fusion(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [
        (c, 32 // s, 32 // s) for c, s in zip(fusion.channels, fusion.strides, strict=True)
    ]


def test_siamese_diff_is_the_absolute_difference_then_the_fg_bg_feature():
    fusion = SiameseDiff(partial(ENCODERS.get("resnet"), widths=(8, 16), depths=(1, 1), strides=(1, 2))).eval()
    assert fusion.channels == [16, 32] and fusion.strides == [1, 2]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        same = fusion(x, x)
        own = fusion.encoder(x)
        swapped, straight = fusion(x.flip(0), x), fusion(x, x.flip(0))
    for feature, expected in zip(same, own, strict=True):
        c = expected.shape[1]
        assert torch.equal(feature[:, :c], torch.zeros_like(expected))  # |f(x) − f(x)| is exactly zero
        assert torch.allclose(feature[:, c:], expected)
    # the difference is symmetric in the inputs, the second half is always f(fg_bg)
    for a, b in zip(swapped, straight, strict=True):
        c = a.shape[1] // 2
        assert torch.allclose(a[:, :c], b[:, :c]) and not torch.allclose(a[:, c:], b[:, c:])


def test_early_concat_with_difference_feeds_the_encoder_fg_bg_bg_and_their_absolute_difference():
    seen = []

    class Record(torch.nn.Module):
        channels, strides = [9], [1]

        def __init__(self, in_channels: int) -> None:
            super().__init__()
            assert in_channels == 9

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            seen.append(x)
            return [x]

    bg, fg_bg = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    EarlyConcat(Record, difference=True)(bg, fg_bg)
    assert torch.equal(seen[0], torch.cat([fg_bg, bg, (fg_bg - bg).abs()], dim=1))
    plain, with_difference = create_model("resunet"), create_model("resunet", difference=True)
    extra = sum(p.numel() for p in with_difference.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 3 * 32 * 9 + 3 * 32  # three more input channels of the first 3×3 conv and of the 1×1 shortcut
    assert with_difference(bg.repeat(1, 1, 2, 2), fg_bg.repeat(1, 1, 2, 2))["mask"].shape == (2, 1, 16, 16)


SMALL_RESNET = {"widths": (16, 32, 64), "depths": (1, 1, 1), "strides": (1, 2, 2)}


@pytest.mark.parametrize(
    ("fusion", "encoder", "encoder_kwargs"),
    [
        ("early_concat", "resnet", SMALL_RESNET),
        ("early_concat", "mobile", {}),
        ("dual_stem", "dense", {"channels": (32, 64)}),
        ("dual_stem", "resnet", SMALL_RESNET),
        ("siamese_diff", "resnet", SMALL_RESNET),
        ("siamese_diff", "mobile", {}),
        ("siamese_diff", "preact", {"stem_channels": 16, "widths": (32, 64)}),
    ],
)
def test_each_fusion_works_with_several_encoders(fusion, encoder, encoder_kwargs):
    model = create_model("composed", encoder=encoder, fusion=fusion, decoder="light", encoder_kwargs=encoder_kwargs)
    out = model(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"mask": (2, 1, 32, 32), "depth": (2, 1, 32, 32)}
    (out["mask"].pow(2).mean() + out["depth"].pow(2).mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_dilated_context_branches_see_their_own_dilation():
    """All weights 1, biases 0, BatchNorm at its initial statistics: an impulse reaches the 3×3 grid of offsets
    {-d, 0, d} around it in branch d, and nothing else."""
    context = DilatedContext(1, 1, (1, 9)).eval()
    with torch.no_grad():
        for module in context.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
    x = torch.zeros(1, 1, 32, 40)
    x[0, 0, 16, 25] = 1.0
    out = context(x)
    assert out.shape == (1, 2, 32, 40)
    for branch, d in enumerate((1, 9)):
        reached = {tuple(p) for p in (out[0, branch] > 0).nonzero().tolist()}
        assert reached == {(16 + i * d, 25 + j * d) for i in (-1, 0, 1) for j in (-1, 0, 1)}, d
    pair = torch.randn(1, 4, 2, 2)
    assert all(part is pair for part in SharedNeck(4)(pair))


def test_composed_model_with_the_dilated_neck_sizes_each_decoder_from_its_branch():
    model = create_model("composed", encoder="dense", fusion="dual_stem", neck="dilated", decoder="unet")
    assert model.neck.mask_channels == 128 and model.neck.depth_channels == 256
    assert model.mask_decoder.blocks[0][0][0].in_channels == 128 + 256  # upsampled mask branch + /8 skip
    assert model.depth_decoder.blocks[0][0][0].in_channels == 256 + 256
    assert model.stride == 16


def test_unet_stages_walk_up_to_stride_one_skipping_the_last_feature_at_each_stride():
    # DualStem(dense): 0 fg_bg stem /2, 1 stems /2, 2 /4, 3 /8, 4 /16
    assert unet_stages(256, [2, 2, 4, 8, 16]) == [(128, 3), (64, 2), (32, 1), (16, None)]
    assert unet_stages(64, [1, 2, 4], widths=(48, 8)) == [(48, 1), (8, 0)]
    with pytest.raises(ValueError, match="stride 8 needs 3 decoder widths, got 1: \\[4\\]"):
        unet_stages(64, [2, 8], widths=(4,))
    with pytest.raises(ValueError, match="must be a power of 2, got 12"):
        unet_stages(64, [4, 12])


def test_make_divisible_rounds_to_multiples_of_eight_without_losing_a_tenth():
    assert [make_divisible(v) for v in (64, 72, 200, 100, 10, 3)] == [64, 72, 200, 104, 16, 8]


def test_residual_blocks_reduce_to_their_shortcut_when_the_body_is_zero():
    x = torch.randn(1, 4, 6, 6)
    block = Residual(torch.nn.Conv2d(4, 4, 1), torch.nn.Identity(), torch.nn.ReLU())
    torch.nn.init.zeros_(block.body.weight)
    torch.nn.init.zeros_(block.body.bias)
    assert torch.equal(block(x), x.clamp(min=0))
    pre = preact_block(4, 4)
    torch.nn.init.zeros_(pre.body[1][2].weight)
    assert torch.allclose(pre(x), pre.shortcut(x))  # the shortcut is a 1×1 projection even at equal width
    assert isinstance(pre.shortcut, torch.nn.Conv2d)
    assert isinstance(basic_block(4, 4).shortcut, torch.nn.Identity)
    assert basic_block(4, 8, stride=2)(x).shape == (1, 8, 3, 3)


def test_channel_mean_and_transpose_upsampling():
    x = torch.arange(12.0).reshape(1, 3, 2, 2)
    assert torch.equal(ChannelMean()(x), torch.tensor([[[[4.0, 5.0], [6.0, 7.0]]]]))
    layer, ch = upsampling_layer("transpose", 8, out_channels=3, bias=False)
    assert ch == 3 and layer(torch.randn(1, 8, 4, 4)).shape == (1, 3, 8, 8) and layer.bias is None
