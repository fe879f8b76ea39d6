"""Layout readers: turn the entries of one or more zips into a checked sample index, without extracting.

Layouts (README "Dataset layouts"; detected from the zips unless `layout` is given):

- `canonical`: `manifest.csv` (id,bg,fg_bg,mask,depth) + `meta.json` per zip, written by `mdeas.synth`.
- `seed002`: `label_data.csv`, `;`-delimited, every field quoted, no header: bg, fg_bg, mask, depth.
- `seed003`: `labels.txt`, tab-separated: bg, fg, fg_bg, mask, depth (`data_k/{Fg-Bg,Fg-Bg-Mask,Depth}/...`, the
  parts spread over several zips).
- `seed000`: `labels.txt`, tab-separated: bg, fg, fg_bg, mask; depth has the fg_bg file name in `fg_bg_depth/`.
- `by_kind`: no manifest; one zip (or folder) per kind, told apart by zip, folder or file names (folders naming
  several kinds outrank their zip's name), paired by file name (seeds 001, 004); depth may be absent (unknown).

Depth: canonical zips store 16-bit millimetres (0 = unknown, larger = farther); the seed layouts store DenseDepth's
8-bit grey, read as relative depth (max 255) with `inverted=True` by default: DenseDepth's NYU model predicts an
inverse-like depth, saved with near = bright (`depth_inverted=false` for a set saved the other way).

Manifest names are matched to entries by `NameResolver` (folder prefixes on either side); pairing never depends
on listing order. A sample whose entries are missing is a *problem* (a DataError naming the entry): raised at once
by `load_index(strict=True)`, otherwise left out of `samples` and kept in `index.problems`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mdeas.config_values import flag
from mdeas.data.errors import DataError
from mdeas.data.zipstore import NameResolver, ZipStore

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["id", "bg", "fg_bg", "mask", "depth"]
KINDS = ("bg", "fg_bg", "mask", "depth")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OTHER_IMAGES = (".gif", ".heic", ".heif", ".avif", ".jp2", ".jxl", ".psd", ".tga", ".ppm", ".pgm", ".exr", ".dng")
SEED_DEPTH_INVERTED = True  # DenseDepth's NYU output is inverse-like: the seeds' grey depth is bright = near


@dataclass(frozen=True)
class Sample:
    """One sample: its id and the store keys of its four images (`depth` may be None: unknown; `mask` only in an
    index of predict's inputs, `load_index(pairs_only=True)`)."""

    id: str
    bg: str
    fg_bg: str
    mask: str | None
    depth: str | None


METRES_PER_UNIT = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}  # the metric units a depth encoding may state (or "relative")


@dataclass(frozen=True)
class DepthEncoding:
    """How depth is stored.

    `format`: `png16` (16-bit PNG, 0 = unknown) or `gray8` (8-bit grey, every pixel known); `unit`: `mm`, `cm`,
    `m` or `relative`; `max`: the stored value that normalised depth 1.0 stands for; `inverted`: larger stored
    values are *nearer* (normalised depth is then `1 - value / max`, so that larger is always farther).
    """

    format: str = "png16"
    unit: str = "mm"
    max: float = 20000.0
    inverted: bool = False

    @property
    def metres_per_unit(self) -> float:
        """Reported units per stored unit: metres for metric units; `1 / max` for relative depth, so that relative
        metrics are fractions of the full range (the seeds' [0, 1] scale)."""
        if self.unit == "relative":
            return 1.0 / self.max
        return METRES_PER_UNIT[self.unit]

    @property
    def scale(self) -> float:
        """What normalised depth 1.0 stands for in reported units (metres, or 1.0 for relative depth)."""
        return self.max * self.metres_per_unit


SEED_DEPTH = DepthEncoding(format="gray8", unit="relative", max=255.0, inverted=SEED_DEPTH_INVERTED)


@dataclass
class DatasetIndex:
    """Samples, their depth encoding, the store to read them from, and the problems found while indexing."""

    store: ZipStore
    samples: list[Sample]
    depth: DepthEncoding = field(default_factory=DepthEncoding)
    layout: str = "canonical"
    problems: list[DataError] = field(default_factory=list)
    resolution: str = ""


