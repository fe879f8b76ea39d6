"""CUDA: mixed precision, channels-last, compile, predict, export, DDP on one GPU and augmentation on the device
(marked `gpu`, each skipped without CUDA; `python -m experiments.gpu_check` runs them on a GPU machine). Also the
multi-GPU recipe under Hydra multirun, with two gloo processes on the CPU (`slow`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdeas.data.datamodule import MaskDepthDataModule
from mdeas.export import export
from mdeas.inference import Predictor, load_module
from mdeas.module import MaskDepthModule
from mdeas.train import train
from tests.conftest import compose_train, write_canonical_zip

CONF = Path(__file__).resolve().parents[1] / "conf"
ON_GPU = ("trainer.accelerator=gpu", "callbacks.image_grid=null")


def on_gpu(test):
    """Mark `test` as a CUDA test, skipped without a CUDA device."""
    needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    return pytest.mark.gpu(needs_cuda(test))


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory) -> Path:
    return write_canonical_zip(tmp_path_factory.mktemp("data") / "tiny.zip", num_samples=24, size=32, fg_per_bg=2)


@pytest.fixture
def no_tf32(monkeypatch):
    """Full fp32 matmuls and convolutions, so that fp32 comparisons are tight."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def module_and_batch(size: int = 64) -> tuple[MaskDepthModule, dict]:
    """densenet_dilated + ssim_mse on CUDA, and a random batch of 4 in the batch contract."""
    torch.manual_seed(0)
    module = MaskDepthModule(
        model=OmegaConf.load(CONF / "model/densenet_dilated.yaml"),
        loss=OmegaConf.load(CONF / "loss/ssim_mse.yaml"),
        optim=OmegaConf.load(CONF / "optim/adam.yaml"),
    ).cuda()
    shape = (4, 1, size, size)
    batch = {
        "bg": torch.randn(4, 3, size, size, device="cuda"),
        "fg_bg": torch.randn(4, 3, size, size, device="cuda"),
        "mask": (torch.rand(shape, device="cuda") > 0.7).float(),
        "depth": torch.rand(shape, device="cuda"),
        "valid": torch.ones(shape, dtype=torch.bool, device="cuda"),
    }
    return module, batch


def loss_and_gradient(module: MaskDepthModule, batch: dict, dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
    """The loss and the flattened gradient of one step, under autocast to `dtype` (None: fp32); float16 scales the
    loss as Lightning's 16-mixed does, and the gradient is unscaled."""
    module.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        total, _ = module.loss(module(batch["bg"], batch["fg_bg"]), batch)
    scale = 1024.0 if dtype == torch.float16 else 1.0
    (total * scale).backward()
    return float(total), torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None]) / scale


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.usefixtures("no_tf32")
@on_gpu
def test_a_mixed_precision_step_is_finite_and_close_to_fp32(dtype):
    module, batch = module_and_batch()
    loss32, grad32 = loss_and_gradient(module, batch, None)
    loss, grad = loss_and_gradient(module, batch, dtype)
    assert np.isfinite(loss) and torch.isfinite(grad).all()
    assert loss == pytest.approx(loss32, rel=0.05)
    assert torch.nn.functional.cosine_similarity(grad, grad32, dim=0) > 0.9


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@on_gpu
def test_lightning_trains_in_mixed_precision_with_augmentation_on_the_gpu(tmp_path, tiny_zip, precision):
    overrides = (f"trainer.precision={precision}", "data.augment_on=gpu", "data.crop=16", "+trainer.fast_dev_run=true")
    results = train(compose_train(tmp_path, tiny_zip, *ON_GPU, *overrides))
    assert {"val/mask/iou", "val/score"} <= set(results["val"]), results["val"]  # validation ran
    assert all(np.isfinite(v) for v in results["val"].values())


@pytest.mark.usefixtures("no_tf32")
@on_gpu
def test_channels_last_gives_the_same_outputs_on_cuda():
    module, batch = module_and_batch()
    module.eval()
    with torch.no_grad():
        before = module(batch["bg"], batch["fg_bg"])
        module.set_memory_format(channels_last=True)
        after = module(batch["bg"], batch["fg_bg"])
    assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before)


@pytest.mark.usefixtures("no_tf32")
@on_gpu
def test_compiled_model_matches_eager_and_trains(tmp_path, tiny_zip):
    module, batch = module_and_batch()
    module.eval()
    with torch.no_grad():
        eager = module(batch["bg"], batch["fg_bg"])
        module.set_memory_format(compile=True)
        compiled = module(batch["bg"], batch["fg_bg"])
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-3) for k in eager)
    overrides = ("compile=true", "channels_last=true", "trainer.precision=bf16-mixed", "+trainer.fast_dev_run=true")
    results = train(compose_train(tmp_path, tiny_zip, *ON_GPU, *overrides))
    assert {"val/mask/iou", "val/score"} <= set(results["val"]), results["val"]  # validation ran
    assert all(np.isfinite(v) for v in results["val"].values())


