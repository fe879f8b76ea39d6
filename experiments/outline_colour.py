"""How much of the outline step's remaining error is its estimate of the object's colour F.

    python -m experiments.outline_colour CKPT                                    # data/real_check.zip (quality 50)
    python -m experiments.outline_colour CKPT --zip data/real_check_q.zip --jpeg-quality 30 95

The outline step (`mdeas.outline`) takes F, near each outline pixel, as the mean colour of the confident foreground
within 6 px. On the selection part of a check set made by `experiments/real_check_set.py` (rebuilt as
`experiments.mask_ceiling` rebuilds it, so each pixel's true object colour is known), this prints the pooled IoU
at native size of the checkpoint's masks: as the model gives them, after the step, after the step given the true F
(the stored bg as B, as the step reads it), and given the true F and the clean background before JPEG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from experiments.mask_ceiling import composites
from experiments.score_selection import check_part
from mdeas.native_eval import full_size_logits
from mdeas.outline import KnownBackgroundOutline


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB float [H, W, 3] on the 0-255 scale → float32 [1, 3, H, W] in [0, 1]."""
    return torch.from_numpy(rgb / 255).permute(2, 0, 1)[None].float()


COLUMNS = ("model", "+ outline step", "+ step, true F", "+ step, true F and clean B")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--zip", type=Path, default=Path("data/real_check.zip"))
    parser.add_argument("--jpeg-quality", type=int, nargs="+", default=[50])
    args = parser.parse_args(argv)
    quality = args.jpeg_quality[0] if len(args.jpeg_quality) == 1 else tuple(args.jpeg_quality)
    module, data = check_part(args.ckpt, str(args.zip), "val")
    outputs = {batch["id"][0]: (batch, out) for batch, (out,) in full_size_logits([module], data)}
    step = KnownBackgroundOutline()
    counts = np.zeros((len(COLUMNS), 2))
    for sample_id, _, _, clean_bg, colour, mask in composites(args.zip, quality):
        if sample_id not in outputs:
            continue
        batch, model = outputs[sample_id]
        fg_bg, bg = batch["fg_bg"], batch["bg"]  # as stored (JPEG), in [0, 1]
        masks = (
            model,
            step(model, bg, fg_bg),
            step(model, bg, fg_bg, colour=as_tensor(colour)),
            step(model, as_tensor(clean_bg), fg_bg, colour=as_tensor(colour)),
        )
        truth = torch.from_numpy(mask)
        for row, out in zip(counts, masks, strict=True):
            hard = out[0, 0] > 0
            row += [(hard & truth).sum().item(), (hard | truth).sum().item()]
    print(f"{args.zip}, selection part ({len(outputs)} composites): pooled IoU at native size of {args.ckpt}")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---:|" * len(COLUMNS))
    print("| " + " | ".join(f"{i / u:.4f}" for i, u in counts) + " |")


if __name__ == "__main__":
    main()
