"""Encoders: modules returning a list of features, with `channels` and `strides` attributes."""
