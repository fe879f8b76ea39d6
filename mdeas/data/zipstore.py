"""Read entries straight from one or more zips, never extracting; one ZipFile handle per process.

Entries are addressed by *keys*: the entry name itself, or `<zip index>::<name>` for a name that an earlier zip
of the same store also holds (two generated zips both have `fg_bg/b00000_f00.jpg`). `NameResolver` maps the names
written in a manifest to keys, tolerating folder prefixes that the manifest has and the zip lacks, or the reverse.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from mdeas.data.errors import DataError

_SEP = "::"


class ZipStore:
    """A read-only view of the file entries of several zips.

    `read` opens (and caches) a handle per process, so a store pickled into DataLoader workers opens its own
    handles there.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [Path(p) for p in paths]
        self.owner: dict[str, int] = {}  # name → the first zip holding it
        self.shadowed: set[str] = set()  # keys of names that an earlier zip also holds
        self.listing: list[list[str]] = []  # file entries of each zip, in zip order
        self._handles: dict[int, zipfile.ZipFile] = {}
        self._pid = os.getpid()
        for i, path in enumerate(self.paths):
            self._handles[i] = self._open(path)
            names = [info.filename for info in self._handles[i].infolist() if not info.is_dir()]
            self.listing.append(names)
            for name in names:
                if name in self.owner:
                    self.shadowed.add(f"{i}{_SEP}{name}")
                else:
                    self.owner[name] = i

    @staticmethod
    def _open(path: Path) -> zipfile.ZipFile:
        if not path.is_file():
            raise DataError(path, None, "no such file", "read")
        try:
            return zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise DataError(path, None, f"not a readable zip ({e})", "read") from None

    def describe(self) -> str:
        """The zip paths, comma-separated (for messages about the whole dataset)."""
        return ", ".join(map(str, self.paths))

    def key(self, name: str, zip_index: int | None = None) -> str | None:
        """The key of entry `name` (in zip `zip_index`, or in the first zip holding it); None when absent."""
        if zip_index is None or self.owner.get(name) == zip_index:
            return name if name in self.owner else None
        key = f"{zip_index}{_SEP}{name}"
        return key if key in self.shadowed else None

    def __contains__(self, key: str) -> bool:
        return key in self.owner or key in self.shadowed

    def locate(self, key: str) -> tuple[int, str]:
        """(zip index, entry name) of `key`."""
        if key in self.owner:
            return self.owner[key], key
        index, name = key.split(_SEP, 1)
        return int(index), name

    def source(self, key: str) -> Path:
        """The zip holding entry `key`."""
        return self.paths[self.locate(key)[0]]

    def name(self, key: str) -> str:
        """The entry name of `key` inside its zip."""
        return self.locate(key)[1]

    def _handle(self, index: int) -> zipfile.ZipFile:
        if os.getpid() != self._pid:  # forked into a worker: never share the parent's file offsets
            self._handles, self._pid = {}, os.getpid()
        if index not in self._handles:
            self._handles[index] = self._open(self.paths[index])
        return self._handles[index]

    def read(self, key: str) -> bytes:
        """Bytes of entry `key`; a missing or damaged entry raises DataError naming zip and entry."""
        if key not in self:
            raise DataError(self.describe(), key, "entry not found", "missing")
        index, name = self.locate(key)
        try:
            return self._handle(index).read(name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise DataError(self.paths[index], name, f"cannot read entry ({e})", "read") from None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}


def normalise_name(name: str) -> str:
    """A manifest name as a zip entry name: `\\` → `/`, no leading `./` or `/`, no surrounding blanks."""
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _common_suffix(a: list[str], b: list[str]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
        k += 1
    return k


class NameResolver:
    """Maps manifest names to store keys, learning *rules* (drop the first `d` folders of the manifest name, then
    put `prefix` before it) from the first name each rule fits, and trying known rules first.

    A name matches an entry when one is a path suffix of the other (`data_1/Fg-Bg/x.jpg` ↔ `Fg-Bg/x.jpg`, either
    way round), after `normalise_name`. An entry in the manifest's own zip (`home`) wins over one elsewhere, a
    longer shared suffix over a shorter; two equally good entries are an error.
    """

    def __init__(self, store: ZipStore) -> None:
        self.store = store
        self.rules: dict[tuple[int, str], int] = {(0, ""): 0}  # rule → names it resolved; insertion = try order
        self.normalised = 0
        self._by_file: dict[str, list[tuple[int, str]]] | None = None

    def _lookup(self, name: str, home: int | None) -> str | None:
        return (self.store.key(name, home) if home is not None else None) or self.store.key(name)

    def resolve(self, name: str, home: int | None = None) -> str | None:
        """The key of manifest name `name`, or None when no entry matches; DataError when several match."""
        clean = normalise_name(name)
        self.normalised += clean != name
        parts = clean.split("/")
        for rule in self.rules:
            drop, prefix = rule
            if drop < len(parts):
                key = self._lookup(prefix + "/".join(parts[drop:]), home)
                if key is not None:
                    self.rules[rule] += 1
                    return key
        return self._search(name, parts, home)

    def _search(self, name: str, parts: list[str], home: int | None) -> str | None:
        if self._by_file is None:
            self._by_file = {}
            for i, names in enumerate(self.store.listing):
                for entry in names:
                    self._by_file.setdefault(entry.rsplit("/", 1)[-1], []).append((i, entry))
        scored = []
        for i, entry in self._by_file.get(parts[-1], []):
            found = entry.split("/")
            k = _common_suffix(parts, found)
            if k in (len(parts), len(found)):
                scored.append(((k, i == home), i, found, k))
        if not scored:
            return None
        scored.sort(key=lambda s: s[0], reverse=True)
        if len(scored) > 1 and scored[0][0] == scored[1][0]:
            matches = ", ".join("/".join(s[2]) for s in scored[:3])
            raise DataError(self.store.describe(), name, f"matches several entries ({matches})", "missing")
        _, i, found, k = scored[0]
        prefix = "/".join(found[: len(found) - k])
        self.rules[(len(parts) - k, prefix + "/" if prefix else "")] = 1
        return self.store.key("/".join(found), i)

    def summary(self) -> str:
        """One line: how many names each rule resolved."""
        done = {rule: n for rule, n in self.rules.items() if n}
        text = ", ".join(f"{n} {_describe(rule)}" for rule, n in done.items()) or "none"
        cleaned = f" ({self.normalised} after removing './', '/' or '\\')" if self.normalised else ""
        return f"{sum(done.values())} names resolved: {text}{cleaned}"


def _describe(rule: tuple[int, str]) -> str:
    drop, prefix = rule
    said = ([f"without their first {drop} folder(s)"] if drop else []) + ([f"under '{prefix}'"] if prefix else [])
    return " and ".join(said) or "exact"
