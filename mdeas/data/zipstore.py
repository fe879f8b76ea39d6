"""Read entries straight from one or more zips, never extracting; one ZipFile handle per process."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from mdeas.data.errors import DataError


class ZipStore:
    """A read-only view of the entries of several zips.

    Entry names are resolved in the order the zips are given; `read` opens (and caches) a handle per process, so
    a store pickled into DataLoader workers opens its own handles there.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [Path(p) for p in paths]
        self.owner: dict[str, int] = {}
        for i, path in enumerate(self.paths):
            for name in self._open_names(path):
                self.owner.setdefault(name, i)
        self._handles: dict[int, zipfile.ZipFile] = {}
        self._pid = os.getpid()

    @staticmethod
    def _open_names(path: Path) -> list[str]:
        if not path.is_file():
            raise DataError(path, None, "no such file")
        try:
            with zipfile.ZipFile(path) as zf:
                return [i.filename for i in zf.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as e:
            raise DataError(path, None, f"not a readable zip ({e})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.owner

    def names(self) -> list[str]:
        """All file entries, in zip order."""
        return list(self.owner)

    def source(self, name: str) -> Path:
        """The zip holding entry `name`."""
        return self.paths[self.owner[name]]

    def _handle(self, index: int) -> zipfile.ZipFile:
        if os.getpid() != self._pid:  # forked into a worker: never share the parent's file offsets
            self._handles, self._pid = {}, os.getpid()
        if index not in self._handles:
            self._handles[index] = zipfile.ZipFile(self.paths[index])
        return self._handles[index]

    def read(self, name: str) -> bytes:
        """Bytes of entry `name`; a missing or damaged entry raises DataError naming zip and entry."""
        if name not in self.owner:
            raise DataError(
                self.paths[0] if len(self.paths) == 1 else ", ".join(map(str, self.paths)), name, "entry not found"
            )
        index = self.owner[name]
        try:
            return self._handle(index).read(name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise DataError(self.paths[index], name, f"cannot read entry ({e})") from None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}
