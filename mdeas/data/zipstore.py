"""Read entries straight from one or more zips, never extracting; one file handle per process.

Entries are addressed by *keys*: the entry name itself, or `<zip index>::<name>` for a name that an earlier zip
of the same store also holds (two generated zips both have `fg_bg/b00000_f00.jpg`). `NameResolver` maps the names
written in a manifest to keys, tolerating folder prefixes that the manifest has and the zip lacks, or the reverse.

`ZipDirectory` reads a zip's central directory into a few flat arrays (name, local-header offset, sizes, method,
flags, CRC per entry) instead of one `zipfile.ZipInfo` object per entry: a 400k-entry zip then indexes in about a
second and a hundred MB, and a DataLoader worker reads entries through its own plain file handle without parsing the
directory again.

Reads are bounded (README "Security"): an entry whose declared (or packed) size is above a limit, or whose declared
size is over 1 MiB with a compression ratio above a limit, is refused before a byte of it is read; its
local header must agree with the directory (name, method, sizes) and its data must lie between its header and the
next entry; deflated data never inflates past its declared size. Indexing refuses entries that overlap or lie past
the central directory, and names that appear twice. Defaults: 256 MiB and 100:1, raised by the environment
variables MDEAS_MAX_ENTRY_MB and MDEAS_MAX_RATIO (or by `ZipStore`'s arguments).

A zip given by URL (`http(s)://`, `s3://`, `gs://`) is read the same way through a `mdeas.data.remote.RemoteFile`:
range requests for the end records, the directory and each entry, never the whole file.
"""

from __future__ import annotations

import hashlib
import os
import struct
import unicodedata
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mdeas.data.errors import DataError, printable
from mdeas.data.remote import RemoteError, RemoteFile, ZipURL, open_source, zip_location

_SEP = "::"
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header
_MAX_COMMENT = 0xFFFF
_UTF8_NAMES, _ENCRYPTED, _DESCRIPTOR = 0x800, 0x1, 0x8
_STORED, _DEFLATED = 0, 8
_MOST_AROUND_DATA = _LOCAL.size + 2 * 0xFFFF + 24  # bytes: local header, longest name and extra, data descriptor
_METHODS = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES encryption"}
MAX_ENTRY_MB = 256.0  # per entry: 5× the largest manifest (the seed scheme's 400k rows: 48 MiB), 10× a 12-MP 16-bit PNG
MAX_RATIO = 100.0  # stored / packed size; images are 1.0-1.2 (JPEG, PNG are compressed already), manifests 8-13
RATIO_FROM = 1 << 20  # bytes: entries smaller than this are never refused for their ratio
MIB = 1 << 20


