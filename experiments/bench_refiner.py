"""Full-resolution masks: CPU time per pair of resunet at a 64 px base, without and with the patch refiner.

    python -m experiments.bench_refiner [--sizes 640x480 1920x1080] [--base 64] [--fractions 0.05] [--runs 5]

Every row goes through `mdeas.inference.full_resolution` on a normalised float pair already in memory (no
decoding, no uint8 conversion): without the refiner, the pair is resized (area) to the base size, run, and the
outputs are upsampled bilinearly (what every preset does); with it (conf/model/refiner/patch.yaml, the same base
weights), `RefinedNet.forward_full` also refines the mask on 8×8 patches at the native size. The models are
untrained, so the refined patches are set by the share alone (threshold 0: exactly `fraction` of the patches,
the most a trained model refines at that setting); `--fractions` adds shares to the config's. Four more rows: the
default model's refiner (conf/model/resunet_detail.yaml: it also reads the base's hidden map and the coarse mask's
alpha maps), that refiner without the alpha maps (`model.refiner.alpha=false`), the default refiner followed by
the outline step of evaluate and predict (conf/outline/known_background.yaml), and that with the outputs averaged
with the mirrored pair's (the default of evaluate, compare and predict). Time is the median of `--runs`
after one warm-up, batch 1, the models taking turns run by run. The last line, `ratio: X.XX`, is the time with the
refiner at the config's share over the time without, at the largest size.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mdeas.inference import full_resolution
from mdeas.module import MaskDepthModule
from mdeas.outline import KnownBackgroundOutline, from_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def build(model: dict, image_size: int) -> MaskDepthModule:
    """An untrained module of `model` (a config) that trained at `image_size`, in eval mode."""
    return MaskDepthModule(
        model=model,
        loss=OmegaConf.load(CONF / "loss/bce_dice_ssim.yaml"),
        optim=OmegaConf.load(CONF / "optim/adam.yaml"),
        data={"image_size": image_size},
    ).eval()


Row = tuple[MaskDepthModule, KnownBackgroundOutline | None, bool]  # (module, outline step, mirror)


def ms_per_pair(rows: list[Row], width: int, height: int, runs: int) -> list[float]:
    """Median time (ms) of `full_resolution` per (module, outline step, mirror) on one random normalised pair of
    `width` × `height`; the rows take turns run by run, so that a change in the machine's load reaches them alike."""
    generator = torch.Generator().manual_seed(0)
    bg, fg_bg = (torch.randn(1, 3, height, width, generator=generator) for _ in range(2))
    times: list[list[float]] = [[] for _ in rows]
    with torch.inference_mode():
        for i in range(1 + runs):
            for (module, outline, mirror), record in zip(rows, times, strict=True):
                start = time.perf_counter()
                full_resolution(module, bg, fg_bg, outline, mirror)
                if i:
                    record.append(time.perf_counter() - start)
    return [statistics.median(record) * 1000 for record in times]


def size(text: str) -> tuple[int, int]:
    """'1920x1080' → (1920, 1080)."""
    width, height = text.lower().split("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=size, nargs="+", default=[(640, 480), (1920, 1080)], help="WxH")
    parser.add_argument("--base", type=int, default=64, help="base input size, px (default 64)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05], help="shares of patches refined besides "
                        "the config's (default 0.05)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preset = OmegaConf.to_container(OmegaConf.load(CONF / "model/resunet.yaml"))
    refiner = OmegaConf.to_container(OmegaConf.load(CONF / "model/refiner/patch.yaml"))
    plain = build(preset, args.base)
    rows: dict[str, Row] = {f"resunet at {args.base} px, upsampled": (plain, None, False)}
    for fraction in sorted({*args.fractions, refiner["fraction"]}):
        module = build({**preset, **refiner, "fraction": fraction, "threshold": 0.0}, args.base * refiner["downsample"])
        module.model.base.load_state_dict(plain.model.state_dict())
        rows[f"+ refiner, {fraction:.0%} of the patches"] = (module, None, False)
    default = OmegaConf.to_container(OmegaConf.load(CONF / "model/resunet_detail.yaml"))["model"]
    features = {"refiner": {**refiner["refiner"], **default["refiner"]}, "hidden": default["hidden"], "threshold": 0.0}
    module_size = args.base * refiner["downsample"]
    module = build({**preset, **refiner, **features}, module_size)
    module.model.base.load_state_dict(plain.model.state_dict())
    rows[f"+ default refiner (the base's hidden map, alpha maps), {refiner['fraction']:.0%}"] = (module, None, False)
    blind = build({**preset, **refiner, **features, "refiner": {**features["refiner"], "alpha": False}}, module_size)
    blind.model.base.load_state_dict(plain.model.state_dict())
    rows[f"+ default refiner without alpha maps (model.refiner.alpha=false), {refiner['fraction']:.0%}"] = (
        blind,
        None,
        False,
    )
    outline = from_config(OmegaConf.load(CONF / "outline/known_background.yaml"))
    rows[f"+ default refiner, {refiner['fraction']:.0%}, + outline step"] = (module, outline, False)
    rows[f"+ default refiner, {refiner['fraction']:.0%}, + outline step, mirror-averaged"] = (module, outline, True)
    times = {
        (name, s): ms
        for s in args.sizes
        for name, ms in zip(rows, ms_per_pair(list(rows.values()), *s, args.runs), strict=True)
    }
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; ms per pair (median of {args.runs})\n")
    print("| size | model | ms per pair | × without refiner |")
    print("|---|---|---:|---:|")
    for (name, (width, height)), ms in times.items():
        base_ms = times[next(iter(rows)), (width, height)]
        print(f"| {width}×{height} | {name} | {ms:.0f} | {ms / base_ms:.2f} |")
    largest = max(args.sizes, key=lambda s: s[0] * s[1])
    configured = f"+ refiner, {refiner['fraction']:.0%} of the patches"
    print(f"\nratio: {times[configured, largest] / times[next(iter(rows)), largest]:.2f}")


if __name__ == "__main__":
    main()
