"""One short file per preset; importing this package registers them all."""

from mdeas.models.presets import densenet_dilated  # noqa: F401
