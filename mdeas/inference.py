"""Load a trained checkpoint and run it on raw images: resize, normalise, predict, map back to the input size.

A checkpoint carries what this needs (DESIGN.md): the model config, the input size, the normalisation and the
depth encoding, so nothing but the checkpoint path is required.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mdeas.data.decode import encode_depth
from mdeas.data.layouts import DepthEncoding
from mdeas.module import MaskDepthModule


class CheckpointError(ValueError):
    """A file that cannot be used as an mdeas checkpoint; the message names the file."""


def read_checkpoint(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The contents of an mdeas checkpoint (hyper_parameters with a model config, state_dict); one-line
    CheckpointError naming the file for a missing file, a non-checkpoint or another program's checkpoint."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({str(e).splitlines()[0][:120]})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or "model" not in hparams or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not an mdeas checkpoint (no model config or weights inside)")
    return ckpt


def _load_state(target: torch.nn.Module, state: dict, path: str | Path, hparams: dict) -> None:
    try:
        target.load_state_dict(state)
    except RuntimeError as e:
        name = (hparams.get("model") or {}).get("name", "?")
        first = str(e).splitlines()[0][:160]
        raise CheckpointError(f"{path}: weights of model {name!r} do not fit ({first})") from None


def load_weights(model: torch.nn.Module, ckpt_path: str | Path, prefix: str = "model.") -> None:
    """Copy the weights under `prefix` of an mdeas checkpoint into `model` (strict: every tensor must fit)."""
    ckpt = read_checkpoint(ckpt_path)
    weights = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    _load_state(model, weights, ckpt_path, ckpt["hyper_parameters"])


def load_module(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> MaskDepthModule:
    """The trained module of `ckpt_path` in eval mode; a one-line CheckpointError for anything else."""
    ckpt = read_checkpoint(ckpt_path, map_location)
    module = MaskDepthModule(**ckpt["hyper_parameters"])
    _load_state(module, ckpt["state_dict"], ckpt_path, ckpt["hyper_parameters"])
    return module.eval().to(map_location)


@torch.no_grad()
def full_resolution(module: MaskDepthModule, bg: torch.Tensor, fg_bg: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs at the input's own size for normalised float [1,3,H,W] `bg`, `fg_bg` of any H, W: the model's
    `forward_full` when it has one (a refined model), else resize to the model's input size (area), run, and
    upsample bilinearly: {"mask": logits [1,1,H,W], "depth": [1,1,H,W]}."""
    if hasattr(module.model, "forward_full"):
        return module.model.forward_full(bg, fg_bg)
    size = int((module.hparams.data or {}).get("image_size", 224))
    h, w = fg_bg.shape[-2:]
    small = [torch.nn.functional.interpolate(x, size=(size, size), mode="area") for x in (bg, fg_bg)]
    out = module(*small)
    return {k: torch.nn.functional.interpolate(out[k].float(), size=(h, w), mode="bilinear", align_corners=False)
            for k in ("mask", "depth")}  # fmt: skip


@dataclass
class Prediction:
    """Per-sample outputs at the input size: `mask` probability float32 [H, W] in [0, 1]; `depth` [H, W] as the
    training data stores depth (`encode_depth`: uint16 in its unit, e.g. mm, for png16; uint8 grey for gray8, near
    = bright when inverted, as the seeds' sets); `depth_norm` float32 [H, W] in [0, 1] (larger = farther)."""

    mask: np.ndarray
    depth: np.ndarray
    depth_norm: np.ndarray


class Predictor:
    """Batched inference on uint8 RGB arrays of any size (bg and fg_bg of one sample share a size)."""

    def __init__(self, module: MaskDepthModule, device: str | torch.device = "cpu") -> None:
        self.module = module.eval().to(device)
        self.device = torch.device(device)
        data = module.hparams.data or {}
        self.size = int(data.get("image_size", 224))
        self.mean = np.asarray(data.get("mean", (0.485, 0.456, 0.406)), np.float32) * 255
        self.std = np.asarray(data.get("std", (0.229, 0.224, 0.225)), np.float32) * 255
        self.depth_encoding = DepthEncoding(**(data.get("depth") or {}))

    def _tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        resized = [cv2.resize(im, (self.size, self.size), interpolation=cv2.INTER_AREA) for im in images]
        batch = (np.stack(resized).astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)

    @torch.no_grad()
    def __call__(self, bgs: list[np.ndarray], fg_bgs: list[np.ndarray]) -> list[Prediction]:
        """Predict a batch; each output is resized back to its own input size."""
        for bg, fg_bg in zip(bgs, fg_bgs, strict=True):
            if bg.shape != fg_bg.shape:
                raise ValueError(
                    f"bg size {bg.shape[1]}x{bg.shape[0]} differs from fg_bg {fg_bg.shape[1]}x{fg_bg.shape[0]}"
                )
        out = self.module(self._tensor(bgs), self._tensor(fg_bgs))
        masks = torch.sigmoid(out["mask"].float())[:, 0].cpu().numpy()
        depths = out["depth"].float().clamp(0, 1)[:, 0].cpu().numpy()
        results = []
        for mask, depth, fg_bg in zip(masks, depths, fg_bgs, strict=True):
            h, w = fg_bg.shape[:2]
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
            depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR)
            results.append(Prediction(mask, encode_depth(depth, self.depth_encoding), depth))
        return results
