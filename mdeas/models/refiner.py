"""Full-resolution masks: a base model on the downsampled pair, a light refiner on the full-resolution patches
where the coarse mask is unsure (after BackgroundMattingV2's refiner, Lin et al., CVPR 2021).

`PatchRefiner` sees bg, fg_bg, |fg_bg − bg|, the coarse mask probability and optionally a few channels of the
base's hidden map, projected and upsampled (BackgroundMattingV2's refiner reads its base's hidden map too), and
optionally the coarse mask's known-background alpha (`mdeas.outline.colour_alpha`: the object's colour taken from
the coarse mask's confident inside, each pixel's opacity solved against bg, with the contrast |F − B|); it
predicts a correction of the coarse logits on square patches of `patch` px from crops with `context` px more on
each side: its 3×3 convs are unpadded (each uses its dilation's worth of context), so a patch's output depends only
on its crop, refining a patch alone gives the same values as refining every patch at once (the dense pass), and
pixels outside the chosen patches keep the coarse logits exactly. Patches are chosen by uncertainty: the maximum of
1 − |2p − 1| (p the coarse probability) over the patch and `margin` px around it, highest first.

`RefinedNet` wraps any preset: `forward` (training, export) runs the base on the input shrunk by `downsample`
and refines a fixed share of patches at the input size; `forward_full` (inference at any native size) runs the
base at its training size and refines at the native size the patches above an uncertainty threshold, up to the
same share of the image's patches.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mdeas.config_values import finite_number, flag, whole_number
from mdeas.models.net import check_size
from mdeas.models.registry import check_channels, create_model
from mdeas.outline import colour_alpha

IN_CHANNELS = 10  # bg, fg_bg, |fg_bg − bg| (3 each) and the coarse mask probability (+ the base's features)
ALPHA_CHANNELS = 2  # the coarse mask's known-background alpha and its contrast (`alpha_maps`)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Images [B, C, h, w] → [B, C, *size] by area averaging, the base's input inside a RefinedNet: OpenCV's
    INTER_AREA where the sizes divide (256 → 64, as in training); for other ratios torch averages whole input pixels,
    INTER_AREA weighs fractions, and enlarging repeats pixels."""
    return F.interpolate(x, size=tuple(size), mode="area")


def upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Maps [B, C, h, w] (logits or depth) → [B, C, *size] bilinearly."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def alpha_maps(coarse: torch.Tensor, bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
    """Coarse mask logits [B, 1, H, W] and normalised bg, fg_bg [B, 3, H, W] → [B, 2, H, W]: the known-background
    alpha (`mdeas.outline.colour_alpha` at its defaults) clamped to [0, 1], and the contrast |F − B| in normalised
    units (about 4.4 per unit of the 0–1 scale); 0.5 and 0 where no confident foreground lies near."""
    alpha, contrast2, weight = colour_alpha(coarse.detach(), bg, fg_bg)
    known = weight > 0
    return torch.cat([torch.where(known, alpha.clamp(0, 1), 0.5), torch.where(known, contrast2.sqrt(), 0.0)], 1)


def patch_uncertainty(logits: torch.Tensor, patch: int, margin: int = 0) -> torch.Tensor:
    """Mask logits [B, 1, H, W] (H, W multiples of `patch`) → [B, H/patch, W/patch]: per patch the maximum of
    1 − |2p − 1| = 1 − |tanh(logit / 2)|, in [0, 1] (1: p = 0.5 somewhere in the patch), over the patch widened by
    `margin` px on each side (a patch next to the coarse edge counts as unsure too)."""
    closest = -F.max_pool2d(-logits.detach().abs().float(), patch + 2 * margin, patch, margin)
    return 1.0 - torch.tanh(closest[:, 0] / 2)


