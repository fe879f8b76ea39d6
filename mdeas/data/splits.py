"""Deterministic train/val/test split and subset, by seed.

`split_by="background"` (default): samples sharing a background stay in one part. `"object"`: samples sharing a
foreground object stay together (the object is read from the sample id: the seed scheme's `_o<N>_`, seed 002's
`fg_<N>/`). `"both"`: backgrounds and objects are each dealt to the parts, and a sample is kept only where its
background and its object went to the same part, so no part shares either with another (about
sum(fraction²) of the samples are kept: 54 % at 70/15/15, 50 % at 50/50).

A limit (`limited`) cuts each part of the whole set's split, never the set before splitting: parts depend on the
samples present, so a run with another limit (or none) would otherwise score on backgrounds another trained on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from mdeas.data.layouts import Sample

SPLIT_BY = ("background", "object", "both")
OBJECT_PATTERNS = (re.compile(r"_o(\d+)_m\d"), re.compile(r"(?:^|/)fg_(\d+)(?:/|$)"))


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


def limited(parts: Sequence[Sequence[Sample]], limit: int | None, seed: int) -> list[list[Sample]]:
    """`limit` samples over all `parts`: each part cut to its share (largest remainders; at least one sample where
    it had any) by a seeded `subset` of itself, so every part stays inside its part of the whole split."""
    check_limit(limit)
    total = sum(len(part) for part in parts)
    if limit is None or limit >= total:
        return [list(part) for part in parts]
    quotas = [limit * len(part) / total for part in parts]
    counts = [int(quota) for quota in quotas]
    for i in sorted(range(len(parts)), key=lambda i: counts[i] - quotas[i])[: limit - sum(counts)]:
        counts[i] += 1
    return [subset(part, max(1, n), seed) if part else [] for part, n in zip(parts, counts, strict=True)]


def object_of(sample: Sample) -> str:
    """The foreground object of `sample`, read from its id or fg_bg name (module docstring); ValueError if none."""
    for text in (sample.id, sample.fg_bg):
        for pattern in OBJECT_PATTERNS:
            if found := pattern.search(text):
                return found.group(1)
    raise ValueError(
        f"data.split_by needs the object in each sample id (the seed scheme's _o<N>_, seed 002's fg_<N>/); "
        f"sample {sample.id!r} names none"
    )


def _deal(samples: Sequence[Sample], key: Callable[[Sample], str], fractions: Sequence[float], seed: int) -> dict:
    """Deal the distinct keys of `samples` to len(fractions) parts in the proportions `fractions`: {key: part}."""
    keys = sorted({key(s) for s in samples})
    order = np.random.default_rng(seed).permutation(len(keys))
    bounds = np.round(np.cumsum(fractions) * len(keys)).astype(int)
    part_of, start = {}, 0
    for part, end in enumerate(bounds):
        part_of.update({keys[k]: part for k in order[start:end]})
        start = end
    return part_of


def groups_dealt(samples: Sequence[Sample], by: str) -> str:
    """What `split(..., by=by)` deals whole to the parts, counted: "3 backgrounds", "2 objects" or both."""
    counts = {"background": len({s.bg for s in samples})} if by != "object" else {}
    if by != "background":
        counts["object"] = len({object_of(s) for s in samples})
    return " and ".join(f"{n} {kind}{'s' * (n != 1)}" for kind, n in counts.items())


def split(
    samples: Sequence[Sample], fractions: Sequence[float], seed: int, by: str = "background"
) -> list[list[Sample]]:
    """Split into len(fractions) parts, shuffled by `seed`, grouped as `by` says (module docstring); the parts
    keep index order. Fractions must sum to 1."""
    if abs(sum(fractions) - 1.0) > 1e-6 or any(f < 0 for f in fractions):
        raise ValueError(f"data.split fractions must be non-negative and sum to 1, got {list(fractions)}")
    if by not in SPLIT_BY:
        raise ValueError(f"data.split_by must be one of {', '.join(SPLIT_BY)}, got {by!r}")
    parts: list[list[Sample]] = [[] for _ in fractions]
    backgrounds = _deal(samples, lambda s: s.bg, fractions, seed) if by != "object" else None
    objects = _deal(samples, object_of, fractions, seed + 1) if by != "background" else None
    for s in samples:
        part = backgrounds[s.bg] if backgrounds is not None else objects[object_of(s)]
        if objects is None or objects[object_of(s)] == part:
            parts[part].append(s)
    return parts
