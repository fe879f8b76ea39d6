"""Where a checkpoint's masks go wrong on a part of the real-photo check sets, at native size: the error split by
kind, and the IoU of each object.

    python -m experiments.mask_errors outputs/<date>/<time>/checkpoints/best.ckpt      # the selection parts
    python -m experiments.mask_errors CKPT --no-outline --zips data/real_check.zip     # the model's own masks

Kinds, as shares of the union of prediction and truth pooled over the part (they add up to 1 − IoU): `outline`,
wrong pixels within 1 px of the true outline (the truth's 3×3 dilation minus its 3×3 erosion); `misses`, object
pixels called background farther inside; `false`, background pixels called object farther outside. Per object:
the pooled IoU over the part's composites of each foreground object (`mdeas.data.splits.object_of`). Masks as
`experiments.score_selection` scores them (mirror-averaged unless --no-mirror, after the default outline step unless
--no-outline).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

from experiments.score_selection import check_part, check_set_args
from mdeas.data.splits import object_of
from mdeas.metrics.morphology import outline_band
from mdeas.native_eval import full_size_logits
from mdeas.outline import KnownBackgroundOutline

KINDS = ("outline", "misses", "false")


def error_counts(pred: np.ndarray, truth: np.ndarray) -> Counter:
    """Pixel counts of one image: "intersection", "union" and each of KINDS (module docstring), from boolean
    masks [H, W]."""
    near = outline_band(torch.from_numpy(truth)[None, None].float(), 1)[0, 0].numpy()
    wrong = pred ^ truth
    return Counter(
        intersection=int((pred & truth).sum()),
        union=int((pred | truth).sum()),
        outline=int((wrong & near).sum()),
        misses=int((wrong & truth & ~near).sum()),
        false=int((wrong & ~truth & ~near).sum()),
    )


def part_errors(
    ckpt_path: str,
    zip_path: str,
    part: str = "val",
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> tuple[Counter, dict[str, Counter]]:
    """(counts pooled over the part, counts per object) of `error_counts` for the checkpoint's masks (averaged with
    the mirrored pair's when `mirror`)."""
    module, data = check_part(ckpt_path, zip_path, part)
    pooled, per_object = Counter(), defaultdict(Counter)
    samples = {sample.id: sample for sample in data.samples}
    for batch, (logits,) in full_size_logits([module], data, outline=outline, mirror=mirror):
        counts = error_counts(logits[0, 0].numpy() > 0, batch["mask"][0, 0].numpy() > 0.5)
        pooled += counts
        per_object[object_of(samples[batch["id"][0]])] += counts
    return pooled, dict(per_object)


def main() -> None:
    args, outline = check_set_args(__doc__.split("\n\n")[0])
    for zip_path in args.zips:
        pooled, per_object = part_errors(args.ckpt, zip_path, args.part, outline, args.mirror)
        shares = ", ".join(f"{kind} {pooled[kind] / pooled['union']:.4f}" for kind in KINDS)
        print(f"{zip_path} {args.part}: IoU {pooled['intersection'] / pooled['union']:.4f}; errors as shares of the "
              f"union: {shares}")  # fmt: skip
        for name, counts in sorted(per_object.items()):
            print(f"  object {name}: IoU {counts['intersection'] / counts['union']:.4f}")


if __name__ == "__main__":
    main()
