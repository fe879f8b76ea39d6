"""MaskDepthNet: fusion (with its encoder) → neck → mask decoder and depth decoder."""

from __future__ import annotations

import torch
from torch import nn


class MaskDepthNet(nn.Module):
    """`model(bg, fg_bg) -> {"mask": logits [B,1,H,W], "depth": [B,1,H,W]}` for H, W divisible by `stride`."""

    def __init__(self, fusion: nn.Module, neck: nn.Module, mask_decoder: nn.Module, depth_decoder: nn.Module):
        super().__init__()
        self.fusion = fusion
        self.neck = neck
        self.mask_decoder = mask_decoder
        self.depth_decoder = depth_decoder
        self.stride = max(fusion.strides)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = fg_bg.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"input size {h}x{w} is not divisible by the model stride {self.stride}")
        features = self.fusion(bg, fg_bg)
        mask_in, depth_in = self.neck(features[-1])
        return {"mask": self.mask_decoder(mask_in, features), "depth": self.depth_decoder(depth_in, features)}
