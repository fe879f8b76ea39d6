"""The input normalisation: hand-computed values, its inverse, the uint8 tables, devices and tracing."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from mdeas.data.normalisation import IMAGENET_MEAN, IMAGENET_STD, Normalisation
from mdeas.data.stats import write_norm
from tests.conftest import CONF


def test_values_by_hand_and_inverse():
    norm = Normalisation((0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    rgb = torch.tensor([1.0, 0.5, 1.0]).view(3, 1, 1).expand(2, 3, 1, 4)
    out = norm(rgb)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 1, 4)
    assert out[0, :, 0, 0].tolist() == [1.0, 1.0, 0.5]  # (1 − 0.5) / 0.5, (0.5 − 0.25) / 0.25, (1 − 0) / 2
    assert torch.equal(norm.invert(out), rgb)
    assert norm.invert(torch.full((3, 1, 1), 10.0)).flatten().tolist() == [1.0, 1.0, 1.0]  # clamped to [0, 1]


def test_defaults_are_imagenet_and_not_saved_in_state_dicts():
    assert (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the published values
    norm = Normalisation()
    assert norm.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert norm.std.flatten().tolist() == pytest.approx(IMAGENET_STD)
    assert norm.state_dict() == {}


def test_uint8_tables_match_the_arithmetic():
    norm = Normalisation()
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = norm.from_uint8(image)
    expected = norm(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    assert out.dtype == torch.float32 and out.shape == (3, 5, 7)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert out[0, 0, 0] == pytest.approx((image[0, 0, 0] / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], abs=1e-6)


def test_uint8_tables_take_only_uint8_rgb_images():
    for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError, match=rf"^expected a uint8 RGB image \[H, W, 3\], got {bad.dtype} "):
            Normalisation().from_uint8(bad)


def test_follows_the_input_device_and_traces_without_copies():
    norm = Normalisation()
    on_meta = norm(torch.empty(1, 3, 2, 2, device="meta"))  # buffers copied to the input's device
    assert on_meta.device.type == "meta" and norm.mean.device.type == "cpu"
    graph = str(torch.jit.trace(norm, torch.rand(1, 3, 2, 2)).graph)
    assert 'GetAttr[name="mean"]' in graph and 'GetAttr[name="std"]' in graph  # buffers, moved with the graph
    assert "Device = prim::Constant" not in graph  # no copy to the tracing device baked in


def test_a_written_norm_config_is_used_and_a_missing_one_is_an_error(tmp_path):
    """`+data/norm=<name>` merges the file `mdeas.data.stats` writes into `data`; a name not found fails (the group
    exists: conf/data/norm/imagenet.yaml), where Hydra would otherwise add a stray key and keep ImageNet's values."""
    (tmp_path / "data" / "norm").mkdir(parents=True)
    write_norm(
        {"samples": 3, "inputs": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}}, tmp_path / "data/norm/m.yaml", "x"
    )
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["+data/norm=m", f"hydra.searchpath=[file://{tmp_path}]"])
        assert (list(cfg.data.mean), list(cfg.data.std)) == ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
        assert list(compose("train", overrides=["+data/norm=imagenet"]).data.mean) == list(IMAGENET_MEAN)
        with pytest.raises(MissingConfigException, match="Could not find 'data/norm/m'"):
            compose("train", overrides=["+data/norm=m"])
