"""Model summary: per-layer output shapes and params, total params, forward GFLOPs per image.

`python -m mdeas.summary model=densenet_dilated data.image_size=224`; the last line is `total params: N`.
"""

from __future__ import annotations

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mdeas.cli import exit_on_data_error, out_of_memory, run_app
from mdeas.config_values import whole_number


def _shape(output: object) -> str:
    if isinstance(output, torch.Tensor):
        return str(list(output.shape))
    if isinstance(output, dict):
        return ", ".join(f"{k}: {_shape(v)}" for k, v in output.items())
    if isinstance(output, list | tuple):
        return ", ".join(_shape(v) for v in output)
    return "-"


def layer_table(model: nn.Module, image_size: int) -> tuple[list[tuple[str, str, str, int]], float]:
    """Rows (name, type, output shape, own params) for every leaf module, and forward GFLOPs per image."""
    rows: list[tuple[str, str, str, int]] = []
    hooks = [
        module.register_forward_hook(
            lambda m, _i, out, name=name: rows.append(
                (name, type(m).__name__, _shape(out), sum(p.numel() for p in m.parameters(recurse=False)))
            )
        )
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    x = torch.rand(1, 3, image_size, image_size)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, x)
    for hook in hooks:
        hook.remove()
    return rows, counter.get_total_flops() / 1e9


def summarise(model: nn.Module, image_size: int) -> str:
    """The printed summary (a table, then GFLOPs and the total parameter count on the last line)."""
    rows, gflops = layer_table(model, image_size)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'layer':<{width}}  {'type':<16} {'output shape':<28} {'params':>10}", "-" * (width + 58)]
    lines += [f"{n:<{width}}  {t:<16} {s:<28} {p:>10,}" for n, t, s, p in rows]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines += [
        "-" * (width + 58),
        f"input: 2 × [1, 3, {image_size}, {image_size}] (bg, fg_bg)",
        f"forward GFLOPs per image: {gflops:.3f}",
        f"trainable params: {trainable:,}",
        f"total params: {total:,}",
    ]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="summary")
def main(cfg: DictConfig) -> None:
    """Print the summary; a model config that cannot be built or a size it cannot take (or hold in memory) is a
    one-line error."""
    size = cfg.data.image_size
    with exit_on_data_error(ValueError):
        model = instantiate(cfg.model)
        try:
            print(summarise(model, whole_number(size, "data.image_size", 1)))
        except RuntimeError as error:
            if not out_of_memory(error):
                raise
            raise ValueError(f"data.image_size={size}: the forward pass does not fit in memory") from None


if __name__ == "__main__":
    run_app(main)
