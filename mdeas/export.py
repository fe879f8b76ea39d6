"""Export a checkpoint to TorchScript or ONNX, checked against the PyTorch model on a generated pair.

The exported graph takes (bg, fg_bg): float32 [B, 3, S, S] RGB in [0, 1] at the checkpoint's size S (it
normalises inside) and returns (mask probability [B, 1, S, S], depth [B, 1, S, S] normalised, larger = farther).
A refined model (`mdeas.models.refiner.RefinedNet`) is exported as it trains: the base at S / downsample, then
the refiner on its fixed number of most uncertain patches at S, chosen in the graph (top-k; ONNX TopK, NonZero,
Gather and ScatterND), so the export matches PyTorch: of patches that tie for the last place refined, both take the
first in row-major order (`select_patches`); its native-size `forward_full` is not exported. The check pair is a
scene with an object (`check_pair`), not noise.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mdeas.atomic import atomic_write
from mdeas.cli import exit_on_data_error, one_line, run_app
from mdeas.config_values import file_names, output_file
from mdeas.inference import CheckpointError, load_module, model_size, normalisation
from mdeas.module import MaskDepthModule

LEGACY_EXPORTER_NOTICES = (
    ("You are using the legacy TorchScript-based ONNX export", DeprecationWarning),
    ("The feature will be removed", DeprecationWarning),
    ("Constant folding - Only steps=1 can be constant folded", UserWarning),
    ("Exporting aten::index operator of advanced indexing", UserWarning),
)


class ExportWrapper(nn.Module):
    """The exported model: bg, fg_bg float [B, 3, S, S] in [0, 1] (RGB, not normalised; S the checkpoint's size) →
    (mask probability [B, 1, S, S], depth [B, 1, S, S] as trained: a fraction of the data's depth range, larger =
    farther)."""

    def __init__(self, module: MaskDepthModule) -> None:
        super().__init__()
        self.model = module.model
        self.normalise = normalisation(module)

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(self.normalise(bg), self.normalise(fg_bg))
        return torch.sigmoid(out["mask"]), out["depth"]


def check_pair(batch_size: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(bg, fg_bg) float32 [B, 3, S, S] in [0, 1]: smooth backgrounds (random 4×4 colours, bilinearly enlarged) and
    the same with an opaque rectangle of one random colour each, placed at random."""
    generator = torch.Generator().manual_seed(seed)
    bg = F.interpolate(torch.rand(batch_size, 3, 4, 4, generator=generator), size=(size, size), mode="bilinear")
    fg_bg = bg.clone()
    for image in fg_bg:
        top, left = (int(v) for v in torch.randint(0, size // 2, (2,), generator=generator))
        image[:, top : top + size // 3, left : left + size // 2] = torch.rand(3, 1, 1, generator=generator)
    return bg, fg_bg


try:  # the opsets this torch's ONNX exporter writes (a private module: where it is gone, the exporter's error says)
    from torch.onnx._constants import ONNX_MAX_OPSET
except ImportError:
    ONNX_MAX_OPSET = None
ONNX_MIN_OPSET = 11  # the first whose Resize interpolates as PyTorch does (every model upsamples)
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript"}  # what each names


def export(ckpt_path: str, fmt: str, output: str, batch_size: int = 2, opset: int = 17) -> float | None:
    """Write the export (atomically: an existing `output` is replaced only by a complete file) and return the max
    abs difference to PyTorch (None when ONNX Runtime is missing)."""
    if fmt not in ("torchscript", "onnx"):
        raise ValueError(f"unknown export format {fmt!r}; choose torchscript or onnx")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:  # true is not 1
        raise ValueError(f"batch_size must be a whole number >= 1 (the example batch traced), got {batch_size!r}")
    whole = isinstance(opset, int) and not isinstance(opset, bool)  # checked for either format: a typo all the same
    top = ONNX_MAX_OPSET or opset
    known = fmt == "torchscript" or (whole and ONNX_MIN_OPSET <= opset <= top)
    if not whole or not known:
        raise ValueError(
            f"opset must be a whole number from {ONNX_MIN_OPSET} (the first whose Resize matches PyTorch's "
            f"interpolation) to {ONNX_MAX_OPSET} (what this torch exports), got {opset!r}"
        )
    output_file(output, "output")
    named = SUFFIXES.get(Path(output).suffix.lower(), fmt)
    if named != fmt:
        raise ValueError(f"output {output} names a {named} file, but format={fmt}: give format={named} or another name")
    if os.path.isfile(output) and os.path.isfile(ckpt_path) and os.path.samefile(output, ckpt_path):
        raise ValueError(f"output {output} is the checkpoint it exports: name another file")
    module = load_module(ckpt_path)
    wrapper = ExportWrapper(module).eval()
    size = model_size(module)
    inputs = check_pair(batch_size, size)
    out = Path(output)
    with torch.no_grad(), warnings.catch_warnings():
        # traced at the one size S the graph takes, where the models' shape checks (S divisible by the stride, the
        # patch grid, the number of patches refined) are constants: what TracerWarning warns of; the parity check
        # below is the proof that the graph computes what the model does
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # ONNX goes through the TorchScript-based exporter (dynamo=False), which writes the refiner's data-dependent
        # patch selection that the parity check verifies; its notices concern itself, not the model: its deprecation,
        # strided slices left unfolded, and advanced indexing, wrong for negative indices (ours, from topk and
        # nonzero, never are)
        for message, category in LEGACY_EXPORTER_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=category)
        reference = wrapper(*inputs)
        if fmt == "torchscript":
            traced = torch.jit.trace(wrapper, inputs)
            atomic_write(out, lambda tmp: torch.jit.save(traced, str(tmp)))
            produced = torch.jit.load(str(out))(*inputs)
        else:
            try:
                atomic_write(out, lambda tmp: torch.onnx.export(
                    wrapper, inputs, str(tmp), input_names=["bg", "fg_bg"], output_names=["mask", "depth"],
                    dynamic_axes={n: {0: "batch"} for n in ("bg", "fg_bg", "mask", "depth")}, opset_version=opset,
                    dynamo=False,
                ))  # fmt: skip
            except OSError:
                raise
            except Exception as e:  # the exporter's errors (an opset it lacks, an operator it cannot write)
                raise ValueError(f"ONNX export at opset {opset} failed: {one_line(e)}") from None
            if importlib.util.find_spec("onnxruntime") is None:
                return None
            import onnxruntime

            session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            produced = session.run(None, {"bg": inputs[0].numpy(), "fg_bg": inputs[1].numpy()})
            produced = [torch.from_numpy(p) for p in produced]
    return max(float((a - b).abs().max()) for a, b in zip(reference, produced, strict=True))


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Export a checkpoint to TorchScript or ONNX and check it against PyTorch (see conf/export.yaml)."""
    with exit_on_data_error(CheckpointError, ValueError):
        file_names(cfg, "ckpt_path", "output")
        diff = export(cfg.ckpt_path, cfg.format, cfg.output, cfg.batch_size, cfg.opset)
    check = "not checked (onnxruntime is not installed: pip install -e .[dev])" if diff is None else f"{diff:.3g}"
    print(f"exported {cfg.format} to {cfg.output}; max abs diff vs PyTorch: {check}")


if __name__ == "__main__":
    run_app(main)
