"""The ``vaekit`` command line: argument parsing and printing only.

Every subcommand is a thin call into the estimators, data and checkpoint layers. User
mistakes (``VaekitError``) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaekit import checkpoint
from vaekit._version import __version__
from vaekit.errors import CheckpointError, VaekitError

EXIT_USAGE = 2
MODELS = ("vae",)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (plus a pointer to --help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --- shared argument groups -------------------------------------------------------------
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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument("--epochs", type=_positive_int, metavar="N", help="maximum epochs")
    g.add_argument("--latent-dim", type=_positive_int, metavar="D", help="latent size")
    g.add_argument("--arch", choices=("mlp", "conv"), help="encoder/decoder family")
    g.add_argument(
        "--hidden-dims", metavar="A,B,...", type=_int_tuple, help="layer widths or channels"
    )
    g.add_argument("--likelihood", choices=("bernoulli", "gaussian"))
    g.add_argument("--beta", type=_positive_float, help="KL weight (1 = ELBO)")
    g.add_argument("--batch-size", type=_positive_int, metavar="B")
    g.add_argument("--lr", type=_positive_float, metavar="LR", help="learning rate")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


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


def _image_size(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(t) for t in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise VaekitError(f"--image-size must look like 28 or 32x48, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


# --- helpers ------------------------------------------------------------------------------
def _load_data(spec: str, args: argparse.Namespace, seed: int = 0):
    from vaekit.data import load_dataset

    return load_dataset(
        spec,
        image_size=_image_size(getattr(args, "image_size", None)),
        color=getattr(args, "color", "auto"),
        skip_bad=getattr(args, "skip_bad", False),
        random_state=seed,
    )


def _data_metadata(spec: str, ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    p = Path(spec)
    return {
        "data": str(p.resolve()) if p.exists() else spec,
        "dataset": ds.name,
        "classes": list(ds.classes),
        "image_size": getattr(args, "image_size", None),
        "color": getattr(args, "color", "auto"),
        "image_shape": list(ds.image_shape),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
    }


def _fresh_dir(out: str | None, default: str) -> Path:
    """``out`` if given (must not hold a run); else ``default`` with -2, -3, ... if taken."""
    if out is not None:
        path = Path(out)
        if (path / checkpoint.CONFIG_FILE).exists():
            raise VaekitError(
                f"'{path}' already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        return path
    path, i = Path(default), 1
    while path.exists():
        i += 1
        path = Path(f"{default}-{i}")
    return path


def _verbose(args: argparse.Namespace) -> int:
    return 0 if args.quiet else 1


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    checkpoint.atomic_write_json(path, metrics)


def _format_metrics(metrics: dict[str, Any]) -> str:
    keys = [k for k, v in metrics.items() if isinstance(v, float | int)]
    return "  ".join(f"{k}={metrics[k]:.4g}" for k in keys)


def _load_estimator(run: str):
    from vaekit.estimators import VAE

    config = checkpoint.read_config(run)
    kinds = {"VAE": VAE}
    kind = config.get("estimator")
    if kind not in kinds:
        raise CheckpointError(f"'{run}' holds an unknown estimator {kind!r}; retrain the run")
    return kinds[kind].load(run), config


# --- subcommands -----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a model and save a run directory."""
    from vaekit.estimators import VAE

    if args.resume:
        if args.out is None:
            raise VaekitError("--resume needs --out DIR naming the run to continue")
        out = Path(args.out)
        if not (out / checkpoint.CONFIG_FILE).exists():
            raise VaekitError(f"cannot resume: '{out}' holds no run; drop --resume to start one")
        config = checkpoint.read_config(out)
        params = dict(config["params"])
        if params.get("hidden_dims") is not None:
            params["hidden_dims"] = tuple(params["hidden_dims"])
        params["verbose"] = _verbose(args)
        meta = config.get("metadata", {})
        if args.data != meta.get("data") and str(Path(args.data).resolve()) != meta.get("data"):
            raise VaekitError(
                f"cannot resume '{out}' on {args.data!r}: it was trained on {meta.get('data')!r}"
            )
        seed = params.get("random_state") or 0
        ds = _load_data(args.data, args, seed)
        est = VAE(**params)
    else:
        ds = _load_data(args.data, args, args.seed)
        out = _fresh_dir(args.out, f"runs/{Path(ds.name).name}-{args.model}")
        params = {
            "latent_dim": args.latent_dim,
            "arch": args.arch,
            "hidden_dims": args.hidden_dims,
            "likelihood": args.likelihood,
            "beta": args.beta,
            "batch_size": args.batch_size,
            "max_epochs": args.epochs,
            "learning_rate": args.lr,
        }
        est = VAE(
            **{k: v for k, v in params.items() if v is not None},
            device=args.device,
            random_state=args.seed,
            verbose=_verbose(args),
        )
        meta = _data_metadata(args.data, ds, args)
    _say(
        args,
        f"training {type(est).__name__} on {ds.name}: {len(ds.x_train)} images "
        f"{'x'.join(map(str, ds.image_shape))} -> {out}",
    )
    est.fit(ds.x_train, run_dir=out, resume=args.resume, metadata=meta)
    est.save(out)
    from vaekit.metrics import generative_metrics

    t0 = time.perf_counter()
    metrics = {
        **generative_metrics(est, ds.x_test),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "seconds": est.fit_seconds_ + time.perf_counter() - t0,
    }
    _write_metrics(out / "metrics.json", metrics)
    _say(
        args, f"{est.n_epochs_} epochs in {est.fit_seconds_:.1f} s; test {_format_metrics(metrics)}"
    )
    print(out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Test-split metrics of a trained run."""
    from vaekit.metrics import generative_metrics

    est, config = _load_estimator(args.run)
    meta = config.get("metadata", {})
    spec = args.data or meta.get("data")
    if spec is None:
        raise VaekitError(f"'{args.run}' does not record its data; pass DATA")
    if args.image_size is None and meta.get("image_size"):
        args.image_size = meta["image_size"]
    ds = _load_data(spec, args, config["params"].get("random_state") or 0)
    t0 = time.perf_counter()
    metrics = {
        **generative_metrics(est, ds.x_test),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
    }
    metrics["seconds"] = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.run) / "metrics.json"
    _write_metrics(out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Latent means of a dataset, written as .npy (rows: train images, then test)."""
    est, config = _load_estimator(args.run)
    meta = config.get("metadata", {})
    if args.image_size is None and meta.get("image_size"):
        args.image_size = meta["image_size"]
    ds = _load_data(args.data, args, 0)
    parts = {"train": [ds.x_train], "test": [ds.x_test], "all": [ds.x_train, ds.x_test]}
    z = np.concatenate([est.transform(x) for x in parts[args.split]])
    if not args.out.endswith(".npy"):
        raise VaekitError(f"--out must end in .npy, got {args.out!r}")
    buf = io.BytesIO()
    np.save(buf, z)
    checkpoint.atomic_write_bytes(args.out, buf.getvalue())
    _say(args, f"wrote {z.shape[0]} x {z.shape[1]} latent means to {args.out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Sample images from a trained run into a PNG grid."""
    from vaekit.plots import save_image_grid

    est, _ = _load_estimator(args.run)
    if args.cluster is not None:
        raise VaekitError(
            f"'{args.run}' holds a {type(est).__name__}, which has no clusters; "
            "--cluster needs a clustering run"
        )
    if not args.out.lower().endswith(".png"):
        raise VaekitError(f"--out must end in .png, got {args.out!r}")
    images = est.sample(args.n, random_state=args.seed)
    save_image_grid(args.out, images)
    _say(args, f"wrote {args.n} samples to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on the embedded digits data: train, evaluate, sample."""
    from vaekit.data import load_dataset
    from vaekit.estimators import VAE
    from vaekit.metrics import generative_metrics
    from vaekit.plots import save_image_grid

    start = time.perf_counter()
    out = _fresh_dir(args.out, "runs/demo") if args.out is None else Path(args.out)
    ds = load_dataset("digits")
    _say(
        args,
        f"vaekit demo: {len(ds.x_train)} training and {len(ds.x_test)} test images of "
        f"handwritten digits (8x8) -> {out}",
    )
    vae_dir = out / "vae"
    if (vae_dir / checkpoint.CONFIG_FILE).exists():
        raise VaekitError(f"'{vae_dir}' already holds a run; choose another --out")
    vae = VAE(latent_dim=10, max_epochs=args.epochs, random_state=args.seed, verbose=_verbose(args))
    meta = {
        "data": "digits",
        "dataset": "digits",
        "classes": list(ds.classes),
        "image_shape": list(ds.image_shape),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "image_size": None,
        "color": "auto",
    }
    vae.fit(ds.x_train, run_dir=vae_dir, metadata=meta).save(vae_dir)
    metrics = {
        **generative_metrics(vae, ds.x_test),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "seconds": time.perf_counter() - start,
    }
    _write_metrics(vae_dir / "metrics.json", metrics)
    save_image_grid(out / "samples.png", vae.sample(64))
    n = min(32, len(ds.x_test))
    pairs = np.stack([ds.x_test[:n] / 255.0, vae.reconstruct(ds.x_test[:n])], axis=1)
    save_image_grid(out / "reconstructions.png", pairs.reshape(2 * n, *ds.image_shape), ncols=16)
    print(f"VAE: {vae.n_epochs_} epochs in {vae.fit_seconds_:.1f} s")
    print(f"test ELBO: {metrics['elbo']:.2f} nats/image")
    print(
        f"test reconstruction error: {metrics['reconstruction_bce']:.2f} nats/image (BCE), "
        f"{metrics['reconstruction_mse']:.3f} (squared error per image)"
    )
    print(
        f"wrote {vae_dir}/ (config.json, model.safetensors, history.csv, metrics.json), "
        f"{out}/samples.png, {out}/reconstructions.png in {time.perf_counter() - start:.1f} s"
    )
    return 0


# --- parser ------------------------------------------------------------------------------------
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
    p.add_argument("--epochs", type=_positive_int, default=50, help="maximum epochs (50)")
    p.add_argument("--seed", type=int, default=0)
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model and save a run directory")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--model", choices=MODELS, default="vae", help="model family (vae)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/NAME-MODEL[-N])")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    _add_model_args(p)
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test-split metrics of a trained run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("data", metavar="DATA", nargs="?", help="default: the run's training data")
    p.add_argument("--out", metavar="FILE", help="metrics file (default: RUN/metrics.json)")
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embed", help="write latent means of DATA as .npy")
    p.add_argument("run", metavar="RUN")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", metavar="FILE.npy", required=True)
    p.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="which images, in order train then test (default: all)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("generate", help="sample images from a trained run into a PNG grid")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--n", type=_positive_int, default=64, help="number of samples (64)")
    p.add_argument("--cluster", type=int, metavar="C", help="sample from one cluster")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.png", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vaekit`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _warnings_to_stderr():
            return int(args.func(args))
    except VaekitError as exc:
        print(f"vaekit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PermissionError as exc:
        print(
            f"vaekit {args.command}: error: cannot write '{exc.filename}': permission "
            "denied; choose another --out",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"vaekit {args.command}: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _warnings_to_stderr():
    """Show Python warnings as one plain line each ('vaekit: warning: ...')."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"vaekit: warning: {message}", file=sys.stderr)

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
