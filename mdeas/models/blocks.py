"""Shared convolution blocks. All blocks keep [B, C, H, W] layout; shapes are given per block."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

BlockFactory = Callable[[int, int], nn.Module]
"""`block(in_channels, out_channels)` → a module mapping [B, in, H, W] → [B, out, H, W]."""


class ConvBN(nn.Sequential):
    """Conv k×k → BatchNorm: [B, in, H, W] → [B, out, H/stride, W/stride]; the conv has no bias unless asked."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, bias: bool = False) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=bias), nn.BatchNorm2d(out_ch)
        )


class ConvBNReLU(ConvBN):
    """Conv k×k → BatchNorm → ReLU: [B, in, H, W] → [B, out, H/stride, W/stride]."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, bias: bool = False) -> None:
        super().__init__(in_ch, out_ch, kernel, stride, bias)
        self.append(nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    """Two (conv 3×3 with bias → BatchNorm → ReLU): [B, in, H, W] → [B, out, H, W]."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(ConvBNReLU(in_ch, out_ch, bias=True), ConvBNReLU(out_ch, out_ch, bias=True))


class ConvReLU(nn.Sequential):
    """Conv 3×3 (or its transpose, both stride 1) with bias → ReLU: [B, in, H, W] → [B, out, H, W]."""

    def __init__(self, in_ch: int, out_ch: int, transpose: bool = False) -> None:
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        super().__init__(conv(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))


def conv_relu_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two ConvReLU (in → out → out): [B, in, H, W] → [B, out, H, W]."""
    return nn.Sequential(ConvReLU(in_ch, out_ch), ConvReLU(out_ch, out_ch))


class BNReLUConv(nn.Sequential):
    """Pre-activation unit BatchNorm → ReLU → conv 3×3 (no bias): [B, in, H, W] → [B, out, H, W]."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.BatchNorm2d(in_ch), nn.ReLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False))


class PointwiseReLUBN(nn.Sequential):
    """1×1 conv (with bias) → ReLU → BatchNorm: [B, in, H, W] → [B, out, H, W]."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch))


class SeparableConv(nn.Sequential):
    """Depthwise 3×3 (dilated) → pointwise 1×1 (with bias), then ReLU → BatchNorm unless `plain`.

    [B, in, H, W] → [B, out, H, W]; padding equals the dilation so the size is kept.
    """

    def __init__(
        self, in_ch: int, out_ch: int, dilation: int = 1, depthwise_bias: bool = True, plain: bool = False
    ) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch, bias=depthwise_bias),
            nn.Conv2d(in_ch, out_ch, 1),
        )
        if not plain:
            self.extend([nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch)])


class Residual(nn.Module):
    """out = act(body(x) + shortcut(x)); the shortcut is the identity when None, `act` is optional."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, act: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def residual_double_conv(in_ch: int, out_ch: int) -> Residual:
    """DoubleConv with a 1×1-conv-BN shortcut, ReLU after the sum: [B, in, H, W] → [B, out, H, W]."""
    return Residual(DoubleConv(in_ch, out_ch), ConvBN(in_ch, out_ch, 1), nn.ReLU(inplace=True))


def basic_block(in_ch: int, out_ch: int, stride: int = 1) -> Residual:
    """ResNet basic block: conv-BN-ReLU, conv-BN, + shortcut (1×1-conv-BN when the shape changes), ReLU.

    [B, in, H, W] → [B, out, H/stride, W/stride].
    """
    body = nn.Sequential(ConvBNReLU(in_ch, out_ch, stride=stride), ConvBN(out_ch, out_ch))
    shortcut = ConvBN(in_ch, out_ch, 1, stride) if stride != 1 or in_ch != out_ch else None
    return Residual(body, shortcut, nn.ReLU(inplace=True))


def preact_block(in_ch: int, out_ch: int) -> Residual:
    """Pre-activation block: BN-ReLU-conv3×3 twice + a 1×1 conv shortcut, all convs bias-free.

    [B, in, H, W] → [B, out, H, W]; the shortcut is a projection even when in == out.
    """
    body = nn.Sequential(BNReLUConv(in_ch, out_ch), BNReLUConv(out_ch, out_ch))
    return Residual(body, nn.Conv2d(in_ch, out_ch, 1, bias=False))


def separable_residual(channels: int) -> Residual:
    """Depthwise-separable residual block: body sep-BN-ReLU-sep-BN, shortcut two separable convs, ReLU after the sum.

    Separable convs here are plain (depthwise without bias, pointwise with bias). [B, C, H, W] → [B, C, H, W].
    """

    def sep() -> SeparableConv:
        return SeparableConv(channels, channels, depthwise_bias=False, plain=True)

    body = nn.Sequential(sep(), nn.BatchNorm2d(channels), nn.ReLU(inplace=True), sep(), nn.BatchNorm2d(channels))
    return Residual(body, nn.Sequential(sep(), sep()), nn.ReLU(inplace=True))


