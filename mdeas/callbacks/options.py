"""The callbacks' numeric options, checked before any is built: a value from the command line that a callback would
only trip over later (`callbacks.image_grid.tile=abc` after the first epoch, `save_top_k=abc` in a line without its
key) is a one-line ValueError naming `callbacks.<name>.<option>`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mdeas.config_values import finite_number, whole_number


def _whole(minimum: int, nullable: bool = False) -> Callable[[object, str], None]:
    def check(value: object, key: str) -> None:
        if not (nullable and value is None):
            whole_number(value, key, minimum)

    return check


def _minutes(value: object, key: str) -> None:
    if value is not None and not finite_number(value, key) > 0:
        raise ValueError(f"{key} must be a positive number of minutes (or null: no checkpoint by time), got {value!r}")


def _decay(value: object, key: str) -> None:
    if not 0 <= finite_number(value, key) <= 1:
        raise ValueError(f"{key} must be a number in [0, 1], got {value!r}")


CHECKS: dict[str, Callable[[object, str], None]] = {
    "num_samples": _whole(0, nullable=True),  # ImageGrid; null: none
    "worst": _whole(0, nullable=True),
    "tile": _whole(1),
    "num_thresholds": _whole(2),  # MaskPRCurves
    "save_top_k": _whole(-1),  # ModelCheckpoint; -1: every one
    "every_n_epochs": _whole(0, nullable=True),
    "every_n_train_steps": _whole(0, nullable=True),
    "minutes": _minutes,  # StepCheckpoint
    "decay": _decay,  # EMAWeightAveraging
    "update_starting_at_step": _whole(0, nullable=True),
    "update_starting_at_epoch": _whole(0, nullable=True),
}


def check_callback_options(callbacks: Mapping | None) -> None:
    """Check the options of `CHECKS` in each callback config of `callbacks` (`{name: config or null}`)."""
    for name, config in (callbacks or {}).items():
        for option, check in CHECKS.items():
            if config and option in config:
                check(config[option], f"callbacks.{name}.{option}")
