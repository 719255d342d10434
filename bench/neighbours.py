"""Nearest-neighbour search by dimension: k-d tree against brute force (vaekit.graph).

Every spectral step and label spreading starts by finding each latent vector's nearest
neighbours among all the others, and new images are placed by their nearest reference
latents. ``vaekit.graph.nearest_neighbors`` picks scikit-learn's k-d tree up to
``KD_TREE_MAX_DIM`` dimensions and its brute-force search above; this benchmark times both
on the same vectors, in the same run, for several dimensions, and checks that they find the
same neighbours.

The vectors are the latent means of the 70,000 Fashion-MNIST images (training and test)
under a ``VAE(latent_dim=D)`` trained on them for ``--epochs`` epochs (seed 0), one VAE per
D: a VAE's latents spread over every dimension, unlike principal components, whose first
few carry most of the variance and make a tree's job far easier. Or the rows of
``--latents FILE.npy`` (e.g. a fitted model's ``transform``; its first D columns). Each
search asks for the 11 nearest of every vector among all of them, as the spectral step's
graph does.

Run from the repository root::

    python bench/neighbours.py
    python bench/neighbours.py --latents latents.npy --dims 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import _common

_common.use_checkout()


def vae_latents(x: np.ndarray, dim: int, epochs: int) -> np.ndarray:
    """Latent means of ``x`` under a ``dim``-dimensional VAE trained on it (seed 0)."""
    from vaekit import VAE

    vae = VAE(latent_dim=dim, max_epochs=epochs, random_state=0).fit(x)
    return vae.transform(x).astype(np.float32)


def main() -> None:
    """Run the benchmark and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 5, 7, 10, 16])
    parser.add_argument("--latents", help=".npy file of vectors (N, D) instead of VAE latents")
    parser.add_argument("--neighbours", type=int, default=11, help="neighbours per vector")
    parser.add_argument("--epochs", type=int, default=3, help="VAE training epochs")
    args = parser.parse_args()
    if min(args.dims) < 1:
        parser.error("--dims must be at least 1")

    from sklearn.neighbors import NearestNeighbors

    from vaekit import load_dataset
    from vaekit.graph import KD_TREE_MAX_DIM, nearest_neighbors

    _common.start("Nearest neighbours of every vector among all: k-d tree against brute force")
    if args.latents:
        source = np.load(args.latents, allow_pickle=False).astype(np.float32)
        if source.ndim != 2 or max(args.dims) > source.shape[1]:
            parser.error(f"{args.latents} holds {source.shape}; --dims needs (N, {max(args.dims)})")
        print(f"vectors: {args.latents}, {source.shape[0]} x {source.shape[1]}")
    else:
        _common.ensure_fashion_mnist()
        ds = load_dataset("fashion-mnist")
        x = np.concatenate([ds.x_train, ds.x_test])
        print(
            f"vectors: latent means of the 70,000 Fashion-MNIST images, one VAE per D, "
            f"{args.epochs} epochs"
        )
    print(f"vaekit: k-d tree up to {KD_TREE_MAX_DIM} dimensions, brute force above\n")
    print("| D | k-d tree s | brute force s | vaekit picks | same neighbours |")
    print("|---|---|---|---|---|")
    for dim in args.dims:
        z = (
            np.ascontiguousarray(source[:, :dim])
            if args.latents
            else vae_latents(x, dim, args.epochs)
        )
        timed = {}
        for algorithm in ("kd_tree", "brute"):
            start = time.perf_counter()
            nn = NearestNeighbors(n_neighbors=args.neighbours, algorithm=algorithm).fit(z)
            _, timed[algorithm] = nn.kneighbors(z)
            timed[algorithm + "_s"] = time.perf_counter() - start
        picked = nearest_neighbors(z, args.neighbours)._fit_method
        same = float((timed["kd_tree"] == timed["brute"]).mean())
        print(
            f"| {dim} | {timed['kd_tree_s']:.1f} | {timed['brute_s']:.1f} | {picked} "
            f"| {same:.2%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
