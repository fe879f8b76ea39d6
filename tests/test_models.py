import pytest
import torch

from mdeas.models import create_model, list_models
from mdeas.models.blocks import DenseBlock, upsample
from mdeas.summary import summarise


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_densenet_dilated_has_the_seed_parameter_count():
    assert n_params(create_model("densenet_dilated")) == 1_521_026


@pytest.mark.parametrize("size", [64, 128, 224])
def test_output_contract(size):
    torch.manual_seed(0)
    model = create_model("densenet_dilated").eval()
    bg, fg_bg = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = model(bg, fg_bg)
    assert set(out) == {"mask", "depth"}
    for key in ("mask", "depth"):
        assert out[key].shape == (2, 1, size, size)
        assert out[key].dtype == torch.float32
        assert torch.isfinite(out[key]).all()
    # logits, not probabilities: an untrained head produces values outside [0, 1]
    assert (out["mask"] < 0).any() or (out["mask"] > 1).any()


def test_size_not_divisible_by_stride_is_a_clear_error():
    model = create_model("densenet_dilated")
    with pytest.raises(ValueError, match="not divisible by the model stride 16"):
        model(torch.zeros(1, 3, 72, 72), torch.zeros(1, 3, 72, 72))


def test_backpropagates_to_every_parameter():
    model = create_model("densenet_dilated")
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    (out["mask"].mean() + out["depth"].mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_dense_block_links_are_additive():
    # hand-check: with every separable conv's output at zero, the block reduces to its 1×1 projection of x
    block = DenseBlock(4, 8).eval()
    for conv in block.convs:
        torch.nn.init.zeros_(conv[3].weight)
        torch.nn.init.zeros_(conv[3].bias)
    x = torch.randn(1, 4, 6, 6)
    assert torch.allclose(block(x), block.proj(x))


def test_upsample_kinds():
    x = torch.randn(1, 8, 4, 4)
    layer, ch = upsample("pixel_shuffle", 8)
    assert ch == 2 and layer(x).shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match="unknown upsampling 'cubic'"):
        upsample("cubic", 8)


def test_registry_lists_and_rejects_unknown_names():
    assert "densenet_dilated" in list_models()
    with pytest.raises(KeyError, match="unknown model 'nope'; known models: .*densenet_dilated"):
        create_model("nope")


def test_summary_ends_with_total_params():
    text = summarise(create_model("densenet_dilated"), 64)
    assert text.splitlines()[-1] == "total params: 1,521,026"
    assert "fusion.fg_bg_stem.0.0" in text and "[1, 32, 64, 64]" in text
    assert "forward GFLOPs per image" in text
