"""The ``vaekit`` argument parser: subcommands, option types and help texts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from vaekit._version import __version__
from vaekit.cli.classify import cmd_classify
from vaekit.cli.cluster import cmd_cluster
from vaekit.cli.commands import (
    MODELS,
    cmd_embed,
    cmd_evaluate,
    cmd_generate,
    cmd_prepare,
    cmd_report,
    cmd_train,
)
from vaekit.cli.console import EXIT_USAGE, _rank_tag
from vaekit.cli.demo import DEMO_CLASSIFIER_EPOCHS, DEMO_EPOCHS, cmd_demo

#: Most images ``vaekit generate`` puts in one PNG grid (100 x 100 tiles).
MAX_GRID_SAMPLES = 10_000

#: Help of the positional arguments.
DATA_HELP = "digits, fashion-mnist, mnist, an IDX file or folder, a .npy/.npz, or an image folder"
RUN_HELP = "a run directory: the --out of train, cluster or classify (or demo's vae/, ...)"


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (plus a pointer to --help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            EXIT_USAGE, f"{self.prog}: error{_rank_tag()}: {message} (see '{self.prog} --help')\n"
        )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-size",
        metavar="S|HxW",
        help="resize images to S x S (or H x W); needed when a folder mixes sizes",
    )
    p.add_argument(
        "--color",
        choices=("auto", "grayscale", "rgb"),
        default="auto",
        help="convert images to one or three channels (default: auto)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or chatter")


#: What --epochs, --latent-dim and --arch default to, as each command's --help says it.
_CLASSIFIER_EPOCHS = (
    "30 with all labels, about 250,000 rows' worth (3 to 30) with nearly none, between by "
    "the unlabeled share"
)

_VADE_EPOCHS = "of its mixture phase, after N/2 epochs of pre-training"
MODEL_HELP = {
    "train": (
        "maximum epochs; the VAE and VaDE may stop sooner on their validation loss, m2 runs "
        f"all N (default: 50; m2: {_CLASSIFIER_EPOCHS}; VaDE: {_VADE_EPOCHS})",
        "latent size (default: 10; m2: 16)",
        "encoder/decoder family (default: mlp; m2: a conv encoder)",
    ),
    "cluster": (
        "maximum epochs; training may stop sooner on the validation loss (default: 50; "
        f"--method vade: {_VADE_EPOCHS})",
        "latent size (default: 10)",
        "encoder/decoder family (default: mlp)",
    ),
    "classify": (
        f"epochs, all of them run (default: {_CLASSIFIER_EPOCHS})",
        "latent size (default: 16)",
        "encoder family (default: conv)",
    ),
}


def _add_model_args(p: argparse.ArgumentParser, command: str) -> None:
    epochs, latent, arch = MODEL_HELP[command]
    g = p.add_argument_group("model and training")
    g.add_argument("--epochs", type=_positive_int, metavar="N", help=epochs)
    g.add_argument("--latent-dim", type=_positive_int, metavar="D", help=latent)
    g.add_argument("--arch", choices=("mlp", "conv"), help=arch)
    g.add_argument(
        "--hidden-dims",
        metavar="A,B,...",
        type=_int_tuple,
        help="layer widths or channels (default: 512,256 for mlp; 32,64,128 for conv, fewer "
        "on small images)",
    )
    g.add_argument(
        "--likelihood", choices=("bernoulli", "gaussian"), help="pixel model (default: bernoulli)"
    )
    g.add_argument("--beta", type=_positive_float, help="KL weight (default: 1, the ELBO)")
    g.add_argument("--batch-size", type=_positive_int, metavar="B", help="(default: 128)")
    g.add_argument(
        "--lr", type=_positive_float, metavar="LR", help="learning rate (default: 0.001)"
    )
    # None until main() sets 0: a resumed run refuses a --seed given other than its own.
    g.add_argument(
        "--seed",
        type=_seed,
        help="random seed of training and of the 80/20 train/test split of data without a "
        "split of its own: digits, arrays without x_test, folders without train/ and test/ "
        "(default: 0)",
    )
    g.add_argument(
        "--device",
        help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...; with --resume, the "
        "run's own unless given",
    )


def _add_run_args(p: argparse.ArgumentParser, command: str, func: Callable) -> None:
    """Finish the parser of a command that trains a run: --resume, model, speed, data, -q."""
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    _add_model_args(p, command)
    _add_fast_args(p)
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=func)


def _add_fast_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed")
    g.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="bf16 autocast while training; auto = bf16 on a CUDA GPU that supports it, else fp32",
    )
    g.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        help="torch.compile the training loss (auto = off)",
    )


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _int_in(low: int, high: int):
    """Make an argparse type that accepts an integer in ``low..high``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {text!r}")
        return v

    return parse


#: ``--seed``: what NumPy's and torch's generators take.
_seed = _int_in(0, 2**32 - 1)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 512,256, got {text!r}"
        ) from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return dims


