"""Markdown tables of results, as the entry points write them (evaluate, compare, sweeps, train's summary)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """A table cell: nothing for None, a float to 4 decimals, a list of numbers as [lo, hi] (an interval), any
    other value as text with its `|` escaped."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int | None = None) -> list[str]:
    """The lines of a markdown table: `header` cells (written as given) and rows of cells (see `cell`);
    columns from `numeric_from` on are right-aligned."""
    align = ["---:" if numeric_from is not None and i >= numeric_from else "---" for i in range(len(header))]
    return [f"| {' | '.join(header)} |", f"|{'|'.join(align)}|", *(f"| {' | '.join(row)} |" for row in rows)]
