"""MobileNetV3-style encoder: a stride-2 stem, then inverted residual blocks (squeeze-excite, hard-swish)."""

from __future__ import annotations

from torch import nn

from mdeas.models.blocks import ConvBN, inverted_residual
from mdeas.models.encoders.base import StageEncoder
from mdeas.models.registry import ENCODERS

# (kernel, expansion, out channels, squeeze-excite, hard-swish, stride); a stage ends before each stride-2 block.
MOBILE_BLOCKS: tuple[tuple[int, float, int, bool, bool, int], ...] = (
    (3, 1, 16, True, False, 1),
    (3, 4, 24, False, False, 2),
    (3, 3, 24, False, False, 1),
    (5, 3, 40, True, False, 2),
    (5, 3, 40, True, False, 1),
    (3, 6, 80, False, True, 2),
    (3, 2.5, 80, False, True, 1),
    (3, 6, 112, True, True, 1),
    (5, 6, 160, True, True, 2),
    (5, 6, 160, True, True, 1),
)


@ENCODERS.register("mobile")
class MobileEncoder(StageEncoder):
    """[B, in, H, W] → one feature per stride: [B, c, H/2, W/2] … [B, c, H/32, W/32] for the default blocks."""

    def __init__(
        self,
        in_channels: int,
        stem_channels: int = 16,
        blocks: tuple[tuple[int, float, int, bool, bool, int], ...] = MOBILE_BLOCKS,
    ) -> None:
        stages: list[list[nn.Module]] = [[ConvBN(in_channels, stem_channels, 3, stride=2), nn.Hardswish()]]
        channels, strides, ch, stride = [], [], stem_channels, 2
        for kernel, expansion, out, se, hard_swish, block_stride in blocks:
            if block_stride == 2:
                stages.append([])
                channels.append(ch)
                strides.append(stride)
                stride *= 2
            stages[-1].append(inverted_residual(ch, out, kernel, expansion, block_stride, se, hard_swish))
            ch = out
        super().__init__([nn.Sequential(*s) for s in stages], [*channels, ch], [*strides, stride])
