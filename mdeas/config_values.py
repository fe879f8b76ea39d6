"""Checks of config values that arrive untyped from the command line: each returns the value or raises a one-line
ValueError naming the key (`mirror=no` is a string to Hydra, which Python would take for true)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence


def flag(value: object, key: str) -> bool:
    """`value` when it is true or false, else ValueError naming `key`."""
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def whole_number(value: object, key: str, minimum: int = 0) -> int:
    """`value` when it is an integer >= `minimum` (not a bool), else ValueError naming `key`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key} must be a whole number >= {minimum}, got {value!r}")
    return value


WORKERS_PER_CPU = 8  # the most loader processes per CPU core a count may ask for


def worker_count(value: object, key: str) -> int:
    """`value` when it is a whole number of processes in [0, WORKERS_PER_CPU × the CPU count], else ValueError naming
    `key` (num_workers=100000 started processes until the machine ran out of memory)."""
    most = WORKERS_PER_CPU * (os.cpu_count() or 1)
    if whole_number(value, key) > most:
        raise ValueError(f"{key} must be at most {most} ({WORKERS_PER_CPU} per CPU core), got {value}")
    return value


def finite_number(value: object, key: str) -> float:
    """`value` as a float when it is a finite number (not a bool), else ValueError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def named(value: object) -> bool:
    """Whether `value` is a non-empty name (text or a path) or a non-empty list of them."""
    items = [value] if isinstance(value, str | os.PathLike) else value
    return (
        isinstance(items, Sequence) and bool(items) and all(isinstance(i, str | os.PathLike) and str(i) for i in items)
    )


def file_name(value: object, key: str) -> str | None:
    """`value` when it is None or a non-empty name, else ValueError naming `key` (Hydra reads a name made of
    digits, `output=2024`, as a number: the message says to quote it)."""
    if value is None or (isinstance(value, str) and named(value)):
        return value
    raise ValueError(f"{key} must be a file or folder name, got {value!r}{digits_hint(value, key)}")


def output_file(value: str | os.PathLike, key: str) -> None:
    """ValueError naming `key` when the output file `value` names a folder: written with a trailing `/` (it would
    be written as a file of that name) or one that exists."""
    if str(value).endswith(("/", os.sep)) or os.path.isdir(value):
        raise ValueError(f"{key} must name a file, not a folder: {value}")


def file_names(cfg: Mapping, *keys: str) -> None:
    """Check each of `keys` of `cfg` with `file_name`; a list value must hold names only."""
    for key in keys:
        value = cfg.get(key)
        if isinstance(value, Sequence) and not isinstance(value, str):
            if not named(value):
                raise ValueError(f"{key} must be a list of file names, got {list(value)!r}{digits_hint(value, key)}")
        else:
            file_name(value, key)


def digits_hint(value: object, key: str) -> str:
    """What to write instead when `value` (or an item of a list) is a number where a name was meant; else ""."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        numeric = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        return f" (quote a name made of digits: '\"{numeric[0]}\"')" if numeric else ""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f" (quote a name made of digits: '{key}=\"{value}\"')" if numeric else ""


def numbers(values: object, key: str, count: int, positive: bool = False) -> tuple[float, ...]:
    """`values` as `count` finite floats (each > 0 when `positive`), else ValueError naming `key`."""
    ok = isinstance(values, Sequence) and not isinstance(values, str) and len(values) == count
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if not ok or (positive and min(values) <= 0):
        what = "positive numbers" if positive else "numbers"
        raise ValueError(f"{key} must be {count} finite {what}, got {_shown(values)}")
    return tuple(float(v) for v in values)


def _shown(values: object) -> str:
    return repr(list(values)) if isinstance(values, Sequence) and not isinstance(values, str) else repr(values)
