"""A weighted sum of loss terms built from a config, reporting every weighted term by name."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn

from mdeas.config_values import finite_number
from mdeas.losses.terms import TERMS, Term
from mdeas.plain import plain

# output name -> the batch entry it is scored against (mask_coarse: a refined model's coarse mask, upsampled)
TARGETS = {"mask": "mask", "depth": "depth", "mask_coarse": "mask"}
_SPEC_KEYS = {"target", "fn", "weight", "kwargs"}


@dataclass(frozen=True)
class TermSpec:
    """One configured term: ``weight * fn(outputs[target], batch[TARGETS[target]], **kwargs)``."""

    name: str
    target: str
    fn: str
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def func(self) -> Term:
        return TERMS.get(self.fn)


def _named(terms: Any) -> list[tuple[str, Any]]:
    """``(name, spec)`` pairs of a ``{name: spec}`` mapping or a list of specs with a ``name`` key each."""
    if isinstance(terms, Mapping):
        return list(terms.items())
    if isinstance(terms, str) or not isinstance(terms, Iterable):
        raise ValueError(f"loss terms must be a mapping name -> spec or a list of specs, got {type(terms).__name__}")
    pairs = []
    for i, raw in enumerate(terms):
        if not isinstance(raw, Mapping):
            raise ValueError(f"loss term #{i} must be a mapping, got {type(raw).__name__}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"loss term #{i} needs a non-empty string 'name', got {name!r}")
        pairs.append((name, {k: v for k, v in raw.items() if k != "name"}))
    return pairs


def try_term(name: str, fn: str, target: str, kwargs: dict[str, Any]) -> None:
    """Compute the term once on a small made-up batch ([2, 1, 32, 32]), so that a bad option value
    (`kwargs.smooth=abc`, an even SSIM window) is a ValueError naming the term here, not a traceback at the first
    training step (or one that ends a whole sweep)."""
    draw = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 1, 32, 32, generator=draw)
    truth = (torch.rand(2, 1, 32, 32, generator=draw) > 0.5).float()
    valid = None
    if TARGETS[target] == "depth":
        truth, valid = truth * 0.5 + 0.25, torch.ones_like(truth, dtype=torch.bool)
    try:
        TERMS.get(fn)(pred, truth, valid, **kwargs)
    except Exception as e:  # noqa: BLE001 -- whatever the term raises on these options, said in one line
        raise ValueError(f"loss term {name!r}: {fn} with {kwargs} fails: {type(e).__name__}: {e}") from None


LOGIT_TERMS = ("bce", "boundary_bce", "focal", "lovasz_hinge")  # mask terms defined on logits (no sigmoid option)


def check_mask_term(name: str, fn: str, target: str, kwargs: dict[str, Any]) -> None:
    """ValueError naming the term when a mask target meets a term that would score the raw logits: a term with a
    ``sigmoid`` option left false (MSE on logits pulls the background towards the 0 logit, the decision boundary)
    or a depth term without one (logs of logits)."""
    if TARGETS[target] != "mask" or fn in LOGIT_TERMS:
        return
    option = inspect.signature(TERMS.get(fn)).parameters.get("sigmoid")
    if option is None:
        raise ValueError(
            f"loss term {name!r}: {fn} is a depth term, it cannot score target {target}'s logits; mask terms: "
            f"{', '.join(LOGIT_TERMS)} or a term with kwargs: {{sigmoid: true}}"
        )
    if kwargs.get("sigmoid", option.default) is not True:
        raise ValueError(
            f"loss term {name!r}: {fn} on target {target} would score the logits; add kwargs: {{sigmoid: true}}"
        )


def parse_terms(terms: Mapping[str, Any] | Iterable[Mapping[str, Any]] | DictConfig | ListConfig) -> list[TermSpec]:
    """Check and convert term specs (dicts or OmegaConf), in config order.

    Either a mapping ``{name: {target: mask|depth|mask_coarse, fn, weight, kwargs?}}`` (the presets' form: a term's
    weight is then the override ``loss.terms.<name>.weight=...``) or a list of ``{name, target, fn, weight,
    kwargs?}``.
    """
    specs: list[TermSpec] = []
    seen: set[str] = set()
    for name, raw in _named(plain(terms)):
        if not isinstance(raw, Mapping):
            raise ValueError(f"loss term {name!r} must be a mapping, got {type(raw).__name__}")
        extra = set(raw) - _SPEC_KEYS
        if extra:
            raise ValueError(f"loss term {name!r}: unknown keys {sorted(extra)}; allowed: {sorted(_SPEC_KEYS)}")
        if name in seen:
            raise ValueError(f"duplicate loss term name {name!r}")
        seen.add(name)
        target = raw.get("target")
        if target not in TARGETS:
            raise ValueError(f"loss term {name!r}: unknown target {target!r}; expected one of {list(TARGETS)}")
        fn = raw.get("fn")
        if fn not in TERMS.names():
            raise ValueError(f"loss term {name!r}: unknown fn {fn!r}; known: {', '.join(TERMS.names())}")
        kwargs = raw.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"loss term {name!r}: kwargs must be a mapping, got {type(kwargs).__name__}")
        accepted = [p for p in inspect.signature(TERMS.get(fn)).parameters if p not in ("pred", "target", "valid")]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"loss term {name!r}: {fn} takes no {unknown}; its options: {accepted or 'none'}")
        check_mask_term(name, fn, target, dict(kwargs))
        try_term(name, fn, target, dict(kwargs))
        weight = finite_number(raw.get("weight", 1.0), f"loss term {name!r}: weight")
        if weight < 0:
            raise ValueError(f"loss term {name!r}: weight must be >= 0 (0 turns it off), got {weight:g}")
        specs.append(TermSpec(name, target, fn, weight, dict(kwargs)))
    if not specs:
        raise ValueError("a loss group needs at least one term")
    return specs


class LossGroup(nn.Module):
    """Weighted sum of loss terms on model outputs ``{"mask": logits, "depth": pred}``, ``[B,1,H,W]`` each.

    Depth terms get ``valid=batch["valid"]``; mask terms get ``valid=None``. ``forward`` returns the total
    (float32 scalar) and ``{name: weight * term}`` for every term; a weight-0 term is not computed and
    reported as 0.
    """

    def __init__(self, terms: Mapping[str, Any] | Iterable[Mapping[str, Any]] | DictConfig | ListConfig) -> None:
        super().__init__()
        self.terms = parse_terms(terms)

    @property
    def names(self) -> list[str]:
        """Term names in config order."""
        return [t.name for t in self.terms]

    def trains(self, truth: str) -> bool:
        """Whether some term of weight > 0 scores an output against the batch entry `truth` ("mask" or "depth")."""
        return any(TARGETS[t.target] == truth and t.weight > 0 for t in self.terms)

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and the weighted value of every term (see the class docstring)."""
        ref = next(iter(outputs.values()))
        total = torch.zeros((), dtype=torch.float32, device=ref.device)
        parts: dict[str, Tensor] = {}
        for spec in self.terms:
            if spec.weight == 0.0:
                parts[spec.name] = torch.zeros((), dtype=torch.float32, device=ref.device)
                continue
            truth = TARGETS[spec.target]
            valid = batch.get("valid") if truth == "depth" else None
            value = spec.weight * spec.func(outputs[spec.target], batch[truth], valid, **spec.kwargs)
            parts[spec.name] = value
            total = total + value
        return total, parts

    def extra_repr(self) -> str:
        return ", ".join(f"{t.name}={t.weight:g}*{t.fn}({t.target})" for t in self.terms)