def select_patches(
    uncertainty: torch.Tensor, k: int, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The patches to refine: per image the `k` most uncertain of `uncertainty` [B, nH, nW] whose uncertainty is at
    least `threshold` (0: all `k`), of equal ones the first in row-major order: a stable sort, and in an ONNX export
    TopK, which the ONNX standard orders so (the exporter takes no stable sort; torch's topk may take any of equal
    ones). Returns (image, row, column) indices, int64 [n] each."""
    n_w, flat = uncertainty.shape[-1], uncertainty.flatten(1)
    if torch.onnx.is_in_onnx_export():
        values, index = flat.topk(min(k, flat.shape[1]), dim=1)
    else:
        values, index = (part[:, :k] for part in flat.sort(dim=1, descending=True, stable=True))
    image, rank = (values >= threshold).nonzero(as_tuple=True)
    patch = index[image, rank]
    return image, patch // n_w, patch % n_w


class PatchRefiner(nn.Module):
    """Refines coarse mask logits on full-resolution patches.

    `widths`: channels of the hidden 3×3 convs (ReLU after each); `dilations`: their dilations (None: all 1), so
    `context` = sum(dilations) + 1 px around each patch; `patch`: side of a patch, px; `margin`: px around each
    patch where the coarse mask's uncertainty also counts when patches are chosen (at most patch / 2); `features`:
    channels of the base's hidden map it reads besides the images (0: none); `alpha`: it reads the coarse mask's
    known-background alpha and contrast too (`alpha_maps`, through their own first conv, which starts at zero, so a
    refiner trained without them loads and starts where it was). The last conv starts at zero: an untrained refiner
    returns the coarse logits.
    """

    def __init__(
        self,
        widths: Sequence[int] = (24, 16),
        patch: int = 8,
        margin: int = 0,
        dilations: Sequence[int] | None = None,
        features: int = 0,
        alpha: bool = False,
    ) -> None:
        whole_number(patch, "model.refiner.patch", 1)
        whole_number(features, "model.refiner.features")
        flag(alpha, "model.refiner.alpha")
        if not 0 <= whole_number(margin, "model.refiner.margin") <= patch // 2:
            raise ValueError(f"margin must be in [0, patch / 2 = {patch // 2}] px, got {margin}")
        if widths:  # none: one 3×3 conv from the inputs to the correction
            check_channels({"widths": widths}, "model.refiner")
        dilations = [1] * len(widths) if dilations is None else list(dilations)
        if len(dilations) != len(widths) or min(dilations, default=1) < 1:
            raise ValueError(f"dilations must be {len(widths)} integers ≥ 1 (one per width), got {dilations}")
        super().__init__()
        channels = [IN_CHANNELS + features, *widths]
        layers: list[nn.Module] = []
        for a, b, d in zip(channels, channels[1:], dilations, strict=False):
            layers += [nn.Conv2d(a, b, 3, dilation=d), nn.ReLU(inplace=True)]
        last = nn.Conv2d(channels[-1], 1, 3)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.alpha = None
        if alpha:
            self.alpha = nn.Conv2d(ALPHA_CHANNELS, channels[1], 3, dilation=dilations[0])
            nn.init.zeros_(self.alpha.weight)
            nn.init.zeros_(self.alpha.bias)
        self.patch = patch
        self.margin = margin
        self.context = sum(dilations) + 1
        self.features = features

    def grid(self, size: Sequence[int]) -> tuple[int, int]:
        """Patches (rows, columns) covering an image of `size` (H, W); the last row and column may overhang."""
        return math.ceil(size[0] / self.patch), math.ceil(size[1] / self.patch)

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """Crops [N, 7 + features (+ 2), h + 2·context, w + 2·context] of (bg, fg_bg, coarse logits, features, alpha
        maps when it reads them) → logit corrections [N, 1, h, w]."""
        bg, fg_bg, coarse, features = x[:, :3], x[:, 3:6], x[:, 6:7], x[:, 7 : 7 + self.features]
        hidden = self.net[0](torch.cat([bg, fg_bg, (fg_bg - bg).abs(), torch.sigmoid(coarse), features], dim=1))
        if self.alpha is not None:
            hidden = hidden + self.alpha(x[:, 7 + self.features :])
        return self.net[1:](hidden)

    def crops(
        self, maps: Sequence[torch.Tensor], image: torch.Tensor, row: torch.Tensor, col: torch.Tensor
    ) -> torch.Tensor:
        """The patches (image, row, col) with their context from `maps` [B, C_i, H, W] → [N, ΣC_i, p + 2c, p + 2c]
        (channels-last); pixels beyond the image repeat its edge."""
        h, w = maps[0].shape[-2:]
        offset = torch.arange(-self.context, self.patch + self.context, device=image.device)
        rows = (row[:, None] * self.patch + offset).clamp(0, h - 1)[:, :, None]
        cols = (col[:, None] * self.patch + offset).clamp(0, w - 1)[:, None, :]
        index = image[:, None, None]
        return torch.cat([m[index, :, rows, cols] for m in maps], dim=3).permute(0, 3, 1, 2)

    def forward(
        self,
        bg: torch.Tensor,
        fg_bg: torch.Tensor,
        coarse: torch.Tensor,
        k: int | None = None,
        threshold: float = 0.0,
        features: torch.Tensor | None = None,
        alpha: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Refined mask logits [B, 1, H, W].

        bg, fg_bg: normalised images [B, 3, H, W]; coarse: mask logits [B, 1, H, W] (the coarse prediction
        upsampled to H, W); k: patches refined per image, the most uncertain ones with uncertainty ≥ `threshold`
        (None: every patch, in one dense pass); features: [B, `self.features`, H, W] (None when it reads none);
        alpha: [B, 2, H, W] from `alpha_maps` (None when it reads none). Pixels outside the refined patches are
        `coarse`'s.
        """
        got = 0 if features is None else features.shape[1]
        if got != self.features:
            raise ValueError(f"the refiner reads {self.features} feature channels, got {got}")
        if (alpha is None) != (self.alpha is None):
            reads = "no alpha maps" if self.alpha is None else "alpha maps"
            raise ValueError(f"the refiner reads {reads}, got {alpha is not None}")
        maps = tuple(m for m in (bg, fg_bg, coarse, features, alpha) if m is not None)
        h, w = coarse.shape[-2:]
        p, c = self.patch, self.context
        rows, cols = self.grid((h, w))
        pad_h, pad_w = rows * p - h, cols * p - w
        padded = F.pad(coarse, (0, pad_w, 0, pad_h), mode="replicate")
        if k is None:
            x = F.pad(torch.cat(maps, dim=1), (c, c + pad_w, c, c + pad_h), mode="replicate")
            return (padded + self.correction(x))[..., :h, :w]
        image, row, col = select_patches(patch_uncertainty(padded, p, self.margin), k, threshold)
        correction = self.correction(self.crops(maps, image, row, col))
        patches = padded.unflatten(2, (rows, p)).unflatten(4, (cols, p)).permute(0, 2, 4, 1, 3, 5)  # [B,nH,nW,1,p,p]
        patches = patches.index_put((image, row, col), patches[image, row, col] + correction)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(padded.shape)[..., :h, :w]


def _record_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    module.recorded_input = inputs[0]


def hidden_projection(base: nn.Module, hidden: str, features: int) -> nn.Conv2d:
    """Make `base.<hidden>` record its input at each call (as its `recorded_input`); return a 1×1 conv from that
    input's channels to `features`. ValueError naming `hidden` if the base has no such module with a conv."""
    try:
        module = base.get_submodule(hidden)
    except AttributeError:
        raise ValueError(f"the base has no module {hidden!r} (hidden)") from None
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"the base's module {hidden!r} (hidden) has no conv to read its channels from")
    module.register_forward_pre_hook(_record_input)
    return nn.Conv2d(conv.in_channels, features, 1)


