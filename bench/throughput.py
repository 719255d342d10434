"""Training throughput of vaekit's trainer against a plain PyTorch loop (docs: "Speed").

Protocol
--------
Both methods train the same 784-400-20 MLP VAE with a Bernoulli likelihood on
Fashion-MNIST's 60,000 training images, batch size 128, Adam with learning rate 1e-3, for
the same number of epochs, one after the other in this one process:

* **plain** - the pytorch/examples VAE recipe: ``fc1`` 784->400, ``fc21``/``fc22`` 400->20
  (mean, log-variance), ``fc3`` 20->400, ``fc4`` 400->784, ReLU hidden units and a sigmoid
  output; loss ``F.binary_cross_entropy(recon, x, reduction="sum")`` plus the analytic KL;
  ``DataLoader(TensorDataset(x), batch_size=128, shuffle=True)`` over float images in
  [0, 1]; per batch ``loss.backward(); optimizer.step()``, the epoch loss accumulated with
  ``loss.item()``.
* **vaekit** - ``VAE(arch="mlp", hidden_dims=(400,), latent_dim=20, likelihood="bernoulli",
  batch_size=128, learning_rate=1e-3, lr_schedule="constant", kl_warmup_epochs=0,
  validation_fraction=0.0)``
  fitted on the uint8 images from ``load_dataset("fashion-mnist")``. Its encoder emits
  mean and log-variance from one 400->40 layer, which has exactly the parameters of
  ``fc21`` and ``fc22``; the script checks that the parameter counts match. The
  learning rate is constant, as in the recipe (vaekit's default cosine decay would make a
  different optimisation problem, not a faster loop).

Images/s = 60,000 x epochs / wall seconds of training. Data loading (reading the IDX files,
the uint8 -> float conversion the recipe's dataset needs) is excluded; everything inside
``VAE.fit`` is included, as is building the plain model, optimiser and DataLoader. Before
the timed runs both methods train one untimed warm-up epoch on 10,000 images, in the same
order as the timed runs (``--order``).

Loss: the final training loss of each is the mean negative ELBO per image (nats) over its
last epoch, as logged during training (vaekit: ``history_[-1]["loss"]``). Because those are
averaged while the weights change, both trained models are then also scored by one common
function on all 60,000 training images: negative ELBO per image with one reparameterised
posterior sample (identical noise for both, fixed seed), Bernoulli cross-entropy summed over
pixels plus the analytic KL. ``-vae.score(x)`` is printed beside it as a cross-check.

Target: vaekit >= 1.5x the images/s of the plain loop with a final loss no worse.

Run from the repository root::

    python bench/throughput.py --epochs 10 --json runs/throughput.json

The machines are shared and noisy: compare the ratio, not absolute images/s. The report
shows how contended each run was - ``cpu/wall`` (CPUs this process used on average) and
``others`` (CPUs that other processes used, from ``/proc/stat``) - and warns when others
used more than a quarter of a CPU. It also gives the images/s of each method's fastest
epoch and their ratio, which a burst of load elsewhere disturbs less.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import _common

N_PIXELS = 784
HIDDEN = 400
LATENT = 20
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
#: Images in the untimed warm-up run of each method (one epoch).
N_WARMUP = 10_000
#: Images per forward pass when scoring the trained models.
EVAL_BATCH = 4096
TARGET_RATIO = 1.5
#: Warn when other processes kept more than this many CPUs busy, on average, during a run.
CONTENDED_OTHER_CPUS = 0.25
ORDERS = ("plain,vaekit", "vaekit,plain")

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Decoder = Callable[[torch.Tensor], torch.Tensor]


# --- (b) the plain PyTorch loop: the pytorch/examples VAE recipe ---------------------------
class PlainVAE(nn.Module):
    """The pytorch/examples MLP VAE: 784-400-(20, 20) encoder, 20-400-784 decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(N_PIXELS, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, LATENT)
        self.fc22 = nn.Linear(HIDDEN, LATENT)
        self.fc3 = nn.Linear(LATENT, HIDDEN)
        self.fc4 = nn.Linear(HIDDEN, N_PIXELS)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of flat images ``(B, 784)``."""
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """One sample ``mu + std * eps`` from the posterior."""
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid decoder output ``(B, 784)`` (used only by the common evaluation)."""
        return self.fc4(F.relu(self.fc3(z)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities ``(B, 784)``."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, mean and log-variance of images ``(B, 1, 28, 28)``."""
        mu, logvar = self.encode(x.view(-1, N_PIXELS))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def plain_loss(
    recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """The recipe's loss: summed binary cross-entropy plus the analytic KL, batch sum."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, N_PIXELS), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_plain(
    x01: torch.Tensor, epochs: int, seed: int, device: str
) -> tuple[PlainVAE, dict[str, Any]]:
    """Train the recipe on float images ``x01`` in [0, 1]; return the model and timings.

    The timed region covers building the model, optimiser and DataLoader and all epochs.
    """
    torch.manual_seed(seed)
    losses, seconds = [], []
    with _common.measured() as meter:
        model = PlainVAE().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        train_loader = DataLoader(TensorDataset(x01), batch_size=BATCH_SIZE, shuffle=True)
        for _epoch in range(epochs):
            t0 = time.perf_counter()
            model.train()
            train_loss = 0.0
            for (data,) in train_loader:
                data = data.to(device)
                optimizer.zero_grad()
                recon_batch, mu, logvar = model(data)
                loss = plain_loss(recon_batch, data, mu, logvar)
                loss.backward()
                train_loss += loss.item()
                optimizer.step()
            losses.append(train_loss / len(train_loader.dataset))
            seconds.append(time.perf_counter() - t0)
    model.eval()
    return model, _run_record(len(x01), epochs, meter, losses, seconds)


# --- (a) vaekit -------------------------------------------------------------------------
def train_vaekit(
    x_uint8: np.ndarray, epochs: int, seed: int, device: str
) -> tuple[Any, dict[str, Any]]:
    """Fit ``vaekit.VAE`` on uint8 images; return the estimator and timings of ``fit``."""
    from vaekit import VAE

    vae = VAE(
        arch="mlp",
        hidden_dims=(HIDDEN,),
        latent_dim=LATENT,
        likelihood="bernoulli",
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        lr_schedule="constant",
        max_epochs=epochs,
        kl_warmup_epochs=0,
        validation_fraction=0.0,
        device=device,
        random_state=seed,
    )
    with _common.measured() as meter:
        vae.fit(x_uint8)
    losses = [float(row["loss"]) for row in vae.history_]
    seconds = [float(row["seconds"]) for row in vae.history_]
    return vae, _run_record(len(x_uint8), epochs, meter, losses, seconds)


def _run_record(
    n: int, epochs: int, meter: dict[str, float], losses: list[float], seconds: list[float]
) -> dict[str, Any]:
    """Summary of one timed training run; ``meter`` comes from ``_common.measured``."""
    return {
        "images_per_s": n * epochs / meter["wall_s"],
        "best_epoch_images_per_s": n / min(seconds),
        "wall_s": meter["wall_s"],
        "cpu_s": meter["cpu_s"],
        "other_cpus": meter["other_cpus"],
        "final_loss": losses[-1],
        "epoch_losses": losses,
        "epoch_seconds": seconds,
    }


# --- common evaluation ------------------------------------------------------------------
@torch.no_grad()
def negative_elbo(
    encode: Encoder, decode_logits: Decoder, x_uint8: torch.Tensor, seed: int, device: str
) -> float:
    """Mean negative ELBO per image in nats, one reparameterised sample per image.

    Parameters
    ----------
    encode : callable
        ``(B, 1, 28, 28)`` float images in [0, 1] -> posterior ``(mean, logvar)``.
    decode_logits : callable
        Latents ``(B, 20)`` -> Bernoulli logits with ``B * 784`` elements.
    x_uint8 : torch.Tensor
        ``uint8`` images ``(N, 1, 28, 28)``.
    seed : int
        Seed of the posterior noise; the same seed gives every model the same noise.
    device : str
        Where the model lives.

    Returns
    -------
    float
        Bernoulli cross-entropy summed over pixels plus the analytic KL to N(0, I),
        averaged over the ``N`` images.
    """
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(x_uint8), EVAL_BATCH):
        xb = x_uint8[start : start + EVAL_BATCH].to(device, torch.float32).div_(255.0)
        mu, logvar = encode(xb)
        eps = torch.randn(mu.shape, generator=gen).to(device)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = decode_logits(z).reshape(len(xb), -1)
        rec = F.binary_cross_entropy_with_logits(logits, xb.reshape(len(xb), -1), reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        total += float(rec) + float(kl)
    return total / len(x_uint8)


def evaluate_plain(model: PlainVAE, x_uint8: torch.Tensor, seed: int, device: str) -> float:
    """Common negative ELBO of the plain model."""
    return negative_elbo(
        lambda x: model.encode(x.view(-1, N_PIXELS)), model.decode_logits, x_uint8, seed, device
    )


def evaluate_vaekit(vae: Any, x_uint8: torch.Tensor, seed: int, device: str) -> float:
    """Common negative ELBO of vaekit's trained module."""
    module = vae.module_

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        post = module.encode(x)
        return post.mean, post.logvar

    return negative_elbo(encode, module.decode, x_uint8, seed, device)


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --- driver -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of both runs (default 0)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    p.add_argument(
        "--order",
        choices=ORDERS,
        default=ORDERS[0],
        metavar="ORDER",
        help="run order, 'plain,vaekit' (default) or 'vaekit,plain'",
    )
    p.add_argument("--device", default="cpu", help="torch device of both runs (default cpu)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def run_method(
    name: str, x_uint8: np.ndarray, x01: torch.Tensor, epochs: int, seed: int, device: str
) -> tuple[Any, dict[str, Any]]:
    """Train method ``name`` ("plain" or "vaekit") on the given images."""
    gc.collect()
    if name == "plain":
        return train_plain(x01, epochs, seed, device)
    return train_vaekit(x_uint8, epochs, seed, device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report and return the results."""
    args = parse_args(argv)
    date, command = _common.utc_now(), _common.command_line()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _common.use_checkout()
    import vaekit
    from vaekit import load_dataset

    info = _common.machine_info()
    _common.print_header("vaekit training throughput vs plain PyTorch", info, command, date)
    print(f"vaekit:  {vaekit.__version__} from {Path(vaekit.__file__).parent}")
    print(
        f"setup:   Fashion-MNIST train (60,000), MLP 784-{HIDDEN}-{LATENT}, Bernoulli, "
        f"batch {BATCH_SIZE}, Adam lr {LEARNING_RATE:g}, epochs={args.epochs}, "
        f"seed={args.seed}, device={args.device}, order={args.order}",
        flush=True,
    )

    # Data loading: not timed.
    _common.ensure_fashion_mnist()
    ds = load_dataset("fashion-mnist")
    x_uint8 = ds.x_train
    x_t = torch.from_numpy(np.ascontiguousarray(x_uint8))
    x01 = x_t.to(torch.float32).div_(255.0)  # the recipe's float dataset
    order = args.order.split(",")

    for name in order:  # untimed warm-up
        run_method(name, x_uint8[:N_WARMUP], x01[:N_WARMUP], 1, args.seed, args.device)

    models: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in order:
        print(f"training {name} ...", flush=True)
        models[name], results[name] = run_method(
            name, x_uint8, x01, args.epochs, args.seed, args.device
        )

    plain, vae = models["plain"], models["vaekit"]
    n_plain, n_vaekit = n_parameters(plain), n_parameters(vae.module_)
    results["plain"]["eval_loss"] = evaluate_plain(plain, x_t, args.seed, args.device)
    results["vaekit"]["eval_loss"] = evaluate_vaekit(vae, x_t, args.seed, args.device)
    vaekit_score_loss = -vae.score(x_uint8)
    load_end = _common.load_average()

    ratio = results["vaekit"]["images_per_s"] / results["plain"]["images_per_s"]
    best_ratio = (
        results["vaekit"]["best_epoch_images_per_s"] / results["plain"]["best_epoch_images_per_s"]
    )
    a, b = results["vaekit"]["final_loss"], results["plain"]["final_loss"]
    ea, eb = results["vaekit"]["eval_loss"], results["plain"]["eval_loss"]
    threads = torch.get_num_threads()

    print(
        f"parameters: plain {n_plain:,}, vaekit {n_vaekit:,} "
        f"({'match' if n_plain == n_vaekit else 'MISMATCH'})"
    )
    print()
    print(
        f"{'method':<8} {'images/s':>9} {'best epoch':>10} {'train s':>8} {'cpu/wall':>8} "
        f"{'others':>6} {'final epoch loss':>16} {'eval loss':>10}"
    )
    for name in ("plain", "vaekit"):
        r = results[name]
        print(
            f"{name:<8} {r['images_per_s']:>9,.0f} {r['best_epoch_images_per_s']:>10,.0f} "
            f"{r['wall_s']:>8.1f} {r['cpu_s'] / r['wall_s']:>8.2f} {r['other_cpus']:>6.2f} "
            f"{r['final_loss']:>16.2f} {r['eval_loss']:>10.2f}"
        )
    print(
        "(best epoch: images/s of the fastest epoch; cpu/wall: CPUs this process used; "
        "others: CPUs other processes used, on average over the run)"
    )
    print()
    print(f"ratio vaekit/plain = {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"loss: vaekit {a:.2f} vs plain {b:.2f} (no worse: {'yes' if a <= b else 'no'})")
    print(
        f"eval loss (common function, all 60,000 training images): vaekit {ea:.2f} vs plain "
        f"{eb:.2f} (no worse: {'yes' if ea <= eb else 'no'}); -vae.score(x) = "
        f"{vaekit_score_loss:.2f}"
    )
    print(
        f"load:    {load_end} (1/5/15-min load average at end; {info['nproc']} CPUs, "
        f"{threads} torch threads)"
    )
    print(f"best-epoch ratio vaekit/plain = {best_ratio:.2f} (less sensitive to bursts of load)")
    for name in ("plain", "vaekit"):
        others = results[name]["other_cpus"]
        if others > CONTENDED_OTHER_CPUS:
            print(
                f"WARNING: other processes kept {others:.2f} of {info['nproc']} CPUs busy during "
                f"the {name} run; its timing is contended and the ratio unreliable"
            )

    report = {
        "benchmark": "throughput",
        "date": date,
        "command": command,
        "machine": {**info, "load_average_end": load_end},
        "vaekit_version": vaekit.__version__,
        "settings": {
            "epochs": args.epochs,
            "seed": args.seed,
            "threads": threads,
            "order": args.order,
            "device": args.device,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "architecture": f"{N_PIXELS}-{HIDDEN}-{LATENT}",
            "n_train": len(x_uint8),
            "warmup_images": N_WARMUP,
        },
        "parameters": {"plain": n_plain, "vaekit": n_vaekit},
        "results": results,
        "vaekit_score_loss": vaekit_score_loss,
        "ratio": ratio,
        "best_epoch_ratio": best_ratio,
        "target_ratio": TARGET_RATIO,
        "loss_no_worse": a <= b,
        "eval_loss_no_worse": ea <= eb,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
