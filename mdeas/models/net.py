"""Whole models: MaskDepthNet (fusion → neck → two decoders) and SeparateNets (one network per output).

Every model maps `model(bg, fg_bg) -> {"mask": logits [B,1,H,W], "depth": [B,1,H,W]}` for H, W divisible by its
`stride`.
"""

from __future__ import annotations

import torch
from torch import nn


def check_size(x: torch.Tensor, stride: int) -> None:
    """ValueError unless the input's H and W are divisible by `stride`."""
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        near = sorted({max(stride, side // stride * stride) for side in (h, w)} | {-(-max(h, w) // stride) * stride})
        sizes = " or ".join(str(n) for n in near)
        raise ValueError(f"input size {h}x{w} is not divisible by the model stride {stride} (sizes that are: {sizes})")


class MaskDepthNet(nn.Module):
    """Fusion (with its encoder) → neck on the deepest feature → mask decoder and depth decoder."""

    def __init__(self, fusion: nn.Module, neck: nn.Module, mask_decoder: nn.Module, depth_decoder: nn.Module) -> None:
        super().__init__()
        self.fusion = fusion
        self.neck = neck
        self.mask_decoder = mask_decoder
        self.depth_decoder = depth_decoder
        self.stride = max(fusion.strides)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor, **fusion_inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """`fusion_inputs`: extra inputs of the fusion, e.g. `difference` for EarlyConcat with a difference input."""
        check_size(fg_bg, self.stride)
        features = self.fusion(bg, fg_bg, **fusion_inputs)
        mask_in, depth_in = self.neck(features[-1])
        return {"mask": self.mask_decoder(mask_in, features), "depth": self.depth_decoder(depth_in, features)}


class TaskNet(nn.Module):
    """One output from its own fusion and decoder: `net(bg, fg_bg) -> [B, 1, H, W]`."""

    def __init__(self, fusion: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.fusion = fusion
        self.decoder = decoder
        self.stride = max(fusion.strides)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
        features = self.fusion(bg, fg_bg)
        return self.decoder(features[-1], features)


class SeparateNets(nn.Module):
    """Two independent networks in one module, one per output (no shared weights)."""

    def __init__(self, mask_net: TaskNet, depth_net: TaskNet) -> None:
        super().__init__()
        self.mask_net = mask_net
        self.depth_net = depth_net
        self.stride = max(mask_net.stride, depth_net.stride)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> dict[str, torch.Tensor]:
        check_size(fg_bg, self.stride)
        return {"mask": self.mask_net(bg, fg_bg), "depth": self.depth_net(bg, fg_bg)}
