"""`trainer.precision=auto`: bf16 mixed precision where the hardware computes bf16 natively, fp32 elsewhere.

A CPU without bf16 instructions emulates it 6–12× slower than fp32, one with them trains the default model 1.5×
faster in bf16 (RESULTS.md, "Training step"), so the choice cannot be one fixed value.
"""

from __future__ import annotations

from pathlib import Path

import torch

BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names of native bf16 arithmetic


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def native_bf16(accelerator: str = "auto") -> bool:
    """Whether training on `accelerator` (Lightning's name: auto, cpu, gpu, cuda) would compute bf16 natively: a
    CUDA GPU that supports it (when one is used), or a CPU with AVX512-BF16 or AMX."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return accelerator in ("auto", "cpu") and bool(cpu_flags() & BF16_CPU_FLAGS)


def resolve_precision(precision: str | int, accelerator: str = "auto") -> str | int:
    """`precision` as Lightning takes it: "auto" becomes "bf16-mixed" where bf16 is native, else "32-true"; any
    other value is returned unchanged."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if native_bf16(accelerator) else "32-true"
