"""A learned object colour for the outline step: does it beat the step's own estimate on real photos?

    python -m experiments.edge_colour CKPT --out /tmp/edge_colour --score       # pastes, training, scoring
    python -m experiments.edge_colour CKPT --out /tmp/edge_colour --samples 200 --epochs 1   # a quick look

The outline step (`mdeas.outline`) takes the object's colour F at an outline pixel as the mean colour of the
confident foreground within 6 px (F̂); given each pixel's true F the same step gains about +0.005 on the selection
parts ("What limits the outline step" in RESULTS.md). Here a small dense net (`ColourHead`) learns a correction of
F̂, with the checkpoint frozen:

1. pastes: generated objects (the default set's options, `mdeas.synth.generate.make_foreground`) pasted the seeds'
   way, in the stored images' colours: fg_bg = α·F + (1 − α)·bg with F the object under the background's camera,
   bg and fg_bg then saved as JPEG at independent qualities (30–95), so F and α are known at every pixel; with the
   checkpoint's mask logits on each (one pass at the pair's size); cached in --out;
2. training: the head reads bg, fg_bg, F̂, where F̂ is known and the mask probability, and returns F̂ + a correction;
   on crops around the outline band of the predicted mask where F̂ is known, the loss is the BCE of the step's
   output with the head's F against the true mask (α − 0.5, scaled by 10, as the logit where the head's F stands
   out from bg; the model's logit elsewhere) plus the L1 distance to the true F where the object is; after each
   epoch, the pooled IoU of the step on fresh pastes (the validation seed) with F̂, with the head's F and with the
   true F, where variants of the head are chosen;
3. scoring (--score): the selection parts of the real-photo check sets, mirrored, with the step reading F̂ and then
   the head's F, pooled IoU at native size.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from experiments.score_selection import CHECK_SETS, OUTLINE, check_part
from mdeas.data.decode import decode_rgb
from mdeas.inference import full_resolution, load_module, normalisation
from mdeas.metrics.morphology import outline_band
from mdeas.native_eval import MaskScores, full_size_logits
from mdeas.outline import colour_alpha, from_config, inside_colour
from mdeas.synth.compose import paste as blend
from mdeas.synth.generate import Options, SampleSpec, background_quality, make_background, make_foreground, plan
from mdeas.synth.scene import in_front
from mdeas.synth.writer import encode_jpeg, jpeg_quality_for

STEP = from_config(OmegaConf.to_container(OmegaConf.load(OUTLINE)))
_OBJECT_NOISE = 41  # the object's own sensor-noise stream (a real cut-out was photographed apart from the bg)


def paste(opts: Options, spec: SampleSpec) -> dict[str, np.ndarray]:
    """One seed-way paste of a generated object with its truths: bg, fg_bg uint8 [S, S, 3] as stored (JPEG);
    colour: the object's colour F under the background's camera, float [S, S, 3] on the 0–255 scale (meaningful
    where alpha > 0); alpha: its opacity, float [S, S] in [0, 1]."""
    background = make_background(
        opts.seed,
        spec.bg_index,
        opts.image_size,
        opts.max_depth_mm / 1000.0,
        opts.num_backgrounds,
        opts.camera,
        opts.photo_skins,
    )
    fg, _ = make_foreground(background, spec, opts, np.random.default_rng(spec.key))
    alpha = np.where(in_front(fg, background.depth), fg.alpha, 0.0)
    linear = np.where(alpha[..., None] > 0, fg.rgb, background.render.clean)
    noise = np.random.default_rng([*spec.key, _OBJECT_NOISE])
    colour = background.sensor.apply(linear, noise).astype(np.float64)
    fg_bg, _ = blend(background.rgb, colour, alpha, 0, 0)
    fg_bg = encode_jpeg(fg_bg, jpeg_quality_for(opts.jpeg_quality, spec.key))
    bg = encode_jpeg(background.rgb, background_quality(opts, spec.bg_index))
    bg, fg_bg = decode_rgb(bg, "bg", spec.id), decode_rgb(fg_bg, "fg_bg", spec.id)
    return {"bg": bg, "fg_bg": fg_bg, "colour": colour, "alpha": alpha}


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] on the 0–255 scale → float32 [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb, np.float32) / 255).permute(2, 0, 1)


def make_pastes(ckpt: str, count: int, seed: int) -> dict[str, torch.Tensor]:
    """`count` pastes (`paste`) at the checkpoint's training size, drawn by `seed` with the default set's options,
    with its mask logits (mirrored): float16 tensors, images [N, 3, S, S] in [0, 1], alpha and logits [N, 1, S, S]."""
    module = load_module(ckpt).eval()
    norm = normalisation(module)
    opts = Options(
        num_samples=count,
        image_size=module.hparams.data["image_size"],
        seed=seed,
        jpeg_quality=(30, 95),
        paste_fraction=1.0,
        camouflage=0.3,
        fg_per_bg=10,
    )
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("bg", "fg_bg", "colour", "alpha", "logits")}
    for spec in plan(opts):
        one = paste(opts, spec)
        bg, fg_bg = to_chw(one["bg"]), to_chw(one["fg_bg"])
        with torch.no_grad():
            logits = full_resolution(module, norm(bg[None]), norm(fg_bg[None]), mirror=True)["mask"][0]
        rows["bg"].append(bg.half())
        rows["fg_bg"].append(fg_bg.half())
        rows["colour"].append(to_chw(one["colour"]).half())
        rows["alpha"].append(torch.from_numpy(one["alpha"]).float()[None].half())
        rows["logits"].append(logits.half())
    return {k: torch.stack(v) for k, v in rows.items()}


class ColourHead(nn.Module):
    """bg, fg_bg, the step's estimate F̂ [B, 3, H, W] in [0, 1], where F̂ is known (0/1) [B, 1, H, W] and mask logits
    [B, 1, H, W] → F [B, 3, H, W]: F̂ plus, where it is known, a correction from 3×3 convs of `width` channels at
    `dilations` (a receptive field of 1 + 2·sum(dilations) px); the last conv starts at zero."""

    def __init__(self, width: int = 32, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, d in enumerate(dilations):
            layers += [nn.Conv2d(11 if i == 0 else width, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers, nn.Conv2d(width, 3, 1))
        self.reach = sum(dilations)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self, bg: torch.Tensor, fg_bg: torch.Tensor, estimate: torch.Tensor, known: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        x = torch.cat([bg, fg_bg, estimate, torch.sigmoid(logits), known], 1) - 0.5
        return estimate + known * self.net(x)


def estimates(logits: torch.Tensor, fg_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's F̂ [B, 3, H, W] and where it is known, float 0/1 [B, 1, H, W] (`inside_colour` at STEP's settings)."""
    estimate, count = inside_colour(logits, fg_bg, STEP.band, STEP.radius, STEP.confident)
    return estimate, (count > 0).float()


