"""Layout readers: turn the entries of a ZipStore into a checked sample index.

Only the canonical layout (manifest.csv + meta.json, written by `mdeas.data.synth`) is read here; every
sample's four entries are checked to exist before training starts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from mdeas.data.errors import DataError
from mdeas.data.zipstore import ZipStore

MANIFEST_COLUMNS = ["id", "bg", "fg_bg", "mask", "depth"]


@dataclass(frozen=True)
class Sample:
    """One sample: its id and the zip entry names of its four images (`depth` may be None: unknown)."""

    id: str
    bg: str
    fg_bg: str
    mask: str
    depth: str | None


@dataclass(frozen=True)
class DepthEncoding:
    """How depth is stored: `format` (png16), `unit` (mm) and `max` (the value mapped to 1.0)."""

    format: str = "png16"
    unit: str = "mm"
    max: float = 20000.0

    @property
    def metres_per_unit(self) -> float:
        return {"mm": 1e-3, "cm": 1e-2, "m": 1.0}.get(self.unit, 1.0)


@dataclass
class DatasetIndex:
    """Samples, their depth encoding and the store to read them from."""

    store: ZipStore
    samples: list[Sample]
    depth: DepthEncoding = field(default_factory=DepthEncoding)
    layout: str = "canonical"


def read_canonical(store: ZipStore) -> DatasetIndex:
    """Index a canonical zip: manifest.csv (id,bg,fg_bg,mask,depth) and meta.json."""
    for required in ("manifest.csv", "meta.json"):
        if required not in store:
            raise DataError(store.paths[0], required, "missing; not a canonical mdeas dataset")
    meta = json.loads(store.read("meta.json"))
    rows = list(csv.reader(io.StringIO(store.read("manifest.csv").decode("utf-8"))))
    if not rows or rows[0] != MANIFEST_COLUMNS:
        raise DataError(store.source("manifest.csv"), "manifest.csv", f"header must be {','.join(MANIFEST_COLUMNS)}")
    samples = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(MANIFEST_COLUMNS):
            raise DataError(store.source("manifest.csv"), f"manifest.csv line {line}", f"expected 5 fields: {row}")
        sample = Sample(row[0], row[1], row[2], row[3], row[4] or None)
        for entry in (sample.bg, sample.fg_bg, sample.mask, sample.depth):
            if entry is not None and entry not in store:
                raise DataError(store.source("manifest.csv"), entry, f"listed for sample {sample.id} but missing")
        samples.append(sample)
    depth = meta.get("depth") or {}
    encoding = DepthEncoding(**{k: depth[k] for k in ("format", "unit", "max") if k in depth})
    return DatasetIndex(store, samples, encoding)


def load_index(paths: str | list[str]) -> DatasetIndex:
    """Open one zip or several and index them; a dataset with no samples is an error."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    index = read_canonical(ZipStore(paths))
    if not index.samples:
        raise DataError(", ".join(paths), None, "dataset has no samples")
    return index