@pytest.fixture(scope="module")
def cuda_checkpoint(tmp_path_factory, tiny_zip) -> Path:
    """best.ckpt of one epoch trained on CUDA."""
    out = tmp_path_factory.mktemp("cuda_run")
    return Path(train(compose_train(out, tiny_zip, *ON_GPU, "trainer.max_epochs=1"))["best_checkpoint"])


@pytest.mark.usefixtures("no_tf32")
@on_gpu
def test_predict_on_cuda_agrees_with_the_cpu(cuda_checkpoint):
    rng = np.random.default_rng(0)
    bgs = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    fg_bgs = [b.copy() for b in bgs]
    for f in fg_bgs:
        f[10:25, 20:40] = (250, 20, 20)
    on_cuda = Predictor(load_module(cuda_checkpoint), "cuda")(bgs, fg_bgs)
    on_cpu = Predictor(load_module(cuda_checkpoint), "cpu")(bgs, fg_bgs)
    for a, b in zip(on_cuda, on_cpu, strict=True):
        assert a.mask.shape == (40, 56) and np.isfinite(a.mask).all()
        assert np.abs(a.mask - b.mask).max() < 1e-3 and np.abs(a.depth_norm - b.depth_norm).max() < 1e-3


@on_gpu
def test_a_cuda_trained_checkpoint_exports(tmp_path, cuda_checkpoint):
    assert export(str(cuda_checkpoint), "torchscript", str(tmp_path / "model.pt")) < 1e-4
    diff = export(str(cuda_checkpoint), "onnx", str(tmp_path / "model.onnx"))  # None without onnxruntime
    assert (tmp_path / "model.onnx").stat().st_size > 0 and (diff is None or diff < 1e-4)


@on_gpu
def test_ddp_trainer_runs_on_one_gpu(tmp_path, tiny_zip):
    cmd = [sys.executable, "-m", "mdeas.train", "trainer=ddp", "trainer.devices=1", "trainer.sync_batchnorm=true",
           *ON_GPU, f"data.path={tiny_zip}", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
           "model=densenet_dilated", "trainer.max_epochs=1", "hydra.run.dir=run"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert all(np.isfinite(v) for v in metrics["test"].values())


@on_gpu
def test_augmentation_on_cuda_equals_augmentation_on_the_cpu(tiny_zip):
    affine = A.Affine(translate_percent=(-0.1, 0.1), scale=(0.8, 1.2), rotate=(-20, 20), border_mode=0, fill=0,
                      fill_mask=0, mask_interpolation=0, p=0.7)  # fmt: skip
    augment = [A.HorizontalFlip(p=0.5), affine, A.RandomBrightnessContrast(p=0.5)]
    dm = MaskDepthDataModule(path=str(tiny_zip), image_size=32, batch_size=8, num_workers=0, augment=augment,
                             augment_on="gpu")  # fmt: skip
    dm.setup()
    raw = next(iter(dm.train_dataloader()))
    on_cuda = dm.on_after_batch_transfer({k: v.cuda() if torch.is_tensor(v) else v for k, v in raw.items()}, 0)
    on_cpu = dm.on_after_batch_transfer(raw, 0)
    for key in ("bg", "fg_bg", "mask", "depth", "valid"):  # a sample point on a rounding edge may move a pixel
        assert on_cuda[key].is_cuda, key
        assert torch.isclose(on_cuda[key].cpu().float(), on_cpu[key].float(), atol=1e-3).float().mean() > 0.99, key


@pytest.mark.slow
def test_hydra_multirun_with_ddp_runs_every_job_on_both_processes(tmp_path):
    """The multi-GPU recipe (conf/trainer/ddp.yaml): a progressive chain under -m, two gloo processes. Lightning
    re-launches the command line for the second process, which runs the same sweep in step with the first; both
    must find the same sweep directory, hence hydra.sweep.dir given explicitly (the default is time-stamped)."""
    data = write_canonical_zip(tmp_path / "d.zip", num_samples=40, size=32, fg_per_bg=2)
    stages = "progressive.stages=[{image_size:32,max_epochs:1,batch_size:2},{image_size:48,max_epochs:1,batch_size:2}]"
    cmd = [sys.executable, "-m", "mdeas.train", "-m", "experiment=progressive", "stage=0,1", stages, "trainer=ddp",
           "trainer.accelerator=cpu", "trainer.devices=2", f"data.path={data}", "data.num_workers=0",
           "model=densenet_dilated", "+trainer.limit_train_batches=3", "callbacks.image_grid=null",
           "hydra.sweep.dir=chain"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in ("stage0", "stage1"):
        assert (tmp_path / "chain" / stage / "metrics.json").is_file()
        assert (tmp_path / "chain" / stage / "train_ddp_process_1.log").is_file()  # rank 1 ran this job here
    assert not (tmp_path / "multirun").exists()  # no process fell back to a time-stamped sweep directory
