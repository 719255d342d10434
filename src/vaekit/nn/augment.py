"""Image augmentations on float batches ``(B, C, H, W)``, all on the batch's device.

Random ones (:func:`random_shift`, :func:`cutout`) draw from the global torch RNG, which
the training loop seeds; :func:`translations` is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate each image of ``(B, C, H, W)`` by its own random ``(dy, dx)``.

    Offsets are drawn uniformly from ``-max_shift..max_shift`` with the global torch RNG
    (which the training loop seeds); the border is filled by replicating edge pixels.
    """
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (B, C, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    bidx = torch.arange(b, device=x.device)[:, None, None, None]
    cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bidx, cidx, rows, cols]


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Set a ``size x size`` square of each image of ``(B, C, H, W)`` to 0 (DeVries & Taylor 2017).

    Each square's centre is drawn uniformly over the image with the global torch RNG; squares
    are clipped at the border.
    """
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=x.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(w, device=x.device)[None, None, :]  # (1, 1, W)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside[:, None], 0.0)  # (B, 1, H, W) broadcast over channels


def translations(x: torch.Tensor, step: int) -> Iterator[torch.Tensor]:
    """Yield the 3 x 3 grid of translations of ``x`` ``(B, C, H, W)`` by 0 and +-``step`` pixels.

    Offsets ``(dy, dx)`` come row by row, the unshifted batch in the middle (fifth);
    borders are filled by replicating edge pixels, as in :func:`random_shift`. Each
    yielded batch is a view of one padded copy of ``x``; ``step <= 0`` yields ``x`` once.
    """
    s = int(step)
    if s <= 0:
        yield x
        return
    h, w = x.shape[-2:]
    padded = F.pad(x, (s,) * 4, mode="replicate")
    for dy in (0, s, 2 * s):
        for dx in (0, s, 2 * s):
            yield padded[..., dy : dy + h, dx : dx + w]