def _share_below(limit: float) -> Callable[[str], float]:
    """Return an argparse type that accepts a number in ``[0, limit)``."""

    def share(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value < limit:
            raise argparse.ArgumentTypeError(f"expected a number in [0, {limit:g}), got {text!r}")
        return value

    return share


def _n_clusters(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 2:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 2, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """Build the ``vaekit`` argument parser with all subcommands."""
    parser = _Parser(
        prog="vaekit",
        description="Cluster and classify image collections through variational autoencoders.",
        epilog="DATA is digits, fashion-mnist, mnist, or a path to IDX files, a .npy/.npz "
        "array or a folder of images. Run 'vaekit COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("demo", help="train and evaluate on the embedded digits data")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/demo[-N])")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEMO_EPOCHS,
        help=(
            f"maximum epochs of the VAE and clustering runs; early stopping usually ends "
            f"sooner ({DEMO_EPOCHS}; the classifier runs at most {DEMO_CLASSIFIER_EPOCHS})"
        ),
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model and save a run directory")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument(
        "--model",
        choices=MODELS,
        help="model family: vae (default); vade (mixture prior of 10 components, as 'vaekit "
        "cluster --method vade'); or m2 (semi-supervised classifier; -1 labels unlabeled)",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/NAME-MODEL[-N])")
    _add_run_args(p, "train", cmd_train)

    p = sub.add_parser("cluster", help="cluster images without labels")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument(
        "--n-clusters",
        type=_n_clusters,
        metavar="K|auto",
        help="number of clusters, or auto (chosen by BIC; default: 10)",
    )
    p.add_argument(
        "--method",
        choices=("gmm", "kmeans", "vade"),
        help="gmm or kmeans on the VAE latents (or on their --manifold embedding), or VaDE "
        "(default: kmeans)",
    )
    p.add_argument(
        "--manifold",
        choices=("none", "umap", "spectral"),
        help="embed the latents before gmm/kmeans: spectral (the latents' neighbour graph), "
        "umap as in N2D (needs umap-learn), or none (default: spectral)",
    )
    p.add_argument(
        "--manifold-dim",
        type=_positive_int,
        metavar="D",
        help="size of the --manifold embedding (default: K for umap, 1.5 K for spectral)",
    )
    p.add_argument(
        "--shift-average",
        type=_share_below(0.5),
        metavar="F",
        help="for gmm/kmeans, average each image's latent mean over its 9 shifts by 0 and "
        "+-s pixels, s = F x its shorter side rounded (default 0.04: 1 pixel from 13 to 37 "
        "pixels, none below); 0 turns it off",
    )
    p.add_argument(
        "--input-dropout",
        type=_share_below(1.0),
        metavar="P",
        help="for gmm/kmeans, train a denoising VAE: the encoder sees each image with a share "
        "P of its pixels dropped (default 0.2); 0 trains the plain VAE",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run directory")
    _add_run_args(p, "cluster", cmd_cluster)

    p = sub.add_parser(
        "classify", help="classify images with N labeled training images (all if omitted)"
    )
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument(
        "--labels",
        type=_positive_int,
        metavar="N",
        help="labeled training images to keep, about N/K of each of the K classes (a class "
        "with fewer gives all it has, the others share the rest), drawn with --seed "
        "(default: all); the rest of the training split is used unlabeled",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run directory")
    _add_run_args(p, "classify", cmd_classify)

    p = sub.add_parser("evaluate", help="test-split metrics of a trained run")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("data", metavar="DATA", nargs="?", help="default: the run's training data")
    p.add_argument(
        "--out",
        metavar="FILE.json",
        help="metrics file (default: RUN/metrics.json for the run's own data; other DATA: "
        "printed only)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embed", help="write latent means of DATA as .npy")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", metavar="FILE.npy", required=True)
    p.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="which images: all (default; in DATA's order), or the training or test part "
        "of its split (in DATA's order within it)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "prepare",
        help="convert DATA once into a memory-mapped .npy + .json manifest",
        description="Convert DATA once into FILE.npy (uint8 images, training then test, read "
        "with mmap_mode='r') and FILE.json (labels, class names, source paths, shape); pass "
        "FILE.npy as DATA to the other commands. Image folders are decoded block by block, "
        "so they may be larger than memory.",
    )
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", metavar="FILE.npy", required=True)
    p.add_argument("--seed", type=_seed, default=0, help="seed of the train/test split (0)")
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("generate", help="sample images from a trained run into a PNG grid")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument(
        "--n",
        type=_int_in(1, MAX_GRID_SAMPLES),
        default=64,
        help=f"number of samples in the grid (64, at most {MAX_GRID_SAMPLES:,}; more from "
        "Python: VAE.sample)",
    )
    p.add_argument("--cluster", type=int, metavar="C", help="sample from one cluster")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    p.add_argument("--out", metavar="FILE.png", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("report", help="write RUN/report.html: config, data, metrics, figures")
    p.add_argument("run", metavar="RUN", help="a run directory, or a demo folder of runs")
    p.add_argument("data", metavar="DATA", nargs="?", help="default: the run's training data")
    p.add_argument("--out", metavar="FILE.html", help="default: RUN/report.html")
    p.add_argument(
        "--latent-map",
        choices=("pca", "tsne", "umap"),
        default="pca",
        help="2-D projection of the latent map (default: pca; umap needs umap-learn)",
    )
    p.add_argument(
        "--max-points",
        type=_int_in(2, 10**9),
        default=3000,
        metavar="N",
        help="images in the latent map at most, a seeded sample (default: 3000)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_report)
    parser.commands = sub.choices  # name -> subcommand parser, for main's error messages
    return parser
