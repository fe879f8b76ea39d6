"""Loss terms (:mod:`.terms`) and the configurable weighted group (:mod:`.group`)."""

from mdeas.losses.group import LossGroup, TermSpec, parse_terms
from mdeas.losses.terms import TERMS

__all__ = ["TERMS", "LossGroup", "TermSpec", "parse_terms"]
