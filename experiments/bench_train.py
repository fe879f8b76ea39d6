"""Training step throughput: densenet_dilated with the ssim_mse loss group, fp32 against channels-last, bf16 and
compile, at 64 and 224 px; and end to end (the real loader from a zip) against the model step alone.

    python -m experiments.bench_train                                    # CPU: batch 4, a few steps, under a minute
    python -m experiments.bench_train --device cuda --sizes 64 128 224 --batch 64 --steps 50 --workers 8   # a GPU

The model step is what `MaskDepthModule` trains: `set_memory_format(channels_last, compile)`, forward, the loss
group of conf/loss/ssim_mse.yaml, backward and an Adam step (conf/optim/adam.yaml); bf16 runs forward and loss
under `torch.autocast` (what Lightning's `precision=bf16-mixed` does). Inputs are random tensors already on the
device, so the row measures the model alone. Throughput is samples/s over `--steps` steps after `--warmup` ones
(more warm-up when compiled: the first steps compile). The end-to-end row trains the fastest configuration at
each of `--e2e-sizes` from the DataModule's train loader as training uses it (generated zip stored at `--stored`
px, resized cache built before timing, default augmentation, `--workers` workers, batches moved to the device)
and is reported as a fraction of that configuration's model-step throughput. The last line,
`ratio: X.XX`, is the fastest configuration over fp32 at 224 px.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.bench_data import CACHE, dataset, mdeas_loader
from mdeas.module import MaskDepthModule

CONF = Path(__file__).resolve().parents[1] / "conf"
CONFIGS = {  # name → (channels_last, bf16, compile)
    "fp32": (False, False, False),
    "channels_last": (True, False, False),
    "bf16": (False, True, False),
    "bf16 + channels_last": (True, True, False),
    "bf16 + channels_last + compile": (True, True, True),
}
BASELINE, HEADLINE_SIZE = "fp32", 224


def build(config: str, device: torch.device) -> tuple[MaskDepthModule, torch.optim.Optimizer]:
    """A fresh module (densenet_dilated, ssim_mse) in `config`'s memory format, and its Adam optimiser."""
    torch.manual_seed(0)
    module = MaskDepthModule(
        model=OmegaConf.load(CONF / "model/densenet_dilated.yaml"),
        loss=OmegaConf.load(CONF / "loss/ssim_mse.yaml"),
        optim=OmegaConf.load(CONF / "optim/adam.yaml"),
    ).to(device)
    channels_last, _, compiled = CONFIGS[config]
    module.set_memory_format(channels_last, compiled)
    return module, instantiate(module.hparams.optim)(params=module.parameters())


def random_batch(batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch in the contract's shapes and dtypes, generated on the device."""
    generator = torch.Generator(device).manual_seed(0)
    shape = (batch, 1, size, size)
    return {
        "bg": torch.randn(batch, 3, size, size, device=device, generator=generator),
        "fg_bg": torch.randn(batch, 3, size, size, device=device, generator=generator),
        "mask": (torch.rand(shape, device=device, generator=generator) > 0.8).float(),
        "depth": torch.rand(shape, device=device, generator=generator),
        "valid": torch.ones(shape, dtype=torch.bool, device=device),
    }


def train_step(module: MaskDepthModule, optimizer: torch.optim.Optimizer, batch: dict, bf16: bool) -> None:
    """Forward, loss group, backward, optimiser step."""
    device = batch["bg"].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        outputs = module(batch["bg"], batch["fg_bg"])
        total, _ = module.loss(outputs, batch)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(module, optimizer, batches: Iterable[dict], bf16: bool, warmup: int, steps: int) -> float:
    """Samples/s of `steps` training steps on `batches` (moved to the module's device) after `warmup` steps."""
    device = next(module.parameters()).device
    count, start = 0, 0.0
    for i, batch in enumerate(itertools.islice(batches, warmup + steps)):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        train_step(module, optimizer, batch, bf16)
        count += batch["bg"].shape[0] if i >= warmup else 0
    _sync(device)
    return count / (time.perf_counter() - start)


def model_step(config: str, size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Samples/s of the model step alone in `config` at `size` (random inputs resident on the device)."""
    module, optimizer = build(config, device)
    batch = random_batch(args.batch, size, device)
    warmup = args.warmup + (args.compile_warmup if CONFIGS[config][2] else 0)
    return timed(module, optimizer, itertools.repeat(batch), CONFIGS[config][1], warmup, args.steps)


def end_to_end(config: str, size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Samples/s training `config` at `size` on batches from the DataModule's train loader."""
    module, optimizer = build(config, device)
    path = dataset("canonical", args.samples, args.stored, args.workers)
    loader = mdeas_loader(path, size, args, args.workers, cache_dir=CACHE / "resized")  # built before timing
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # pass after pass (persistent workers)
    warmup = args.warmup + (args.compile_warmup if CONFIGS[config][2] else 0)
    return timed(module, optimizer, batches, CONFIGS[config][1], warmup, args.e2e_steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, HEADLINE_SIZE], help="e.g. 64 128 224 on a GPU")
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4; e.g. 64 on a GPU)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (default 5; e.g. 50 on a GPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--compile", action="store_true", help="add the compiled row (default: only on CUDA)")
    parser.add_argument("--compile-warmup", type=int, default=3, help="extra warm-up steps when compiled")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: torch's default)")
    parser.add_argument("--e2e-sizes", type=int, nargs="+", help="end-to-end rows (default: all on CUDA, the first)")
    parser.add_argument("--e2e-steps", type=int, default=20, help="timed steps of the end-to-end row (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers of the end-to-end row (default 2)")
    parser.add_argument("--samples", type=int, default=1000, help="generated dataset size (default 1000)")
    parser.add_argument("--stored", type=int, default=224, help="generated image size (default 224)")
    args = parser.parse_args(argv)
    if HEADLINE_SIZE not in args.sizes:
        parser.error(f"--sizes must include {HEADLINE_SIZE} (the ratio line)")
    if not set(args.e2e_sizes or []) <= set(args.sizes):
        parser.error("--e2e-sizes must be among --sizes")
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    configs = [c for c in CONFIGS if args.compile or device.type == "cuda" or not CONFIGS[c][2]]
    rates = {(c, s): model_step(c, s, args, device) for s in args.sizes for c in configs}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"densenet_dilated + ssim_mse, Adam; {name}; batch {args.batch}, {args.steps} timed steps\n")
    print("| size | configuration | samples/s | ms/step | × fp32 |")
    print("|---:|---|---:|---:|---:|")
    for (config, size), rate in rates.items():
        ms = 1000 * args.batch / rate
        print(f"| {size} | {config} | {rate:.1f} | {ms:.0f} | {rate / rates[BASELINE, size]:.2f} |")
    print("\n| size | configuration | model step samples/s | end to end samples/s | end to end / model step |")
    print("|---:|---|---:|---:|---:|")
    for size in args.e2e_sizes or (args.sizes if device.type == "cuda" else args.sizes[:1]):
        best = max(configs, key=lambda c: rates[c, size])
        step, full = rates[best, size], end_to_end(best, size, args, device)
        print(f"| {size} | {best} | {step:.1f} | {full:.1f} | {100 * full / step:.0f} % |")
    top = max(configs, key=lambda c: rates[c, HEADLINE_SIZE])
    print(f"\nfastest at {HEADLINE_SIZE}: {top}")
    print(f"ratio: {rates[top, HEADLINE_SIZE] / rates[BASELINE, HEADLINE_SIZE]:.2f}")


if __name__ == "__main__":
    main()