class BadZip(Exception):
    """A zip whose directory or entry cannot be read (the message says why; `entry` names the entry, if one)."""

    def __init__(self, message: str, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry


def no_file(path: Path) -> str:
    """Why `path`, not a file, cannot be read: it is a folder, or nothing is there."""
    return "a folder, not a file" if path.is_dir() else "no such file"


def read_file(path: Path) -> bytes:
    """The bytes of a file outside a zip, under the entries' MDEAS_MAX_ENTRY_MB limit: DataError naming the file
    when it is missing or larger (read nothing)."""
    if not path.is_file():
        raise DataError(path, "", no_file(path))
    limit = env_limit("MDEAS_MAX_ENTRY_MB", MAX_ENTRY_MB)
    if path.stat().st_size > limit * MIB:
        size = f"{path.stat().st_size / MIB:.1f} MiB"
        raise DataError(path, "", f"refused: {size}, above the {limit:g} MiB limit (MDEAS_MAX_ENTRY_MB)", "limit")
    return path.read_bytes()


class OverLimit(BadZip):
    """An entry refused for its declared size or compression ratio (the message names the limit)."""


def env_limit(name: str, default: float) -> float:
    """The positive number in environment variable `name`, else `default`; DataError naming the variable when it
    holds something else (`inf` switches a limit off)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise DataError(name, None, f"must be a positive number (or inf), got {text!r}", "limit")
    return value


def _zip64_extra(extra: bytes, fields: list[int]) -> list[int]:
    """Replace the 0xFFFFFFFF fields of (size, compressed size, offset) by their values in the zip64 extra."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, pos)
        if kind == 1:
            values = iter(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            return [next(values, field) if field == 0xFFFFFFFF else field for field in fields]
        pos += 4 + length
    return fields


class ZipDirectory:
    """The file entries of one zip: `names` in directory order (`\\` read as `/`), `row` (name → position) and,
    per entry, its local header's offset, compressed and stored sizes, compression method, flags and CRC-32."""

    def __init__(self, f: BinaryIO) -> None:
        _, size, offset, concat = self._end(f)  # the entry count is not trusted (see below)
        self.directory_at = offset + concat  # where the entries' data must end
        f.seek(self.directory_at)
        data = f.read(size)
        if len(data) != size:
            raise BadZip("truncated central directory")
        self.names: list[str] = []
        self.offsets, self.packed, self.sizes = array("Q"), array("Q"), array("Q")
        self.methods, self.crcs, self.flags = array("H"), array("I"), array("H")
        name_bytes = array("Q")
        pos = 0
        while pos < len(data):  # by the directory's size, as zipfile does: some writers wrap a count above 65,535
            if pos + _CENTRAL.size > len(data):
                raise BadZip("truncated central directory")
            fields = _CENTRAL.unpack_from(data, pos)
            if fields[0] != b"PK\x01\x02":
                raise BadZip("bad magic number for central directory")
            _, _, _, flags, method, _, _, crc, packed, size, name_len, extra_len, comment_len, *_, header = fields
            name_at = pos + _CENTRAL.size
            raw = data[name_at : name_at + name_len]
            pos = name_at + name_len + extra_len + comment_len
            name = raw.decode("utf-8" if flags & _UTF8_NAMES else "cp437").replace("\\", "/")  # some Windows tools
            if name.endswith("/"):
                continue
            if 0xFFFFFFFF in (size, packed, header):
                size, packed, header = _zip64_extra(
                    data[name_at + name_len : name_at + name_len + extra_len], [size, packed, header]
                )
            self.names.append(name)
            self.offsets.append(header + concat)
            self.packed.append(packed)
            self.sizes.append(size)
            self.methods.append(method)
            self.crcs.append(crc)
            self.flags.append(flags)
            name_bytes.append(name_len)
        self.row = {name: i for i, name in enumerate(self.names)}
        if len(self.row) != len(self.names):
            twice = next(name for i, name in enumerate(self.names) if self.row[name] != i)
            raise BadZip("appears twice in the directory", twice)
        self.ends = self._ends(name_bytes)

    def _ends(self, name_bytes: array) -> array:
        """Per entry, where its data must end: the next entry's local header, or the central directory. Raises
        BadZip when an entry's header, name and packed data (at least) lie past the central directory or run into
        the next entry's header."""
        if not self.names:
            return array("Q")
        offsets, packed = np.frombuffer(self.offsets, np.uint64), np.frombuffer(self.packed, np.uint64)
        least = np.uint64(_LOCAL.size) + np.frombuffer(name_bytes, np.uint64)
        past = np.flatnonzero((offsets > self.directory_at) | (packed > self.directory_at))  # no overflow below
        least += offsets + packed
        past = past if len(past) else np.flatnonzero(least > self.directory_at)
        if len(past):
            i = int(past[0])
            raise BadZip(f"lies past the central directory ({packed[i]} bytes at {offsets[i]})", self.names[i])
        order = np.argsort(offsets, kind="stable")
        ends = np.full(len(offsets), self.directory_at, np.uint64)
        ends[order[:-1]] = offsets[order[1:]]
        over = np.flatnonzero(least > ends)
        if len(over):
            i = int(over[0])
            j = next(int(k) for k in order if offsets[k] == ends[i] and k != i)
            raise BadZip(f"overlaps entry {printable(self.names[j], 300)}", self.names[i])
        return array("Q", ends.tobytes())

    @staticmethod
    def _end(f: BinaryIO) -> tuple[int, int, int, int]:
        """(entry count, directory size, directory offset, bytes prepended to the zip) from the end records."""
        f.seek(0, os.SEEK_END)
        length = f.tell()
        tail_at = max(0, length - _END.size - _MAX_COMMENT)
        f.seek(tail_at)
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _END.size > len(tail):
            raise BadZip("no end of central directory record")
        _, _, _, _, count, size, offset, _ = _END.unpack_from(tail, at)
        end_at = tail_at + at
        locator = tail[at - _END64_LOCATOR.size : at - _END64_LOCATOR.size + 4] if at >= _END64_LOCATOR.size else b""
        if locator == b"PK\x06\x07":  # zip64: its end record comes right before the locator
            end_at -= _END64_LOCATOR.size + _END64.size
            f.seek(end_at)
            record = f.read(_END64.size)
            if len(record) != _END64.size or record[:4] != b"PK\x06\x06":
                raise BadZip("bad zip64 end of central directory record")
            *_, count, size, offset = _END64.unpack(record)
        concat = end_at - size - offset
        if concat < 0:
            raise BadZip("central directory outside the file")
        return count, size, offset, concat

    def span(self, i: int) -> tuple[int, int]:
        """(first byte, end) of what reading entry `i` touches at most: its local header, name, extra field, data
        and data descriptor, up to the next entry's header or the central directory."""
        start = self.offsets[i]
        return start, min(self.ends[i], start + self.packed[i] + _MOST_AROUND_DATA)

    def read(self, f: BinaryIO, i: int, max_bytes: float = MAX_ENTRY_MB * MIB, max_ratio: float = MAX_RATIO) -> bytes:
        """The stored bytes of entry `i`: decompressed and checked against its size and CRC-32. OverLimit, before
        anything is read, for a declared (or packed) size above `max_bytes`, or a declared size over 1 MiB more
        than `max_ratio` times its packed size."""
        size, packed = self.sizes[i], self.packed[i]
        if max(size, packed) > max_bytes:
            big = max(size, packed) / MIB
            raise OverLimit(f"declares {big:.1f} MiB, above the {max_bytes / MIB:g} MiB limit (MDEAS_MAX_ENTRY_MB)")
        if size > RATIO_FROM and size > max_ratio * packed:
            ratio = f"{size / MIB:.1f} MiB from {packed} bytes"
            raise OverLimit(f"declares {ratio}, above the {max_ratio:g}:1 ratio limit (MDEAS_MAX_RATIO)")
        if self.flags[i] & _ENCRYPTED:
            raise BadZip("encrypted entry")
        f.seek(self.offsets[i])
        header = f.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise BadZip("bad local file header")
        _, _, flags, method, _, _, _, local_packed, local_size, name_len, extra_len = _LOCAL.unpack(header)
        local = f.read(name_len + extra_len)
        self._agree(i, local[:name_len], method, flags, local_size, local_packed, local[name_len:])
        if self.offsets[i] + _LOCAL.size + name_len + extra_len + packed > self.ends[i]:
            raise BadZip("its data runs into the next entry")
        data = f.read(packed)
        if len(data) != packed:
            raise BadZip("truncated entry data")
        if self.methods[i] == _DEFLATED:
            data = _inflate(data, size)
        elif self.methods[i] != _STORED:
            method = _METHODS.get(self.methods[i], f"method {self.methods[i]}")
            raise BadZip(f"compressed with {method}, which is not read: zip it again with deflate or store")
        if len(data) != size:
            raise BadZip(f"{len(data)} bytes where the directory says {size}")
        if zlib.crc32(data) != self.crcs[i]:
            raise BadZip("Bad CRC-32: the data differs from what was written")
        return data

    def _agree(self, i: int, name: bytes, method: int, flags: int, size: int, packed: int, extra: bytes) -> None:
        """BadZip unless the local header of entry `i` has the directory's name, method and sizes (sizes are not
        in a local header whose data descriptor follows the data)."""
        encoding = "utf-8" if self.flags[i] & _UTF8_NAMES else "cp437"
        if name.decode(encoding, "replace").replace("\\", "/") != self.names[i]:
            raise BadZip(f"local header names {name.decode('cp437')!r}")
        if method != self.methods[i]:
            raise BadZip(f"local header says method {method}, the directory {self.methods[i]}")
        if not flags & _DESCRIPTOR:
            size, packed = _zip64_extra(extra, [size, packed])
            if (size, packed) != (self.sizes[i], self.packed[i]):
                raise BadZip(
                    f"local header says {size} bytes ({packed} packed), the directory {self.sizes[i]} "
                    f"({self.packed[i]} packed)"
                )


def _inflate(packed: bytes, size: int) -> bytes:
    """Raw deflate data → at most `size` bytes; BadZip when it is damaged, ends early or would inflate past `size`."""
    inflater = zlib.decompressobj(-15)
    try:
        data = inflater.decompress(packed, size + 1)
    except zlib.error as e:
        raise BadZip(f"bad deflate data: {e}") from None
    if len(data) > size:
        raise BadZip(f"inflates past its declared {size} bytes")
    if not inflater.eof:
        raise BadZip("bad deflate data: the stream ends early")
    return data


def _entries_hash(directory: ZipDirectory) -> str:
    """16 hex digits of a hash of a zip's entry names, sizes and CRC-32s."""
    names = "\0".join(directory.names).encode()
    return hashlib.sha1(names + directory.sizes.tobytes() + directory.crcs.tobytes()).hexdigest()[:16]


class ZipStore:
    """A read-only view of the file entries of several zips.

    `read` opens (and caches) a file handle per process, so a store forked or pickled into DataLoader workers
    opens its own handles there. `paths` may be URLs (`mdeas.data.remote.zip_location`): each is then a ZipURL
    read by range requests. `max_entry_mb` (MiB) and `max_ratio` bound each read (`ZipDirectory.read`); None
    takes MDEAS_MAX_ENTRY_MB and MDEAS_MAX_RATIO from the environment, else 256 MiB and 100:1.
    """

    def __init__(
        self, paths: Sequence[str | os.PathLike], max_entry_mb: float | None = None, max_ratio: float | None = None
    ) -> None:
        self.paths: list[Path | ZipURL] = [zip_location(p) for p in paths]
        same = [str(p.resolve()) if isinstance(p, Path) else str(p) for p in self.paths]
        for i, key in enumerate(same):
            if key in same[:i]:
                raise DataError(self.paths[i], None, "given twice in the list of zips (its samples would count twice)")
        if max_entry_mb is None:
            max_entry_mb = env_limit("MDEAS_MAX_ENTRY_MB", MAX_ENTRY_MB)
        self.max_bytes = max_entry_mb * MIB
        self.max_ratio = env_limit("MDEAS_MAX_RATIO", MAX_RATIO) if max_ratio is None else max_ratio
        self.owner: dict[str, int] = {}  # name → the first zip holding it
        self.shadowed: set[str] = set()  # keys of names that an earlier zip also holds
        self.directories: list[ZipDirectory] = []
        self._handles: dict[int, BinaryIO] = {}
        self._pid = os.getpid()
        for i, path in enumerate(self.paths):
            try:
                self.directories.append(ZipDirectory(self._handle(i)))
            except RemoteError as e:
                raise DataError(path, None, f"cannot read ({e})", "read") from None
            except DataError:
                raise  # already one line naming the file (e.g. no such file)
            except (BadZip, OSError, ValueError, OverflowError, struct.error) as e:
                raise DataError(path, getattr(e, "entry", None), f"not a readable zip ({e})", "read") from None
            for name in self.directories[i].names:
                if name in self.owner:
                    self.shadowed.add(f"{i}{_SEP}{name}")
                else:
                    self.owner[name] = i

    @property
    def listing(self) -> list[list[str]]:
        """File entries of each zip, in directory order."""
        return [d.names for d in self.directories]

    @staticmethod
    def _open(path: Path | ZipURL) -> BinaryIO | RemoteFile:
        if isinstance(path, ZipURL):
            return RemoteFile(open_source(path))
        if not path.is_file():
            raise DataError(path, None, no_file(path), "read")
        return open(path, "rb")  # kept open until `close`, one per zip and process

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

    def source(self, key: str) -> Path | ZipURL:
        """The zip holding entry `key`."""
        return self.paths[self.locate(key)[0]]

    def name(self, key: str) -> str:
        """The entry name of `key` inside its zip."""
        return self.locate(key)[1]

    def identity(self, index: int) -> list[str | int]:
        """What zip `index`'s content is known by: [resolved path, bytes, modification time in ns, a hash of its
        entries' names, sizes and CRC-32s] (a zip copied over another of the same size and time still differs), or
        for a URL [URL, bytes, ETag or Last-Modified as the server gives it]."""
        path = self.paths[index]
        if isinstance(path, ZipURL):
            handle = self._handle(index)
            return [str(path), handle.size, handle.version]
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns, _entries_hash(self.directories[index])]

    def contents(self) -> list[str]:
        """Per zip, a hash of its entries' names, sizes and CRC-32s (16 hex digits): what it holds, wherever it lies
        and whatever path names it."""
        return [_entries_hash(directory) for directory in self.directories]

    def close(self) -> None:
        """Close this process's file handles (a later read opens them again)."""
        for handle in getattr(self, "_handles", {}).values():
            handle.close()
        self._handles = {}

    __del__ = close

    def _handle(self, index: int) -> BinaryIO | RemoteFile:
        if os.getpid() != self._pid:  # forked into a worker: never share the parent's file offsets
            self.close()  # the worker's copies of the parent's descriptors
            self._pid = os.getpid()
        if index not in self._handles:
            self._handles[index] = self._open(self.paths[index])
        return self._handles[index]

    def read(self, key: str) -> bytes:
        """Bytes of entry `key`; a missing or damaged entry raises DataError naming zip and entry."""
        if key not in self:
            raise DataError(self.describe(), key, "entry not found", "missing")
        index, name = self.locate(key)
        directory, row = self.directories[index], self.directories[index].row[name]
        try:
            handle = self._handle(index)
            if isinstance(handle, RemoteFile) and directory.packed[row] <= self.max_bytes:
                handle.prefetch(*directory.span(row))  # one request for the reads below
            return directory.read(handle, row, self.max_bytes, self.max_ratio)
        except OverLimit as e:
            raise DataError(self.paths[index], name, f"refused: {e}", "limit") from None
        except (BadZip, OSError, struct.error) as e:
            raise DataError(self.paths[index], name, f"cannot read entry ({e})", "read") from None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}


