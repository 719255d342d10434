"""Encoder/decoder building blocks sized from the input shape."""

from vaekit.nn.blocks import build_decoder, build_encoder, default_hidden_dims

__all__ = ["build_decoder", "build_encoder", "default_hidden_dims"]
