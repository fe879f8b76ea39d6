"""What the configs inside a checkpoint may build. A checkpoint is untrusted data (README "Security"), but mdeas
rebuilds parts from the configs it carries: the model and loss (`load_module`) and, for evaluate and compare, the
data module. Hydra's `instantiate` calls whatever a `_target_` names and OmegaConf resolves `${...}` (including
`oc.create`, which makes new configs), so a checkpoint may name only the parts mdeas' own configs build, by their
exact names, and hold no interpolation (mdeas saves its configs resolved).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import albumentations as A

MODEL_TARGETS = frozenset(
    {
        "mdeas.models.create_model",
        "mdeas.models.refiner.PatchRefiner",
        "mdeas.models.refiner.refined",
        "mdeas.losses.group.LossGroup",
    }
)
"""What conf/model (model/refiner included) and conf/loss build."""
DATA_TARGETS = frozenset({"mdeas.data.datamodule.MaskDepthDataModule", "mdeas.synth.default_set.GeneratedSet"})
"""What conf/data builds, beside its augmentations (any albumentations transform class, by its top-level name)."""


class UntrustedConfig(ValueError):
    """A checkpoint's config that would call code other than mdeas' own parts (the message names it)."""


def _strings_and_targets(config: object) -> Iterator[tuple[str, object]]:
    """("target", value) for every `_target_`, ("text", value) for every other string, in a nest of dicts and
    lists (keys included)."""
    if isinstance(config, dict):
        for key, value in config.items():
            yield "text", str(key)
            yield from [("target", value)] if key == "_target_" else _strings_and_targets(value)
    elif isinstance(config, list | tuple):
        for value in config:
            yield from _strings_and_targets(value)
    elif isinstance(config, str):
        yield "text", config


def _transform(target: object) -> bool:
    """Whether `target` names an albumentations transform class at the package's top level (no attribute path)."""
    if not isinstance(target, str) or not re.fullmatch(r"albumentations\.[A-Za-z_]\w*", target):
        return False
    found = getattr(A, target.split(".", 1)[1], None)
    return isinstance(found, type) and issubclass(found, A.BasicTransform | A.BaseCompose)


def check_buildable(config: object, allowed: frozenset[str], transforms: bool = False) -> None:
    """UntrustedConfig naming what `config` would call beyond `allowed` targets (and, with `transforms`,
    albumentations transform classes), or any `${...}` interpolation it holds."""
    found = list(_strings_and_targets(config))
    interpolations = sorted({text for kind, text in found if kind == "text" and "${" in text})
    if interpolations:
        raise UntrustedConfig(f"its config holds an interpolation ({interpolations[0][:80]}), which building resolves")
    called = [value for kind, value in found if kind == "target"]
    trusted = lambda t: isinstance(t, str) and (t in allowed or (transforms and _transform(t)))  # noqa: E731
    untrusted = sorted({str(t) for t in called if not trusted(t)})
    if untrusted:
        raise UntrustedConfig(
            f"its config would call {', '.join(untrusted)} (a checkpoint may build only mdeas' parts)"
        )
