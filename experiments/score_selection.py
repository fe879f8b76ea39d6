"""A checkpoint's masks on the selection parts of the real-photo check sets, at native size.

    python -m experiments.score_selection outputs/<date>/<time>/checkpoints/best.ckpt
    python -m experiments.score_selection CKPT --zips data/real_check.zip --part test   # the report part instead
    python -m experiments.score_selection CKPT --no-outline    # the model's masks without the outline step
    python -m experiments.score_selection CKPT --no-mirror     # one pass, not averaged with the mirrored pair's

The selection part is the val split of `data.split_by=both data.split=[0,0.5,0.5] data.seed=0`, where recipes,
thresholds and inference options are chosen; the report part (the test split, what `python -m mdeas.evaluate`
scores with the same overrides) is kept for reporting. Prints, per zip, the pooled IoU and per-image IoU of the
model's masks (averaged with the mirrored pair's unless --no-mirror) after the default outline step
(conf/outline/known_background.yaml), as evaluate scores them by default (the metrics of `mdeas.native_eval`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from mdeas.data.dataset import MaskDepthDataset
from mdeas.evaluate import data_config
from mdeas.inference import load_module, stored_data_config
from mdeas.module import MaskDepthModule
from mdeas.native_eval import model_mask_scores
from mdeas.outline import KnownBackgroundOutline, from_config

CHECK_SETS = ("data/real_check.zip", "data/real_check_q.zip")
OUTLINE = Path(__file__).parents[1] / "conf" / "outline" / "known_background.yaml"
PARTS = {"split_by": "both", "split": [0.0, 0.5, 0.5], "seed": 0}


def check_part(
    ckpt_path: str, zip_path: str, part: str = "val", parts: dict | None = None
) -> tuple[MaskDepthModule, MaskDepthDataset]:
    """The checkpoint's module (eval mode) and `part` (val: selection, test: report) of the check set `zip_path`
    split by `parts` (data.* values; default PARTS), read with the checkpoint's data settings."""
    module = load_module(ckpt_path).eval()
    stored = stored_data_config(module, ckpt_path)
    overrides = {"path": zip_path, "cache_resized": False, **(PARTS if parts is None else parts)}  # read at full size
    datamodule = instantiate(data_config(stored, overrides), _convert_="all")
    datamodule.setup("test")
    return module, datamodule.datasets[part]


def score_part(
    ckpt_path: str,
    zip_path: str,
    part: str = "val",
    parts: dict | None = None,
    outline: KnownBackgroundOutline | None = None,
    mirror: bool = False,
) -> dict[str, float]:
    """{"samples", "mask/iou", "mask/iou_per_image", ...} of the checkpoint on `part` of the check set `zip_path`
    (`check_part`), masks at each composite's stored size, averaged with the mirrored pair's when `mirror`, after
    `outline` when given."""
    module, data = check_part(ckpt_path, zip_path, part, parts)
    return {"samples": len(data), **model_mask_scores([module], data, outline=outline, mirror=mirror)[0].compute()}


def check_set_args(description: str) -> tuple[argparse.Namespace, KnownBackgroundOutline | None]:
    """The command line of a script over the check sets' parts (ckpt, --zips, --part, --no-outline, --no-mirror),
    and the outline step it asks for (the default one, or None with --no-outline)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("ckpt")
    parser.add_argument("--zips", nargs="+", default=list(CHECK_SETS))
    parser.add_argument("--part", choices=("val", "test"), default="val")
    parser.add_argument("--no-outline", action="store_true", help="the model's masks without the outline step")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false", help="one pass, not mirror-averaged")
    args = parser.parse_args()
    return args, from_config(None if args.no_outline else OmegaConf.load(OUTLINE))


def main() -> None:
    args, outline = check_set_args(__doc__.split("\n\n")[0])
    for zip_path in args.zips:
        s = score_part(args.ckpt, zip_path, args.part, outline=outline, mirror=args.mirror)
        print(f"{zip_path} {args.part}: {s['samples']} composites, IoU {s['mask/iou']:.4f}, "
              f"per image {s['mask/iou_per_image']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
