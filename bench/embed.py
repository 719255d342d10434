"""Embedding throughput of ``VAE.transform`` on all 70,000 Fashion-MNIST images (docs: "Speed").

Protocol
--------
A ``VAE()`` with the default parameters (MLP 784-512-256-10, Bernoulli) is fitted for one
epoch on 10,000 training images (the weights do not change the cost of ``transform``), then
``transform`` embeds all 70,000 images (training + test, uint8) ``--repeats`` times; the
report gives images/s of the median repeat. In the same run, the baseline is the obvious
hand-written loop over the same trained encoder: float32 tensor of all images, batches of
256 under ``torch.no_grad()`` (``--baseline-batch``), so the ratio shows what vaekit's
batching (one reused float buffer, batches of at most 4,096 images and 1 MiB on the CPU,
converted from uint8 on the fly) gains or loses. Outputs of the two are checked to agree.

``--arch conv`` times the convolutional VAE instead (the trunk of ``VAEClassifier``'s
default kind). ``--batch-mb A B ...`` times ``transform`` once per cap on vaekit's
inference batches (``INFERENCE_BYTES``, or ``INFERENCE_BYTES_GPU`` on a GPU; MiB of
float32 input per batch), interleaved in the same run, to compare batch sizes.

Run from the repository root::

    python bench/embed.py --repeats 5
    python bench/embed.py --arch conv --batch-mb 16 4

The machine is shared and noisy: ``others`` gives the CPUs other processes kept busy.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _common

N_FIT = 10_000
BASELINE_BATCH = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--baseline-batch", type=int, default=BASELINE_BATCH)
    p.add_argument("--arch", default="mlp", choices=("mlp", "conv"))
    p.add_argument(
        "--batch-mb",
        type=float,
        nargs="+",
        default=None,
        help="time transform under each cap on inference batches, MiB (default: vaekit's)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.batch_mb and (min(args.batch_mb) <= 0 or len(set(args.batch_mb)) < len(args.batch_mb)):
        p.error("--batch-mb takes distinct sizes above 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report and return the results."""
    args = parse_args(argv)
    date, command = _common.utc_now(), _common.command_line()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _common.use_checkout()
    import vaekit
    from vaekit import VAE, load_dataset
    from vaekit.estimators import base

    info = _common.machine_info()
    _common.print_header("vaekit embedding throughput (transform)", info, command, date)
    _common.ensure_fashion_mnist()
    ds = load_dataset("fashion-mnist")
    x = np.concatenate([ds.x_train, ds.x_test])  # (70000, 1, 28, 28) uint8
    vae = VAE(arch=args.arch, max_epochs=1, random_state=args.seed, device=args.device)
    vae.fit(x[:N_FIT])
    module = vae.module_
    print(
        f"vaekit:  {vaekit.__version__}; model {type(module).__name__} hidden "
        f"{vae._hidden_dims(vae.input_shape_)} latent {vae.latent_dim}; {len(x):,} images",
        flush=True,
    )

    x_float = torch.from_numpy(x).to(torch.float32).div_(255.0)  # baseline's input, untimed

    @torch.no_grad()
    def baseline() -> np.ndarray:
        outs = []
        for start in range(0, len(x_float), args.baseline_batch):
            xb = x_float[start : start + args.baseline_batch].to(args.device)
            outs.append(module.encode(xb).mean.cpu())
        return torch.cat(outs).numpy()

    cap_name = "INFERENCE_BYTES" if vae._device().type == "cpu" else "INFERENCE_BYTES_GPU"

    def transform_with(cap: int):
        def run() -> np.ndarray:
            setattr(base, cap_name, cap)
            return vae.transform(x)

        return run

    default_cap = getattr(base, cap_name)
    caps = {"transform": default_cap}
    if args.batch_mb:
        caps = {f"transform {mb:g} MiB": round(mb * 2**20) for mb in args.batch_mb}
    timed = [(name, transform_with(cap)) for name, cap in caps.items()]
    timed.append(("baseline", baseline))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in timed}
    outputs = {}
    vae.transform(x[:1000])  # warm-up
    baseline()
    for _ in range(args.repeats):  # interleaved
        for name, fn in timed:
            with _common.measured() as meter:
                outputs[name] = fn()
            runs[name].append(meter)
    setattr(base, cap_name, default_cap)
    max_diff = max(float(np.abs(outputs[name] - outputs["baseline"]).max()) for name in caps)
    results = {}
    for name, meters in runs.items():
        walls = [m["wall_s"] for m in meters]
        med = statistics.median(walls)
        results[name] = {
            "images_per_s": len(x) / med,
            "median_s": med,
            "seconds": walls,
            "other_cpus": statistics.mean(m["other_cpus"] for m in meters),
        }
        print(
            f"{name:<18} {len(x) / med:>10,.0f} images/s (median of {len(walls)}: {med:.3f} s; "
            f"others {results[name]['other_cpus']:.2f})"
        )
    first = next(iter(caps))
    ratio = results[first]["images_per_s"] / results["baseline"]["images_per_s"]
    print(f"ratio {first}/baseline = {ratio:.2f}; max |difference| of outputs = {max_diff:.2e}")
    report = {
        "benchmark": "embed",
        "date": date,
        "command": command,
        "machine": {**info, "load_average_end": _common.load_average()},
        "n_images": len(x),
        "arch": args.arch,
        "inference_bytes": caps,
        "results": results,
        "ratio": ratio,
        "max_abs_difference": max_diff,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
