"""Encoders: `encoder(in_channels, **kw)` returns a list of features and declares their `channels` and `strides`.

Importing this package registers every encoder in `mdeas.models.registry.ENCODERS`.
"""

from mdeas.models.encoders import dense, mobile, plain, preact, residual, resnet  # noqa: F401
