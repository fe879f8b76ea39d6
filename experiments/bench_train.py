"""Training step throughput: a model with its loss group (densenet_dilated + ssim_mse, seed 002's; resunet +
bce_dice_ssim; resunet_detail, the default, which trains at 256 px), fp32 against channels-last, bf16 and compile,
at 64 and 224 px; and end to end (the real loader from a zip) against the model step alone.

    python -m experiments.bench_train                                    # CPU: batch 4, a few steps, under a minute
    python -m experiments.bench_train --device cuda --sizes 64 128 224 --batch 64 --steps 50 --workers 8   # a GPU
    python -m experiments.bench_train --device cuda --models densenet_dilated resunet --sizes 64 128 224 \
        --configs fp32 "bf16 + channels_last" "bf16 + channels_last + compile" --compile-sizes 224 \
        --augment-on cpu gpu --batch 64 --workers 8 --json bench_train.json

The model step is what `MaskDepthModule` trains: `set_memory_format(channels_last, compile)`, forward, the loss
group, backward and an Adam step (conf/optim/adam.yaml); bf16 runs forward and loss under `torch.autocast` (what
Lightning's `precision=bf16-mixed` does). Inputs are random tensors already on the device, so the row measures the
model alone. Throughput is samples/s over `--steps` steps after `--warmup` ones (more warm-up when compiled: the
first steps compile; `--compile-sizes` limits the compiled rows, each of which compiles afresh). The end-to-end
row trains the fastest configuration (or `--e2e-config`) at each of `--e2e-sizes` from the DataModule's train
loader as training uses it (generated zip stored at `--stored` px, resized cache built before timing, default
augmentation done by the loader or, with `--augment-on gpu`, by the DataModule's transfer hook on the device,
`--workers` workers, batches moved to the device) and is reported as a fraction of that configuration's model-step
throughput. `--json` writes every row to a file as soon as it is measured. The last line, `ratio: X.XX`, is the
first model's fastest configuration over fp32 at the largest size (224 px by default).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from experiments.bench_data import CACHE, dataset, mdeas_datamodule
from mdeas.module import MaskDepthModule

CONF = Path(__file__).resolve().parents[1] / "conf"
CONFIGS = {  # name → (channels_last, bf16, compile)
    "fp32": (False, False, False),
    "channels_last": (True, False, False),
    "bf16": (False, True, False),
    "bf16 + channels_last": (True, True, False),
    "bf16 + channels_last + compile": (True, True, True),
}
# model → its loss group (resunet_detail, the default, adds its coarse-mask term; it trains at 256 px)
MODELS = {"densenet_dilated": "ssim_mse", "resunet": "bce_dice_ssim", "resunet_detail": "bce_dice_ssim"}
BASELINE = "fp32"


def build(model: str, config: str, device: torch.device) -> tuple[MaskDepthModule, torch.optim.Optimizer]:
    """A fresh module (`model` and its loss group, composed as `python -m mdeas.train model=… loss=…` would) in
    `config`'s memory format, and its Adam optimiser."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", f"loss={MODELS[model]}", "optim=adam"])
    torch.manual_seed(0)
    module = MaskDepthModule(model=cfg.model, loss=cfg.loss, optim=cfg.optim).to(device)
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


def _as_is(batch: dict, dataloader_idx: int) -> dict:
    return batch


def timed(
    module, optimizer, batches: Iterable[dict], bf16: bool, warmup: int, steps: int, prepare: Callable = _as_is
) -> float:
    """Samples/s of `steps` training steps on `batches` (moved to the module's device, then through `prepare`, a
    DataModule's `on_after_batch_transfer`) after `warmup` steps; the timed window holds each timed batch's fetch."""
    device = next(module.parameters()).device
    count, start = 0, time.perf_counter()
    for i, batch in enumerate(itertools.islice(batches, warmup + steps)):
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        batch = prepare(batch, 0)
        train_step(module, optimizer, batch, bf16)
        count += batch["bg"].shape[0] if i >= warmup else 0
        if i == warmup - 1:  # the clock starts before the first timed batch is fetched
            _sync(device)
            start = time.perf_counter()
    _sync(device)
    return count / (time.perf_counter() - start)


