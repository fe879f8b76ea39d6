"""Deterministic train/val/test split and subset, by seed. Samples sharing a background stay together."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mdeas.data.layouts import Sample


def check_limit(limit: object, key: str = "limit") -> None:
    """ValueError naming config `key` unless `limit` is None or a positive int."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{key} must be a positive number of samples (or null for all), got {limit!r}")


def subset(samples: Sequence[Sample], limit: int | None, seed: int) -> list[Sample]:
    """`limit` samples drawn by `seed` (all of them when limit is None or ≥ the count), in index order."""
    check_limit(limit)
    if limit is None or limit >= len(samples):
        return list(samples)
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), size=limit, replace=False))
    return [samples[i] for i in keep]


def split(samples: Sequence[Sample], fractions: Sequence[float], seed: int) -> list[list[Sample]]:
    """Split into len(fractions) parts by background group, shuffled by `seed`; fractions must sum to 1."""
    if abs(sum(fractions) - 1.0) > 1e-6 or any(f < 0 for f in fractions):
        raise ValueError(f"data.split fractions must be non-negative and sum to 1, got {list(fractions)}")
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.bg, []).append(s)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    bounds = np.round(np.cumsum(fractions) * len(keys)).astype(int)
    parts, start = [], 0
    for end in bounds:
        parts.append([s for k in order[start:end] for s in groups[keys[k]]])
        start = end
    return parts