def _user_file(name: str) -> bool:
    """Not a dot file nor under __MACOSX/ (what macOS adds to a zip)."""
    return not name.rsplit("/", 1)[-1].startswith(".") and not name.startswith("__MACOSX/")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and _user_file(name)


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _text(store: ZipStore, key: str) -> str:
    try:
        return store.read(key).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(store.source(key), store.name(key), f"not UTF-8 text ({e})", "layout") from None


def _manifests(store: ZipStore, file_name: str) -> list[tuple[int, str]]:
    """(zip index, key) of every entry called `file_name`, in any folder."""
    return [
        (i, store.key(name, i))
        for i, names in enumerate(store.listing)
        for name in names
        if name.rsplit("/", 1)[-1] == file_name and _user_file(name)
    ]


class _Collector:
    """Resolves manifest rows into samples; records problems instead of stopping at the first."""

    def __init__(self, store: ZipStore, pairs_only: bool = False) -> None:
        self.store = store
        self.pairs_only = pairs_only  # predict's inputs: a mask or depth listed but missing is left None
        self.resolver = NameResolver(store)
        self.samples: list[Sample] = []
        self.problems: list[DataError] = []
        self._ids: set[str] = set()
        self._listed: set[tuple[int, str]] = set()  # (zip, id) as each manifest gives it
        self._seen: set[tuple] = set()
        self.repeated = 0  # rows naming the same four entries as an earlier row: read once, counted here

    def problem(self, home: int, entry: str, what: str, category: str) -> None:
        self.problems.append(DataError(self.store.paths[home], entry, what, category))

    def add_names(self, home: int, where: str, sample_id: str | None, names: Sequence[str | None]) -> None:
        """Resolve bg, fg_bg, mask, depth names (depth may be None) listed at `where` in zip `home`."""
        keys: list[str | None] = []
        label = sample_id or names[1]
        required = 2 if self.pairs_only else len(names)  # the first names a sample cannot do without
        for name in names:
            try:
                key = None if name is None else self.resolver.resolve(name, home)
            except DataError as e:
                self.problems.append(e)
                return
            if name is not None and key is None and len(keys) < required:
                self.problem(home, name, f"listed for sample {label} but missing ({where})", "missing")
            keys.append(key)
        if all(k is not None for k, n in zip(keys[:required], names[:required], strict=True) if n is not None):
            self.add_keys(home, sample_id, keys)

    def add_keys(self, home: int, sample_id: str | None, keys: Sequence[str | None]) -> None:
        """Add a sample of resolved keys; its id defaults to the fg_bg entry name without extension."""
        if tuple(keys) in self._seen:
            self.repeated += 1
            return
        self._seen.add(tuple(keys))
        if sample_id is not None:
            if (home, sample_id) in self._listed:  # one manifest naming two samples alike
                what = f"sample id {sample_id} used twice in the manifest"
                self.problem(home, self.store.name(keys[1]), what, "layout")
                return
            self._listed.add((home, sample_id))
        sample_id = sample_id or _stem(self.store.name(keys[1]))
        if sample_id in self._ids:
            sample_id = f"{self.store.paths[home].stem}/{sample_id}"  # predict writes it in a folder of that name
        if sample_id in self._ids:
            self.problem(home, self.store.name(keys[1]), f"sample id {sample_id} used twice", "layout")
            return
        self._ids.add(sample_id)
        self.samples.append(Sample(sample_id, keys[0], keys[1], keys[2], keys[3]))

    def index(self, layout: str, depth: DepthEncoding) -> DatasetIndex:
        repeated = f"; {self.repeated} rows repeat an earlier one (read once)" if self.repeated else ""
        return DatasetIndex(self.store, self.samples, depth, layout, self.problems, self.resolver.summary() + repeated)


