"""The generated default dataset: made once per set of generator options, then reused from the cache folder."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from mdeas.synth.generate import GENERATOR_VERSION, generate

log = logging.getLogger(__name__)


class GeneratedSet:
    """A canonical dataset zip generated with `options` (conf/synth.yaml: num_samples, image_size, seed, ...).

    `GeneratedSet(**options)(cache_dir)` returns the zip's path under `cache_dir`, generating it on first use; the
    file name hashes the options and the generator version, so changed options make a new set. This is what
    `data.synth` builds: the data module calls it when no `data.path` is given.
    """

    def __init__(self, **options) -> None:
        self.options = dict(options)

    def path(self, cache_dir: str | Path) -> Path:
        """Where the set lives under `cache_dir` (it may not exist yet)."""
        options = {**self.options, "generator": GENERATOR_VERSION}
        key = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
        size = f"{self.options.get('num_samples')}x{self.options.get('image_size')}"
        return Path(cache_dir).expanduser() / f"synth-{size}-{key}.zip"

    def __call__(self, cache_dir: str | Path) -> Path:
        target = self.path(cache_dir)
        if not target.exists():
            log.info("generating the default dataset into %s", target)
            generate(target, **self.options)
        return target
