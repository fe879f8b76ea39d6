"""One short file per preset; importing this package registers them all."""

from mdeas.models.presets import (  # noqa: F401
    composed,
    densenet_dilated,
    dwsep_pair,
    mobile_unet,
    resnet_unet,
    resunet,
    unet_shared,
)
