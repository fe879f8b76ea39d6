"""Writes that never leave a half-written file (checkpoints, exports, results, datasets): write a fresh file
beside the target, fsync it, then rename it over the target."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

_RANDOM_HEX = 12  # hex digits naming a tmp file: `.<name>.<random>.tmp`
_STARTED = time.time()  # a tmp file last written before this process began has no running writer (it was killed)


def atomic_write(path: str | Path, write: Callable[[Path], object], durable: bool = True) -> None:
    """Call `write(tmp)` to fill a new file `.<name>.<random>.tmp` beside `path`, fsync it and rename it over
    `path` (atomic on POSIX). Writers of one path at the same time (processes of one run) each fill their own file;
    the last rename wins.

    On any failure `path` keeps its previous content and the tmp file is removed; an OSError about the tmp file
    (e.g. a folder that cannot be written, a full disk) is re-raised naming `path`. After a write, the tmp files
    of `path` that a killed process left (last written before this process began) are removed. `durable=False`
    skips the fsync and that clean-up (a listing of the folder): for many small files that can be made again
    (predict's outputs), still never half-written.
    """
    path = Path(path)
    prefix = f".{path.name}."
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{prefix}{uuid.uuid4().hex[:_RANDOM_HEX]}.tmp")
        open(tmp, "xb").close()  # fails here, with an OSError, where `write` might raise something vaguer
        write(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _remove_stale(path, prefix)
    except OSError as e:
        about = None if e.filename is None else Path(e.filename)
        ours = about is None or (about.parent == path.parent and about.name.startswith(prefix))  # the tmp file
        raise OSError(e.errno, e.strerror or str(e), str(path if ours else e.filename)) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _remove_stale(path: Path, prefix: str) -> None:
    """Remove the `<prefix><random>.tmp` files beside `path` (its own, not another path's that shares the prefix)
    last written before this process began."""
    pattern = glob.escape(prefix) + "[0-9a-f]" * _RANDOM_HEX + ".tmp"
    for leftover in glob.glob(os.path.join(glob.escape(str(path.parent)), pattern)):
        with contextlib.suppress(OSError):
            if os.stat(leftover).st_mtime < _STARTED:
                os.unlink(leftover)


def write_json(path: str | Path, data: object) -> None:
    """`data` as indented JSON at `path`, written atomically (a reader finds the old file or the whole new one)."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))


@contextlib.contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Create the folder `path` (and its missing parents) for a program's outputs, before its work, so that an
    unwritable place fails at once naming itself; if the work then fails, the folders made here are removed again
    while still empty (a failed run leaves no empty folder behind; what it did write stays)."""
    path = Path(path)
    made = [folder for folder in (path, *path.parents) if not folder.exists()]  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        tempfile.TemporaryFile(dir=path).close()  # a folder that exists but takes no file (read-only, immutable)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        yield path
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only an empty folder goes
        raise
