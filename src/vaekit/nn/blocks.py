"""MLP and convolutional encoder/decoder stacks.

Every block is sized from the input shape: ``(F,)`` for flat feature vectors or
``(C, H, W)`` for images of any size with 1 or 3 channels. Encoders map a batch to
``(B, out_dim)``; decoders map ``(B, latent_dim)`` to ``(B, *out_shape)`` *logits or
means before the output non-linearity*, so that the likelihood can pick its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from vaekit.errors import ConfigError

#: Convolutions halve the spatial size; stop before a side would fall below this.
MIN_CONV_SIDE = 2


def default_hidden_dims(arch: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Return the default layer widths (MLP) or channel counts (conv) for an input shape.

    Parameters
    ----------
    arch : {"mlp", "conv"}
        Encoder/decoder family.
    input_shape : sequence of int
        ``(F,)`` or ``(C, H, W)``.

    Returns
    -------
    tuple of int
        Hidden sizes from the input side towards the latent side.
    """
    if arch == "mlp":
        return (512, 256)
    if arch == "conv":
        side = min(input_shape[-2:])
        n_layers = max(1, min(3, int(math.log2(max(side, 2) / MIN_CONV_SIDE)) + 1))
        return (32, 64, 128)[:n_layers]
    raise ConfigError(f"arch must be 'mlp' or 'conv', got {arch!r}")


def _conv_sides(side: int, n_layers: int) -> list[int]:
    """Spatial sizes through ``n_layers`` stride-2 convs (kernel 3, padding 1)."""
    sides = [side]
    for _ in range(n_layers):
        sides.append((sides[-1] + 1) // 2)
    return sides


class MLPEncoder(nn.Module):
    """Flatten, then Linear-ReLU layers, then a linear head: ``(B, *in) -> (B, out_dim)``."""

    def __init__(self, input_shape: Sequence[int], hidden_dims: Sequence[int], out_dim: int):
        super().__init__()
        sizes = [math.prod(input_shape), *hidden_dims]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x)


class MLPDecoder(nn.Module):
    """Linear-ReLU layers mirroring the encoder: ``(B, latent) -> (B, *out_shape)``."""

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int], out_shape: Sequence[int]):
        super().__init__()
        self.out_shape = tuple(out_shape)
        sizes = [latent_dim, *reversed(tuple(hidden_dims))]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], math.prod(self.out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(z).view(-1, *self.out_shape)


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convolutions (BatchNorm-free, ReLU), then a linear head.

    ``(B, C, H, W) -> (B, c_last, ceil(H / 2^L), ceil(W / 2^L)) -> (B, out_dim)``.
    """

    def __init__(self, input_shape: Sequence[int], hidden_dims: Sequence[int], out_dim: int):
        super().__init__()
        channels, height, width = input_shape
        chans = [channels, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            layers += [nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        n = len(hidden_dims)
        flat = chans[-1] * _conv_sides(height, n)[-1] * _conv_sides(width, n)[-1]
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x)


class ConvDecoder(nn.Module):
    """Linear to a small feature map, then stride-2 transposed convolutions.

    ``output_padding`` is chosen per layer so the output is exactly ``(C, H, W)`` for odd
    and even sizes alike (transposed conv, k=3, s=2, p=1: ``out = 2*in - 1 + output_padding``).
    """

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int], out_shape: Sequence[int]):
        super().__init__()
        channels, height, width = out_shape
        n = len(hidden_dims)
        hs, ws = _conv_sides(height, n), _conv_sides(width, n)
        chans = list(reversed(tuple(hidden_dims)))
        self.start_shape = (chans[0], hs[-1], ws[-1])
        self.fc = nn.Linear(latent_dim, math.prod(self.start_shape))
        layers: list[nn.Module] = []
        outs = [*chans[1:], channels]
        for i, (a, b) in enumerate(zip(chans, outs, strict=True)):
            j = n - i  # sizes go from index n (smallest) back to 0 (input size)
            pad = (hs[j - 1] - (2 * hs[j] - 1), ws[j - 1] - (2 * ws[j] - 1))
            layers.append(
                nn.ConvTranspose2d(a, b, kernel_size=3, stride=2, padding=1, output_padding=pad)
            )
            if i < n - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = torch.relu(self.fc(z)).view(-1, *self.start_shape)
        return self.net(h)


def build_encoder(
    arch: str, input_shape: Sequence[int], hidden_dims: Sequence[int], out_dim: int
) -> nn.Module:
    """Build an encoder ``(B, *input_shape) -> (B, out_dim)`` of the given family."""
    if arch == "conv":
        if len(input_shape) != 3:
            raise ConfigError(
                f"arch='conv' needs images (C, H, W), got flat input of shape {tuple(input_shape)}"
                "; use arch='mlp'"
            )
        return ConvEncoder(input_shape, hidden_dims, out_dim)
    if arch == "mlp":
        return MLPEncoder(input_shape, hidden_dims, out_dim)
    raise ConfigError(f"arch must be 'mlp' or 'conv', got {arch!r}")


def build_decoder(
    arch: str, latent_dim: int, hidden_dims: Sequence[int], out_shape: Sequence[int]
) -> nn.Module:
    """Build a decoder ``(B, latent_dim) -> (B, *out_shape)`` of the given family."""
    if arch == "conv":
        return ConvDecoder(latent_dim, hidden_dims, out_shape)
    if arch == "mlp":
        return MLPDecoder(latent_dim, hidden_dims, out_shape)
    raise ConfigError(f"arch must be 'mlp' or 'conv', got {arch!r}")
