"""The step at which Lightning logs validation (and other epoch-end) metrics while fitting."""

from __future__ import annotations


def val_log_step(global_step: int) -> int:
    """The step of the validation metrics logged after `global_step` optimiser steps: that of the last of those
    steps (global_step − 1; Lightning logs epoch-end values at the last batch's step), 0 before any step. Images,
    PR curves and the best checkpoint's marker use it to sit on the same step as the val curves."""
    return max(0, global_step - 1)