def normalise_name(name: str) -> str:
    """A manifest name as a zip entry name: `\\` → `/`, no leading `./` or `/`, no surrounding blanks."""
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def fold(name: str) -> str:
    """`name` as compared when no entry has it exactly: in one Unicode form (NFC: macOS writes é as e and an
    accent) and one case (Windows and macOS ignore it, so `a.JPG` and `a.jpg` name one file there)."""
    return unicodedata.normalize("NFC", name).casefold()


def _common_suffix(a: list[str], b: list[str]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
        k += 1
    return k


class NameResolver:
    """Maps manifest names to store keys, learning *rules* (drop the first `d` folders of the manifest name, then
    put `prefix` before it) from the first name each rule fits, and trying known rules first.

    A name matches an entry when one is a path suffix of the other (`data_1/Fg-Bg/x.jpg` ↔ `Fg-Bg/x.jpg`, either
    way round), after `normalise_name`, compared as `fold` gives them. A longer shared suffix wins over a shorter;
    then one that is the same without folding; then an entry in the zip that a dropped folder names
    (`data_2/Fg-Bg/x.jpg` → data_2.zip, for parts that reuse file names), then one in the manifest's own zip
    (`home`); two equally good entries are an error.
    """

    def __init__(self, store: ZipStore) -> None:
        self.store = store
        self.rules: dict[tuple[int, str], int] = {(0, ""): 0}  # rule → names it resolved; insertion = try order
        self.normalised = 0
        self.folded = 0  # names found only when compared in one case and Unicode form
        self._by_file: dict[str, list[tuple[int, str]]] | None = None
        self._stems = {path.stem: i for i, path in enumerate(store.paths)}

    def _lookup(self, name: str, home: int | None) -> str | None:
        """The key of entry `name` in zip `home` only (a rule learnt on one zip must not read another zip's files
        for this one's names; `_search` still looks everywhere), or in any zip when `home` is None."""
        return self.store.key(name, home)

    def _zip_named(self, folders: list[str]) -> int | None:
        """The zip whose file name (without extension) is one of `folders`, the innermost first; None if none."""
        return next((self._stems[f] for f in reversed(folders) if f in self._stems), None)

    def resolve(self, name: str, home: int | None = None) -> str | None:
        """The key of manifest name `name`, or None when no entry matches; DataError when several match."""
        clean = normalise_name(name)
        self.normalised += clean != name
        parts = clean.split("/")
        for rule in self.rules:
            drop, prefix = rule
            if drop < len(parts):
                named = self._zip_named(parts[:drop])
                key = self._lookup(prefix + "/".join(parts[drop:]), home if named is None else named)
                if key is not None:
                    self.rules[rule] += 1
                    return key
        return self._search(name, parts, home)

    def _search(self, name: str, parts: list[str], home: int | None) -> str | None:
        if self._by_file is None:
            self._by_file = {}
            for i, names in enumerate(self.store.listing):
                for entry in names:
                    self._by_file.setdefault(fold(entry.rsplit("/", 1)[-1]), []).append((i, entry))
        folded = [fold(part) for part in parts]
        scored = []
        for i, entry in self._by_file.get(folded[-1], []):
            found = entry.split("/")
            k = _common_suffix(folded, [fold(part) for part in found])
            if k in (len(parts), len(found)):
                exact = _common_suffix(parts, found) == k
                scored.append(((k, exact, i == self._zip_named(parts[: len(parts) - k]), i == home), i, found, k))
        if not scored:
            return None
        scored.sort(key=lambda s: s[0], reverse=True)
        if len(scored) > 1 and scored[0][0] == scored[1][0]:
            matches = ", ".join("/".join(s[2]) for s in scored[:3])
            raise DataError(self.store.describe(), name, f"matches several entries ({matches})", "missing")
        (_, exact, *_), i, found, k = scored[0]
        self.folded += not exact
        prefix = "/".join(found[: len(found) - k])
        rule = (len(parts) - k, prefix + "/" if prefix else "")
        self.rules[rule] = self.rules.get(rule, 0) + 1
        return self.store.key("/".join(found), i)

    def summary(self) -> str:
        """One line: how many names each rule resolved."""
        done = {rule: n for rule, n in self.rules.items() if n}
        text = ", ".join(f"{n} {_describe(rule)}" for rule, n in done.items()) or "none"
        cleaned = f" ({self.normalised} after removing './', '/' or '\\')" if self.normalised else ""
        folded = f" ({self.folded} in another case or Unicode form)" if self.folded else ""
        return f"{sum(done.values())} names resolved: {text}{cleaned}{folded}"


def _describe(rule: tuple[int, str]) -> str:
    drop, prefix = rule
    said = ([f"without their first {drop} folder(s)"] if drop else []) + ([f"under '{prefix}'"] if prefix else [])
    return " and ".join(said) or "where listed"