def head_colour(head: ColourHead, logits: torch.Tensor, bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
    """The head's F [B, 3, H, W] on whole images, or bg where F̂ is unknown (so the step does not decide there)."""
    estimate, known = estimates(logits, fg_bg)
    return torch.where(known > 0, head(bg, fg_bg, estimate, known, logits), bg)


def with_estimates(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`data` with F̂ and where it is known ("estimate", "known", from the whole images), and "band": the outline band
    of the predicted mask where F̂ is known, the pixels where the step may decide."""
    parts: dict[str, list[torch.Tensor]] = {"estimate": [], "known": [], "band": []}
    for i in range(0, len(data["bg"]), 16):
        fg_bg, logits = data["fg_bg"][i : i + 16].float(), data["logits"][i : i + 16].float()
        estimate, known = estimates(logits, fg_bg)
        parts["band"].append((outline_band((logits > 0).float(), STEP.band) & (known > 0)).half())
        parts["estimate"].append(estimate.half())
        parts["known"].append(known.half())
    return {**data, **{k: torch.cat(v) for k, v in parts.items()}}


def crops(data: dict[str, torch.Tensor], centres: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Square crops of `size` px of every map [N, C, S, S] in `data` around `centres` (sample, row, column) [M, 3],
    shifted to lie inside the image, as float32 [M, C, size, size]."""
    side = next(iter(data.values())).shape[-1]
    if size > side:
        raise ValueError(f"crops of {size} px do not fit images of {side} px")
    top = (centres[:, 1] - size // 2).clamp(0, side - size)
    left = (centres[:, 2] - size // 2).clamp(0, side - size)
    offset = torch.arange(size)
    rows = (top[:, None] + offset)[:, None, :, None]
    cols = (left[:, None] + offset)[:, None, None, :]
    index = centres[:, 0][:, None, None, None]
    out = {}
    for key, value in data.items():
        channels = torch.arange(value.shape[1])[None, :, None, None]
        out[key] = value[index, channels, rows, cols].float()
    return out


def loss_terms(head: ColourHead, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE of the step's output with the head's F against the true mask, L1 to the true F where alpha > 0), on the
    band pixels at least the head's reach + 1 px inside the crop (farther in, its zero padding is not seen). The
    step's output is 10·(α − 0.5) where the head's F stands out from bg (α unclamped, so a confident error still
    has a gradient) and the model's logit elsewhere."""
    bg, fg_bg, logits = batch["bg"], batch["fg_bg"], batch["logits"]
    colour = head(bg, fg_bg, batch["estimate"], batch["known"], logits)
    alpha, contrast2, _ = colour_alpha(logits, bg, fg_bg, STEP.band, STEP.radius, STEP.confident, colour)
    decided = contrast2 >= STEP.min_contrast**2
    output = torch.where(decided, 10 * (alpha - 0.5), logits)
    on = batch["band"] > 0
    margin = head.reach + 1
    on[..., :margin, :] = on[..., -margin:, :] = False
    on[..., :margin] = on[..., -margin:] = False
    truth = (batch["alpha"] > 0.5).float()
    bce = nn.functional.binary_cross_entropy_with_logits(output, truth, reduction="none")
    l1 = (colour - batch["colour"]).abs().sum(1, keepdim=True)
    return bce[on].mean(), l1[on & (batch["alpha"] > 0)].mean()


def generated_scores(head: ColourHead, val: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    """Pooled IoU on generated pastes `val` (whole images) of the step with F̂, with the head's F, with the true F."""
    head.eval()
    scores = [MaskScores(from_logits=True) for _ in range(3)]
    with torch.no_grad():
        for i in range(0, len(val["bg"]), 8):
            bg, fg_bg, logits, alpha, true = (
                val[k][i : i + 8].float() for k in ("bg", "fg_bg", "logits", "alpha", "colour")
            )
            colours = (None, head_colour(head, logits, bg, fg_bg), torch.where(alpha > 0, true, bg))
            for score, colour in zip(scores, colours, strict=True):
                score.update(STEP(logits, bg, fg_bg, colour=colour), (alpha > 0.5).float())
    head.train()
    own, learned, true = (score.compute()["mask/iou"] for score in scores)
    return own, learned, true


def train(
    head: ColourHead, data: dict[str, torch.Tensor], val: dict[str, torch.Tensor], args: argparse.Namespace
) -> None:
    """Adam from `args.lr` on a cosine schedule, `args.batch` crops of `args.crop` px a step, each centred on a
    pixel drawn uniformly from the band pixels of all pastes; the generated validation scores after each epoch."""
    centres = data["band"][:, 0].nonzero()
    steps = args.epochs * args.steps
    optimiser = torch.optim.Adam(head.parameters(), args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    start = time.time()
    for step in range(1, steps + 1):
        batch = crops(data, centres[torch.randint(len(centres), (args.batch,))], args.crop)
        bce, l1 = loss_terms(head, batch)
        optimiser.zero_grad()
        (args.bce * bce + l1).backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0:
            print(
                f"step {step}/{steps}: bce {bce.item():.4f} l1 {l1.item():.4f} ({time.time() - start:.0f} s)",
                flush=True,
            )
        if step % args.steps == 0:
            own, learned, true = generated_scores(head, val)
            epoch = step // args.steps
            print(f"epoch {epoch}: generated val IoU, step {own:.4f} head {learned:.4f} true F {true:.4f}", flush=True)


def score(ckpt: str, head: ColourHead) -> None:
    """Pooled IoU on each selection part, mirrored: the step with F̂ and with the head's F."""
    head.eval()
    for zip_path in CHECK_SETS:
        module, data = check_part(ckpt, zip_path, "val")
        scores = [MaskScores(from_logits=True) for _ in range(2)]
        with torch.no_grad():
            for batch, (logits,) in full_size_logits([module], data, mirror=True):
                bg, fg_bg = batch["bg"], batch["fg_bg"]
                scores[0].update(STEP(logits, bg, fg_bg), batch["mask"])
                colour = head_colour(head, logits, bg, fg_bg)
                scores[1].update(STEP(logits, bg, fg_bg, colour=colour), batch["mask"])
        own, learned = (s.compute()["mask/iou"] for s in scores)
        print(f"{zip_path}: the step's F {own:.4f}, the head's F {learned:.4f} ({learned - own:+.4f})", flush=True)


def pastes(ckpt: str, out: Path, count: int, seed: int) -> dict[str, torch.Tensor]:
    """`make_pastes`, cached in `out` under the checkpoint's path and time, with `with_estimates`."""
    path = Path(ckpt).resolve()
    key = hashlib.sha1(f"{path}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:10]
    cache = out / f"pastes_{key}_{count}_{seed}.pt"
    if not cache.exists():
        start = time.time()
        torch.save(make_pastes(ckpt, count, seed), cache)
        print(f"{count} pastes in {time.time() - start:.0f} s", flush=True)
    return with_estimates(torch.load(cache))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--val-samples", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300, help="steps an epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bce", type=float, default=1.0, help="weight of the BCE term (the L1 term's is 1)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--score", action="store_true", help="score the selection parts of the real-photo sets too")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = pastes(args.ckpt, args.out, args.samples, args.seed)
    val = pastes(args.ckpt, args.out, args.val_samples, args.seed + 1)
    torch.manual_seed(args.seed)
    head = ColourHead(args.width, tuple(args.dilations))
    train(head, data, val, args)
    name = f"head_w{args.width}_d{'-'.join(map(str, args.dilations))}_e{args.epochs}x{args.steps}.pt"
    torch.save(head.state_dict(), args.out / name)
    if args.score:
        score(args.ckpt, head)


if __name__ == "__main__":
    main()