class RefinedNet(nn.Module):
    """A base model on the downsampled pair, its mask refined at the input size by a PatchRefiner.

    `downsample`: input size / base input size in training; `fraction`: share of the patches refined per image (in
    (0, 1]; 1: every patch, densely); `threshold`: least uncertainty of a patch refined by `forward_full`;
    `freeze_base`: keep the base's weights and normalisation statistics fixed (second-stage training);
    `detail`: give the base (a preset with `difference=True`) |fg_bg − bg| measured at the input size and then
    shrunk with the images, instead of the difference of the shrunk images: a texture that changed keeps its
    evidence though its average colour did not; `hidden`: the base's submodule whose input is its hidden map (e.g.
    "mask_decoder.head", the mask head of a MaskDepthNet), projected by a 1×1 conv to the refiner's `features`
    channels and upsampled bilinearly to the input size (None: the refiner reads no features).
    """

    def __init__(
        self,
        base: nn.Module,
        refiner: PatchRefiner,
        downsample: int = 4,
        fraction: float = 0.25,
        threshold: float = 0.1,
        freeze_base: bool = False,
        detail: bool = False,
        hidden: str | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < finite_number(fraction, "model.fraction") <= 1.0:
            raise ValueError(f"model.fraction must be in (0, 1], got {fraction}")
        if not 0.0 <= finite_number(threshold, "model.threshold") <= 1.0:  # uncertainty is in [0, 1]
            raise ValueError(f"model.threshold (the least uncertainty refined) must be in [0, 1], got {threshold}")
        whole_number(downsample, "model.downsample", 1)
        flag(freeze_base, "model.freeze_base")  # `no` is text, which Python takes for true
        flag(detail, "model.detail")
        if (hidden is None) != (refiner.features == 0):
            raise ValueError(
                f"a refiner reading {refiner.features} feature channels needs hidden to name the base's "
                f"module whose input they come from (and none without them), got hidden={hidden!r}"
            )
        if detail and not getattr(getattr(base, "fusion", None), "difference", False):
            raise ValueError(
                "detail=true needs a base that reads |fg_bg − bg| as input channels (model.difference=true on a "
                "preset with an EarlyConcat fusion, e.g. resunet)"
            )
        self.hidden = hidden
        self.project = None if hidden is None else hidden_projection(base, hidden, refiner.features)
        self.base = base
        self.refiner = refiner
        self.downsample = downsample
        self.fraction = fraction
        self.threshold = threshold
        self.freeze_base = freeze_base
        self.detail = detail
        self.stride = base.stride * downsample
        self.base.requires_grad_(not freeze_base)
        self.train()

    def train(self, mode: bool = True) -> RefinedNet:
        """Set the training mode; a frozen base stays in eval mode (its BatchNorm statistics fixed)."""
        super().train(mode)
        if self.freeze_base:
            self.base.eval()
        return self

    def patches_per_image(self, size: Sequence[int]) -> int | None:
        """Patches refined per image of `size` (H, W): `fraction` of them, rounded up; None for every patch."""
        rows, cols = self.refiner.grid(size)
        return None if self.fraction >= 1.0 else math.ceil(self.fraction * rows * cols)

    def _refine(
        self, bg: torch.Tensor, fg_bg: torch.Tensor, base: dict[str, torch.Tensor], threshold: float
    ) -> dict[str, torch.Tensor]:
        """The base's outputs `base` brought to the size of bg, fg_bg, the mask refined there."""
        size = fg_bg.shape[-2:]
        coarse = upsample(base["mask"], size)
        features = None
        if self.project is not None:  # the hidden map the base's forward just recorded, taken so it is not kept
            hidden = self.base.get_submodule(self.hidden).__dict__.pop("recorded_input")
            features = upsample(self.project(hidden), size)
        k = self.patches_per_image(size)
        if k is None and threshold > 0:  # every patch may be refined, but only those the threshold lets through
            rows, cols = self.refiner.grid(size)
            k = rows * cols
        alpha = None if self.refiner.alpha is None else alpha_maps(coarse, bg, fg_bg)
        mask = self.refiner(bg, fg_bg, coarse, k, threshold, features, alpha)
        return {"mask": mask, "depth": upsample(base["depth"], size), "mask_coarse": coarse}

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised bg, fg_bg [B, 3, H, W] (H, W divisible by `stride`) → {"mask": refined logits, "depth",
        "mask_coarse": the base's logits upsampled}, each [B, 1, H, W]; the base runs on the pair averaged over
        `downsample` × `downsample` blocks and `fraction` of the patches are refined."""
        check_size(fg_bg, self.stride)
        return self._refine(bg, fg_bg, self._base(bg, fg_bg, lambda x: F.avg_pool2d(x, self.downsample)), 0.0)

    def _base(
        self, bg: torch.Tensor, fg_bg: torch.Tensor, shrink: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The base's outputs on the pair shrunk by `shrink` (with the full-size difference shrunk too if `detail`)."""
        if self.detail:
            return self.base(shrink(bg), shrink(fg_bg), difference=shrink((fg_bg - bg).abs()))
        return self.base(shrink(bg), shrink(fg_bg))

    def forward_full(self, bg: torch.Tensor, fg_bg: torch.Tensor, train_size: int) -> dict[str, torch.Tensor]:
        """Normalised bg, fg_bg [B, 3, H, W] of any size → the outputs of `forward` at H × W. The base runs on
        the pair shrunk to the square it trained on, `train_size` / downsample px (`train_size`: the training
        input size, data.image_size); the patches refined are those with uncertainty ≥ `threshold`, at most
        `fraction` of them."""
        side = (train_size // self.downsample,) * 2
        return self._refine(bg, fg_bg, self._base(bg, fg_bg, lambda x: resize(x, side)), self.threshold)


def refined(name: str, refiner: PatchRefiner, **options: Any) -> RefinedNet:
    """The preset `name` as the base of a RefinedNet with `refiner`: the options RefinedNet takes (downsample,
    fraction, threshold, freeze_base, detail, hidden) go to it, the others to the preset."""
    own = set(inspect.signature(RefinedNet).parameters) - {"base", "refiner"}
    base = create_model(name, **{key: value for key, value in options.items() if key not in own})
    return RefinedNet(base, refiner, **{key: value for key, value in options.items() if key in own})