def separable_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """Depthwise 3×3-BN-ReLU → pointwise 1×1-BN-ReLU (all convs bias-free): [B, in, H, W] → [B, out, H, W]."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        ConvBNReLU(in_ch, out_ch, 1),
    )


class SqueezeExcite(nn.Module):
    """Channel gate: global average → 1×1 reduce → ReLU → 1×1 expand → hard sigmoid → scale x. [B, C, H, W] kept."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor`, never below 90 % of it (MobileNet channel rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def inverted_residual(
    in_ch: int, out_ch: int, kernel: int, expansion: float, stride: int, se: bool, hard_swish: bool
) -> nn.Module:
    """MobileNetV3 block: 1×1 expand → depthwise k×k (stride) → [squeeze-excite] → 1×1 project (linear).

    [B, in, H, W] → [B, out, H/stride, W/stride]; identity shortcut when the shape is kept.
    """
    act = nn.Hardswish if hard_swish else nn.ReLU
    mid = make_divisible(in_ch * expansion)
    layers: list[nn.Module] = []
    if mid != in_ch:
        layers += [ConvBN(in_ch, mid, 1), act(inplace=True)]
    layers += [
        nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False),
        nn.BatchNorm2d(mid),
        act(inplace=True),
    ]
    if se:
        layers.append(SqueezeExcite(mid, make_divisible(mid / 4)))
    layers.append(ConvBN(mid, out_ch, 1))
    body = nn.Sequential(*layers)
    return Residual(body) if stride == 1 and in_ch == out_ch else body


class DenseBlock(nn.Module):
    """Three separable convs with additive dense links, then a 1×1 projection.

    x1 = f1(x), x2 = f2(x + x1), x3 = f3(x + x1 + x2), out = proj(x + x1 + x2 + x3).
    [B, in, H, W] → [B, out, H, W].
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(in_ch, in_ch) for _ in range(3))
        self.proj = PointwiseReLUBN(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        for conv in self.convs:
            total = total + conv(total)
        return self.proj(total)


class DilatedContext(nn.Module):
    """Parallel dilated separable convs on a reduced input, concatenated.

    [B, in, H, W] → 1×1 to `width` → one separable conv per dilation → concat [B, width·len(dilations), H, W].
    """

    def __init__(self, in_ch: int, width: int, dilations: tuple[int, ...] = (1, 3, 6, 9)) -> None:
        super().__init__()
        self.reduce = PointwiseReLUBN(in_ch, width)
        self.branches = nn.ModuleList(SeparableConv(width, width, d) for d in dilations)
        self.out_channels = width * len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class ChannelMean(nn.Module):
    """Average over channels: [B, C, H, W] → [B, 1, H, W] (parameter-free)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


class Stem(nn.Sequential):
    """Layers applied to one input image, with the output `channels` and total `stride` they produce."""

    def __init__(self, *layers: nn.Module, channels: int, stride: int = 1) -> None:
        super().__init__(*layers)
        self.channels = channels
        self.stride = stride


def conv_stem(in_ch: int = 3, channels: int = 32) -> Stem:
    """conv3×3-BN-ReLU then conv3×3 stride 2-BN-ReLU: [B, in, H, W] → [B, channels, H/2, W/2]."""
    return Stem(ConvBNReLU(in_ch, channels), ConvBNReLU(channels, channels, stride=2), channels=channels, stride=2)


def resnet_stem(in_ch: int = 3, channels: int = 32, blocks: int = 2) -> Stem:
    """conv3×3-BN-ReLU then `blocks` basic blocks at full size: [B, in, H, W] → [B, channels, H, W]."""
    return Stem(
        ConvBNReLU(in_ch, channels), *(basic_block(channels, channels) for _ in range(blocks)), channels=channels
    )


def upsampling_layer(
    kind: str, channels: int, out_channels: int | None = None, bias: bool = True
) -> tuple[nn.Module, int]:
    """×2 upsampling layer by name and its output channels.

    "nearest" and "bilinear" keep C; "pixel_shuffle" gives C/4; "transpose" (k2 s2) gives `out_channels` (default C).
    """
    if kind == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest"), channels
    if kind == "bilinear":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), channels
    if kind == "pixel_shuffle":
        if channels % 4:
            raise ValueError(f"pixel_shuffle needs channels divisible by 4, got {channels}")
        return nn.PixelShuffle(2), channels // 4
    if kind == "transpose":
        out = out_channels or channels
        return nn.ConvTranspose2d(channels, out, 2, stride=2, bias=bias), out
    raise ValueError(f"unknown upsampling {kind!r}; choose nearest, bilinear, pixel_shuffle or transpose")