def _table(store: ZipStore, key: str, delimiter: str = ",", spaced: bool = False) -> list[list[str]]:
    """The rows of a delimited manifest (`spaced`: a space after a delimiter is not part of the field, so
    `"a"; "b"` reads as a, b); DataError naming it when the csv module cannot split it."""
    try:
        return list(csv.reader(io.StringIO(_text(store, key)), delimiter=delimiter, skipinitialspace=spaced))
    except csv.Error as e:
        raise DataError(store.source(key), store.name(key), f"unreadable table ({e})", "layout") from None


def _rows(store: ZipStore, key: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a delimited manifest; blank lines skipped, a header (no image name) dropped."""
    rows = [
        (n, [f.strip() for f in row])
        for n, row in enumerate(_table(store, key, delimiter, spaced=True), start=1)
        if any(f.strip() for f in row)
    ]
    if rows and not any(f.lower().endswith(IMAGE_EXTENSIONS) for f in rows[0][1]):
        rows = rows[1:]
    return rows


DELIMITERS = {";": "';'", "\t": "tabs"}  # as an error names them


def _read_table(
    store: ZipStore,
    file_name: str,
    delimiter: str,
    width: int,
    pick: Callable,
    depth_last: bool = False,
    pairs_only: bool = False,
) -> _Collector:
    """Every `file_name` manifest: rows of `width` fields, mapped by `pick(fields)` to (bg, fg_bg, mask, depth).
    Empty fields after the last are dropped (a trailing delimiter); with `depth_last`, depth is the last field and a
    set without depth may leave it empty or out (its samples' depth is unknown). `pairs_only`: see `load_index`."""
    found = _manifests(store, file_name)
    if not found:
        raise DataError(store.describe(), file_name, "missing: no zip holds this manifest", "layout")
    collector = _Collector(store, pairs_only)
    for home, key in found:
        for line, fields in _rows(store, key, delimiter):
            where = f"{store.name(key)} line {line}"
            while len(fields) > width and not fields[-1]:
                fields = fields[:-1]
            if depth_last and len(fields) == width - 1:
                fields = [*fields, ""]
            if len(fields) != width:
                expected = f"{width - 1} or {width}" if depth_last else str(width)
                what = f"expected {expected} fields separated by {DELIMITERS[delimiter]}, got {len(fields)}: {fields}"
                collector.problem(home, where, what, "layout")
                continue
            names = [name or None for name in pick(fields)]
            empty = [kind for kind, name in zip(KINDS[: 2 if pairs_only else 3], names, strict=False) if name is None]
            if empty:
                collector.problem(home, where, f"empty {' and '.join(empty)} field: {fields}", "layout")
            else:
                collector.add_names(home, where, None, names)
    return collector


def _canonical_depth(store: ZipStore, meta_key: str) -> DepthEncoding:
    """The depth encoding of a canonical zip's meta.json: `format` png16 or gray8, `unit` mm, cm, m or relative,
    `max` a positive number (each optional); DataError naming meta.json for anything else."""
    where = (store.source(meta_key), store.name(meta_key))
    text = _text(store, meta_key)  # an entry that cannot be read says so itself
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise DataError(*where, f"unreadable depth encoding ({e})", "layout") from None
    depth = (meta.get("depth") if isinstance(meta, dict) else meta) or {}
    fields = {k: depth[k] for k in ("format", "unit", "max") if k in depth} if isinstance(depth, dict) else None
    if (
        fields is None
        or fields.get("format", "png16") not in ("png16", "gray8")
        or fields.get("unit", "mm") not in (*METRES_PER_UNIT, "relative")
        or not isinstance(fields.get("max", 1), int | float)
        or isinstance(fields.get("max"), bool)
        or not 0 < fields.get("max", 1) < math.inf
    ):
        problem = (
            f"depth must be png16 or gray8, unit mm, cm, m or relative and max a number > 0, got {str(depth)[:160]}"
        )
        raise DataError(*where, problem, "layout")
    return DepthEncoding(**fields)


def read_canonical(store: ZipStore, pairs_only: bool = False) -> DatasetIndex:
    """Index canonical zips: each `manifest.csv` (id,bg,fg_bg,mask,depth) with the `meta.json` beside it."""
    found = _manifests(store, "manifest.csv")
    if not found:
        raise DataError(store.paths[0], "manifest.csv", "missing; not a canonical mdeas dataset", "layout")
    collector, encodings = _Collector(store, pairs_only), set()
    for home, key in found:
        folder = store.name(key)[: -len("manifest.csv")]
        meta_key = store.key(folder + "meta.json", home)
        if meta_key is None:
            raise DataError(store.paths[home], folder + "meta.json", "missing; not a canonical mdeas dataset", "layout")
        encodings.add(_canonical_depth(store, meta_key))
        rows = _table(store, key)
        if not rows or rows[0] != MANIFEST_COLUMNS:
            raise DataError(
                store.paths[home], store.name(key), f"header must be {','.join(MANIFEST_COLUMNS)}", "layout"
            )
        for line, row in enumerate(rows[1:], start=2):
            where = f"{store.name(key)} line {line}"
            if not any(f.strip() for f in row):  # a blank line (a trailing one, or Windows' doubled \r)
                continue
            if len(row) != len(MANIFEST_COLUMNS):
                collector.problem(home, where, f"expected 5 fields: {row}", "layout")
            else:
                collector.add_names(home, where, row[0], [row[1], row[2], row[3], row[4] or None])
    if len(encodings) > 1:
        raise DataError(store.describe(), "meta.json", f"the zips store depth differently: {encodings}", "layout")
    return collector.index("canonical", encodings.pop())


def read_seed002(store: ZipStore, pairs_only: bool = False) -> DatasetIndex:
    """Index seed 002's zip: `label_data.csv` rows `"bg";"fg_bg";"mask";"depth"` (depth empty or left out: unknown)."""
    collector = _read_table(store, "label_data.csv", ";", 4, lambda f: f, depth_last=True, pairs_only=pairs_only)
    return collector.index("seed002", SEED_DEPTH)


def _bg_first(fields: list[str]) -> str:
    """The bg of a `bg, fg, ...` row; the two are taken the other way round when only the second is named
    like a bg (`fg/fg1.png<TAB>bg/bg1.jpg`: some copies of these sets list fg first)."""
    swapped = "bg" in kinds_named(fields[1]) and "bg" not in kinds_named(fields[0])
    return fields[1] if swapped else fields[0]


def _pick_003(fields: list[str]) -> list[str]:
    return [_bg_first(fields), fields[2], fields[3], fields[4]]


def read_seed003(store: ZipStore, pairs_only: bool = False) -> DatasetIndex:
    """Index seed 003's zips: `labels.txt` rows `bg<TAB>fg<TAB>fg_bg<TAB>mask<TAB>depth` (fg is not used)."""
    return _read_table(store, "labels.txt", "\t", 5, _pick_003, pairs_only=pairs_only).index("seed003", SEED_DEPTH)


def _depth_of_000(fg_bg: str) -> str:
    """Seed 000 keeps depth under the fg_bg file name in `fg_bg_depth/`, beside the fg_bg folder."""
    folders, _, file = fg_bg.replace("\\", "/").rpartition("/")
    return "/".join([*folders.split("/")[:-1], "fg_bg_depth", file]) if folders else f"fg_bg_depth/{file}"


def _pick_000(fields: list[str]) -> list[str]:
    return [_bg_first(fields), fields[2], fields[3], _depth_of_000(fields[2])]


def read_seed000(store: ZipStore, pairs_only: bool = False) -> DatasetIndex:
    """Index seed 000's zip: `labels.txt` rows `bg<TAB>fg<TAB>fg_bg<TAB>mask`, depth found by the fg_bg name."""
    return _read_table(store, "labels.txt", "\t", 4, _pick_000, pairs_only=pairs_only).index("seed000", SEED_DEPTH)


_KIND_WORDS = {
    "depth": {"depth", "depths"},
    "mask": {"mask", "masks"},
    "fg_bg": {"fgbg", "overlay", "overlays", "overlayed", "overlaid", "composite", "composites"},
    "bg": {"bg", "bgs", "background", "backgrounds"},
}


def kinds_named(text: str) -> set[str]:
    """The kinds a zip, folder or file name points to: `fg_bg_mask` → {mask}, `Fg-Bg` → {fg_bg}, `bg_images` →
    {bg}; depth and mask outrank fg_bg, which outranks bg; an empty set says nothing."""
    words = set(re.split(r"[^a-z]+", text.lower()))
    kinds = {kind for kind, names in _KIND_WORDS.items() if words & names}
    if {"fg", "bg"} <= words:
        kinds.add("fg_bg")
    for strong, weak in (({"depth", "mask"}, {"fg_bg", "bg"}), ({"fg_bg"}, {"bg"})):
        if kinds & strong:
            kinds -= weak
    return kinds


def _kind_of_entry(name: str, zip_kinds: set[str], file_kinds: set[str]) -> tuple[set[str], int]:
    """Kinds of one entry: from its zip's name, else its innermost telling folder, else its zip's file names.
    Also returns how many leading path parts the kind folder takes (dropped from the pairing name)."""
    if len(zip_kinds) == 1:
        return zip_kinds, 0
    folders = name.split("/")[:-1]
    for depth in range(len(folders), 0, -1):
        kinds = kinds_named(folders[depth - 1])
        if kinds:
            return kinds, depth
    return file_kinds, 0


_NAME_KINDS = "name each zip or folder after its kind (bg, fg_bg, mask, depth), or set data.layout (predict: layout=)"


def _classify(store: ZipStore, i: int) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """The image entries of zip `i` by kind, as (name without the kind folder, entry name) pairs (a name's leading
    `/` is not a folder), and the images in formats not read (OTHER_IMAGES) among its fg_bg entries (each would be
    a sample left out)."""
    images = [n for n in store.listing[i] if _is_image(n)]
    zip_kinds = kinds_named(store.paths[i].stem)
    folders = {n.lstrip("/").rsplit("/", 1)[0] for n in images if "/" in n.lstrip("/")}
    if len(set().union(*(_kind_of_entry(f"{f}/", set(), set())[0] for f in folders))) > 1:
        zip_kinds = set()  # its folders tell several kinds apart: the zip's name (e.g. depth_set.zip) is not a kind
    file_kinds = set().union(*(kinds_named(_stem(n.rsplit("/", 1)[-1])) for n in images[:100]))
    entries: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for name in images:
        kinds, depth = _kind_of_entry(name.lstrip("/"), zip_kinds, file_kinds)
        if len(kinds) != 1:
            said = " and ".join(sorted(kinds)) if kinds else "no kind"
            raise DataError(store.paths[i], name, f"its names point to {said}; {_NAME_KINDS}", "layout")
        parts = name.lstrip("/").split("/")
        entries[next(iter(kinds))].append(("/".join(parts[: max(depth - 1, 0)] + parts[depth:]), name))
    others = [n for n in store.listing[i] if n.lower().endswith(OTHER_IMAGES) and _user_file(n)]
    unread = [n for n in others if _kind_of_entry(n.lstrip("/"), zip_kinds, set())[0] == {"fg_bg"}]
    return entries, unread


def _pairing_names(
    store: ZipStore, classified: dict[int, dict[str, list[tuple[str, str]]]], collector: _Collector
) -> dict[str, dict[str, str]]:
    """kind → pairing name → key over the zips `classified` (zip number → `_classify`'s entries); two entries of
    one kind under one pairing name are a problem."""
    groups: dict[str, dict[str, str]] = {k: {} for k in KINDS}
    for i, entries in classified.items():
        for kind, pairs in entries.items():
            common = _common_folder([p for p, _ in pairs])
            for path, name in pairs:
                pairing = _stem(path[len(common) :].lstrip("/"))
                if pairing in groups[kind]:
                    other = store.name(groups[kind][pairing])
                    collector.problem(i, name, f"same {kind} name as {other}", "layout")
                groups[kind][pairing] = store.key(name, i)
    return groups


def read_by_kind(store: ZipStore, pairs_only: bool = False) -> DatasetIndex:
    """Index zips holding one kind each (or one folder per kind), pairing by file name without extension, relative
    to the kind's folder; zips that each hold bg and fg_bg pair within themselves (an id an earlier zip used is read
    as `<zip stem>/<id>`).

    bg pairs by the same name, else by the longest bg name that starts the sample's name up to a separator
    (`bg12` for `bg12_fg3_7`, `Image_1` for `Image_1_2_3`). Without any depth entry every sample's depth is unknown;
    with `pairs_only` (predict's inputs) masks may be absent the same way, and a sample's missing mask or depth too.
    An image among the fg_bg entries in a format not read (OTHER_IMAGES: `a.gif`) is a problem; other files are
    not samples (`notes.txt`).
    """
    collector, told = _Collector(store), []
    classified = {}
    for i in range(len(store.paths)):
        classified[i], unread = _classify(store, i)
        told.append(f"{store.paths[i].name}: {', '.join(k for k, v in classified[i].items() if v) or 'no images'}")
        told[-1] += f" ({unread[0]} is in a format not read)" if unread else ""
        for name in unread:
            what = f"an image in a format not read (only {' '.join(IMAGE_EXTENSIONS)}): its sample would be left out"
            collector.problem(i, name, what, "layout")
    own = len(classified) > 1 and all(entries["bg"] and entries["fg_bg"] for entries in classified.values())
    for part in [{i: c} for i, c in classified.items()] if own else [classified]:
        groups = _pairing_names(store, part, collector)
        for kind in ("bg", "fg_bg") if pairs_only else ("bg", "fg_bg", "mask"):
            if not groups[kind]:
                found = "; ".join(told[i] for i in part)
                where = store.paths[next(iter(part))] if own else store.describe()
                raise DataError(where, None, f"no {kind} images found ({found}); {_NAME_KINDS}", "layout")
        _pair_by_name(store, groups, collector, pairs_only)
    return collector.index("by_kind", SEED_DEPTH)


def _common_folder(paths: list[str]) -> str:
    """The longest folder that holds every one of `paths` (`a/b` for `a/b/x.jpg` and `a/b/c/y.jpg`; '' for none)."""
    common = paths[0].split("/")[:-1] if paths else []
    for path in paths[1:]:
        common = common[: _common_prefix(common, path.split("/")[:-1])]
    return "/".join(common)


def _common_prefix(a: list[str], b: list[str]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def _bg_for(name: str, bgs: dict[str, str]) -> str | None:
    if name in bgs:
        return bgs[name]
    cuts = [m.start() for m in re.finditer(r"[^0-9A-Za-z]", name)]
    return next((bgs[name[:c]] for c in reversed(cuts) if name[:c] in bgs), None)


def _pair_by_name(
    store: ZipStore, groups: dict[str, dict[str, str]], collector: _Collector, pairs_only: bool = False
) -> None:
    fg_bg, mask, depth, bgs = groups["fg_bg"], groups["mask"], groups["depth"], groups["bg"]
    for kind, names in (("mask", mask), ("depth", depth)):
        for name in sorted(set(names) - set(fg_bg)):
            key = names[name]
            collector.problem(store.locate(key)[0], store.name(key), f"{kind} without a fg_bg partner", "missing")
    for name in sorted(fg_bg):
        key = fg_bg[name]
        home = store.locate(key)[0]
        partners = {"bg": _bg_for(name, bgs), "mask": mask.get(name), "depth": depth.get(name)}
        needed = [kind for kind in partners if kind == "bg" or (groups[kind] and not pairs_only)]
        missing = [kind for kind in needed if partners[kind] is None]
        for kind in missing:  # a kind with no entry at all (depth; predict's masks) is unknown for every sample
            collector.problem(home, store.name(key), f"no {kind} partner (nothing named like {name})", "missing")
        if not missing:
            collector.add_keys(home, name, [partners["bg"], key, partners["mask"], partners["depth"]])


READERS: dict[str, Callable[[ZipStore, bool], DatasetIndex]] = {  # (store, pairs_only) → index
    "canonical": read_canonical,
    "seed002": read_seed002,
    "seed003": read_seed003,
    "seed000": read_seed000,
    "by_kind": read_by_kind,
}


def _labels_width(store: ZipStore) -> int:
    _, key = _manifests(store, "labels.txt")[0]
    rows = _rows(store, key, "\t")
    return len(rows[0][1]) if rows else 0


def detect_layout(store: ZipStore) -> str:
    """The layout of the zips in `store`, from the manifests they hold (README "Dataset layouts")."""
    found = {
        name
        for name, manifests in (
            ("canonical", ("manifest.csv", "meta.json")),  # meta.json alone: a canonical zip that lost its manifest
            ("seed002", ("label_data.csv",)),
            ("labels", ("labels.txt",)),
        )
        if any(_manifests(store, manifest) for manifest in manifests)
    }
    if "labels" in found:
        width = _labels_width(store)
        if width not in (4, 5):
            problem = f"expected 4 (seed 000) or 5 (seed 003) columns, got {width}"
            raise DataError(store.describe(), "labels.txt", problem, "layout")
        found = (found - {"labels"}) | {"seed000" if width == 4 else "seed003"}
    if len(found) > 1:
        raise DataError(
            store.describe(),
            None,
            f"manifests of several layouts ({', '.join(sorted(found))}): the zips of one dataset share one layout; "
            "data.layout= (predict: layout=) picks one where a zip holds several",
            "layout",
        )
    return found.pop() if found else "by_kind"


def load_index(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    layout: str | None = None,
    depth_inverted: bool | None = None,
    strict: bool = True,
    require_samples: bool = True,
    pairs_only: bool = False,
) -> DatasetIndex:
    """Open one zip or several and index them as one dataset.

    `layout`: a key of READERS, or None to detect it; `depth_inverted`: override the layout's default (None keeps
    it); `strict`: raise the first problem (with the count of all), else leave problem samples out. A dataset with
    no samples is an error unless `require_samples` is False (`mdeas.data.check` lists the problems that left none).
    `pairs_only` (predict's inputs) needs only each sample's bg and fg_bg: a mask or depth missing (and in a
    `by_kind` set any mask at all) leaves the sample's `mask` or `depth` None.
    Logs one INFO line: layout, sample count and how manifest names were resolved.
    """
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not paths:
        raise DataError("data.path", None, "no zip given")
    store = ZipStore(paths)
    if layout is not None and layout not in READERS:
        raise DataError(store.describe(), None, f"unknown layout {layout!r}; one of {', '.join(READERS)}", "layout")
    name = layout or detect_layout(store)
    index = READERS[name](store, pairs_only)
    if depth_inverted is not None:
        index.depth = replace(index.depth, inverted=flag(depth_inverted, "depth_inverted"))
    log.info(
        "%s: layout %s, %d samples, %d problems; %s",
        store.describe(),
        name,
        len(index.samples),
        len(index.problems),
        index.resolution,
    )
    if strict and index.problems:
        first = index.problems[0]
        if len(index.problems) > 1:
            more = f" ({len(index.problems)} problems in all; python -m mdeas.data.check lists them)"
            raise DataError(first.source, first.entry, f"{first.problem}{more}", first.category)
        raise first
    if require_samples and not index.samples:
        raise DataError(store.describe(), None, "dataset has no samples", "layout")
    check_every_zip_read(index)
    return index


def check_every_zip_read(index: DatasetIndex) -> None:
    """DataError naming a zip of a dataset of several that no sample reads from and no problem names (a zip of
    another layout than the one read, which it would leave out unsaid)."""
    store = index.store
    if len(store.paths) == 1 or not index.samples:  # one zip: nothing to leave out (no pass over the samples)
        return
    read = {store.locate(key)[0] for s in index.samples for key in (s.bg, s.fg_bg, s.mask, s.depth) if key}
    named = {str(problem.source) for problem in index.problems}
    for i, path in enumerate(store.paths):
        if i not in read and str(path) not in named:
            what = f"no sample of layout {index.layout} reads from this zip: the zips of one dataset share one layout"
            raise DataError(path, None, what, "layout")
