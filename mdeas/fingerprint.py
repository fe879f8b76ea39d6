"""Fingerprints of code, for caches keyed by what made them: an edit to the code gives a new key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def code_fingerprint(folder: Path, names: Iterable[str]) -> str:
    """A hash (hex, 16 characters) of the names (relative to `folder`, in the order given) and bytes of files."""
    digest = hashlib.sha1()
    for name in names:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]
