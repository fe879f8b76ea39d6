"""The generated default dataset: made once per set of generator options and generator code, then reused from the
cache folder."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from mdeas.file_lock import exclusive
from mdeas.fingerprint import code_fingerprint
from mdeas.synth.generate import generate

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent  # the generator's code: any change to it makes a new set


def source_fingerprint(folder: Path | None = None) -> str:
    """A hash (hex, 16 characters) of the names and bytes of the .py files under `folder` (default SOURCE): the
    same for the same code, different after any edit (as a data library fingerprints the function that made a
    cached set)."""
    folder = SOURCE if folder is None else folder
    return code_fingerprint(folder, [path.relative_to(folder).as_posix() for path in sorted(folder.rglob("*.py"))])


class GeneratedSet:
    """A canonical dataset zip generated with `options` (conf/synth.yaml: num_samples, image_size, seed, ...).

    `GeneratedSet(**options)(cache_dir)` returns the zip's path under `cache_dir`, generating it on first use; the
    file name hashes the options and the generator's code (`source_fingerprint`), so changed options or an edited
    generator make a new set instead of reusing a stale one. This is what `data.synth` builds: the data module
    calls it when no `data.path` is given.
    """

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    def path(self, cache_dir: str | Path) -> Path:
        """Where the set lives under `cache_dir` (it may not exist yet)."""
        options = {**self.options, "generator": source_fingerprint()}
        key = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
        size = f"{self.options.get('num_samples')}x{self.options.get('image_size')}"
        return Path(cache_dir).expanduser() / f"synth-{size}-{key}.zip"

    def __call__(self, cache_dir: str | Path) -> Path:
        target = self.path(cache_dir)
        if target.exists():
            return target
        with exclusive(target.with_name(f".{target.name}.lock")):  # two runs started together generate it once
            if not target.exists():
                log.info("generating the default dataset into %s", target)
                generate(target, **self.options)
        return target
