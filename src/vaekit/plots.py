"""Pictures of a run. Image grids need only Pillow; figures use matplotlib (Agg)."""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image

from vaekit.checkpoint import atomic_write_bytes

#: Grid tiles smaller than this (pixels) are scaled up by an integer factor to be visible.
MIN_TILE_SIDE = 32


def image_grid(images: np.ndarray, *, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` in [0, 1] (or uint8) into one uint8 ``(H', W', C)`` array.

    Small tiles are scaled up (nearest neighbour) so that each is at least
    ``MIN_TILE_SIDE`` pixels on its shorter side.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    if imgs.dtype != np.uint8:
        imgs = (np.clip(imgs, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    n, c, h, w = imgs.shape
    scale = max(1, math.ceil(MIN_TILE_SIDE / min(h, w)))
    if scale > 1:
        imgs = imgs.repeat(scale, axis=2).repeat(scale, axis=3)
        h, w = h * scale, w * scale
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i].transpose(1, 2, 0)
    return grid


def save_image_grid(
    path: str | os.PathLike, images: np.ndarray, *, ncols: int | None = None
) -> None:
    """Write :func:`image_grid` of ``images`` as a PNG file, atomically."""
    grid = image_grid(images, ncols=ncols)
    pil = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


#: Members shown per cluster in a montage.
MONTAGE_PER_CLUSTER = 10


def cluster_montage(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    *,
    per_cluster: int = MONTAGE_PER_CLUSTER,
) -> None:
    """Write a PNG with one row per cluster: its most confident members, best first.

    Rows of clusters with fewer members are padded with blank tiles.
    """
    blank = np.zeros_like(images[:1]) if images.dtype == np.uint8 else np.ones_like(images[:1])
    rows = []
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(-confidence[idx], kind="stable")][:per_cluster]
        tiles = [images[idx]] + [blank] * (per_cluster - len(idx))
        rows.append(np.concatenate(tiles))
    save_image_grid(path, np.concatenate(rows), ncols=per_cluster)