def model_step(model: str, config: str, size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Samples/s of `model`'s step alone in `config` at `size` (random inputs resident on the device)."""
    module, optimizer = build(model, config, device)
    batch = random_batch(args.batch, size, device)
    warmup = args.warmup + (args.compile_warmup if CONFIGS[config][2] else 0)
    return timed(module, optimizer, itertools.repeat(batch), CONFIGS[config][1], warmup, args.steps)


def end_to_end(
    model: str, config: str, size: int, augment_on: str, args: argparse.Namespace, device: torch.device
) -> float:
    """Samples/s training `model` in `config` at `size` on batches from the DataModule's train loader, augmented
    on `augment_on` (cpu: in the loader; gpu: by the DataModule's transfer hook on `device`)."""
    module, optimizer = build(model, config, device)
    path = dataset("canonical", args.samples, args.stored, args.workers)
    dm = mdeas_datamodule(path, size, args, args.workers, CACHE / "resized", augment_on=augment_on)  # cache built
    batches = itertools.chain.from_iterable(itertools.repeat(dm.train_dataloader()))  # pass after pass
    warmup = args.warmup + (args.compile_warmup if CONFIGS[config][2] else 0)
    return timed(module, optimizer, batches, CONFIGS[config][1], warmup, args.e2e_steps, dm.on_after_batch_transfer)


def fastest(rates: dict[tuple[str, int, str], float], model: str, size: int) -> str:
    """The configuration of `model` with the most samples/s at `size` in `rates` ((model, size, config) → rate)."""
    return max((c for m, s, c in rates if (m, s) == (model, size)), key=lambda c: rates[model, size, c])


def save(record: dict, path: Path | None) -> None:
    """Write `record` as JSON to `path` (nothing without one)."""
    if path is not None:
        path.write_text(json.dumps(record, indent=2))


def measure(args: argparse.Namespace, device: torch.device, configs: list[str], e2e_sizes: list[int]) -> dict:
    """Every model-step row, then the end-to-end rows, model by model; each saved to `args.json` as soon as measured
    (a run stopped early keeps what it measured). The record also names the device and gives the ratio."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    record = {"device": name, "batch": args.batch, "steps": args.steps, "model_step": [], "end_to_end": []}
    rates = {}  # (model, size, config) → samples/s of the model step
    for model in args.models:
        for size, config in itertools.product(args.sizes, configs):
            if CONFIGS[config][2] and size not in (args.compile_sizes or args.sizes):
                continue
            rate = rates[model, size, config] = model_step(model, config, size, args, device)
            gain = rate / rates[model, size, BASELINE]
            record["model_step"].append(
                {"model": model, "size": size, "config": config, "samples_per_s": rate, "x_fp32": gain}
            )
            save(record, args.json)
        for size, augment_on in itertools.product(e2e_sizes, args.augment_on):
            config = args.e2e_config or fastest(rates, model, size)
            full = end_to_end(model, config, size, augment_on, args, device)
            record["end_to_end"].append(
                {
                    "model": model,
                    "size": size,
                    "config": config,
                    "augment_on": augment_on,
                    "model_step": rates[model, size, config],
                    "end_to_end": full,
                }
            )
            save(record, args.json)
    first, headline = args.models[0], max(args.sizes)
    record["fastest"] = top = fastest(rates, first, headline)
    record["ratio"] = rates[first, headline, top] / rates[first, headline, BASELINE]
    save(record, args.json)
    return record


def print_tables(record: dict, args: argparse.Namespace) -> None:
    """The record as two markdown tables (model step; end to end), then the fastest configuration and the ratio."""
    models = ", ".join(f"{m} + {MODELS[m]}" for m in args.models)
    print(f"{models}, Adam; {record['device']}; batch {args.batch}, {args.steps} timed steps\n")
    print("| model | size | configuration | samples/s | ms/step | × fp32 |")
    print("|---|---:|---|---:|---:|---:|")
    for row in record["model_step"]:
        ms = 1000 * args.batch / row["samples_per_s"]
        print(f"| {row['model']} | {row['size']} | {row['config']} | {row['samples_per_s']:.1f} | {ms:.0f} | "
              f"{row['x_fp32']:.2f} |")  # fmt: skip
    print(
        "\n| model | size | configuration | model step samples/s | end to end samples/s | end to end / model step "
        "| augment on |"
    )
    print("|---|---:|---|---:|---:|---:|---|")
    for row in record["end_to_end"]:
        share = 100 * row["end_to_end"] / row["model_step"]
        print(f"| {row['model']} | {row['size']} | {row['config']} | {row['model_step']:.1f} | "
              f"{row['end_to_end']:.1f} | {share:.0f} % | {row['augment_on']} |")  # fmt: skip
    print(f"\nfastest at {max(args.sizes)}: {record['fastest']}")
    print(f"ratio: {record['ratio']:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["densenet_dilated"], choices=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="e.g. 64 128 224 on a GPU")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), help=f"default: all ({BASELINE} always)")
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4; e.g. 64 on a GPU)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (default 5; e.g. 50 on a GPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--compile", action="store_true", help="add the compiled row (default: only on CUDA)")
    parser.add_argument("--compile-sizes", type=int, nargs="+", help="sizes of the compiled rows (default: all)")
    parser.add_argument("--compile-warmup", type=int, default=3, help="extra warm-up steps when compiled")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: torch's default)")
    parser.add_argument(
        "--e2e-sizes", type=int, nargs="*", help="end-to-end rows (default: all on CUDA, the first; none: no value)"
    )
    parser.add_argument("--e2e-config", choices=list(CONFIGS), help="end-to-end rows (default: the fastest)")
    parser.add_argument("--e2e-steps", type=int, default=20, help="timed steps of the end-to-end row (default 20)")
    parser.add_argument("--augment-on", nargs="+", default=["cpu"], choices=["cpu", "gpu"], help="end-to-end rows")
    parser.add_argument("--workers", type=int, default=2, help="loader workers of the end-to-end row (default 2)")
    parser.add_argument("--samples", type=int, default=1000, help="generated dataset size (default 1000)")
    parser.add_argument("--stored", type=int, default=224, help="generated image size (default 224)")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    args = parser.parse_args(argv)
    if not set(args.e2e_sizes or []) <= set(args.sizes):
        parser.error("--e2e-sizes must be among --sizes")
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    compiles = args.compile or device.type == "cuda"
    configs = [
        c for c in CONFIGS if (c == BASELINE or c in (args.configs or CONFIGS)) and (compiles or not CONFIGS[c][2])
    ]
    if args.e2e_config and args.e2e_config not in configs:
        parser.error(f"--e2e-config must be among the configurations measured: {configs}")
    e2e_sizes = args.e2e_sizes
    if e2e_sizes is None:
        e2e_sizes = args.sizes if device.type == "cuda" else args.sizes[:1]
    print_tables(measure(args, device, configs, e2e_sizes), args)


if __name__ == "__main__":
    main()
