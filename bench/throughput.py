"""Training throughput of vaekit's trainer against a plain PyTorch loop (docs: "Speed").

Protocol
--------
Every method trains the same 784-400-20 MLP VAE with a Bernoulli likelihood on
Fashion-MNIST's 60,000 training images, batch size 128, Adam with learning rate 1e-3, for
the same number of epochs. ``--arch clustering`` gives every method the sizes of vaekit's
default clustering VAE instead, 784-512-256-10, and changes nothing else:

* **plain** - the pytorch/examples VAE recipe: ``fc1`` 784->400, ``fc21``/``fc22`` 400->20
  (mean, log-variance), ``fc3`` 20->400, ``fc4`` 400->784, ReLU hidden units and a sigmoid
  output; loss ``F.binary_cross_entropy(recon, x, reduction="sum")`` plus the analytic KL;
  ``DataLoader(TensorDataset(x), batch_size=128, shuffle=True)`` over float images in
  [0, 1]; per batch ``loss.backward(); optimizer.step()``, the epoch loss accumulated with
  ``loss.item()``.
* **vaekit** - ``VAE(arch="mlp", hidden_dims=(400,), latent_dim=20, likelihood="bernoulli",
  batch_size=128, learning_rate=1e-3, lr_schedule="constant", kl_warmup_epochs=0,
  validation_fraction=0.0, precision="fp32", compile="off")`` on the uint8 images from
  ``load_dataset("fashion-mnist")``, trained by ``vaekit.training.train`` exactly as
  ``VAE.fit`` does. Its encoder emits mean and log-variance from one 400->40 layer, which
  has exactly the parameters of ``fc21`` and ``fc22``; the script checks that the parameter
  counts match. The learning rate is constant, as in the recipe.
* **fast** (with ``--fast``) - vaekit with the fast path: ``precision`` and ``compile`` from
  ``--fast-precision`` (default ``auto``: bf16 on a CUDA device that supports it, fp32 on
  the CPU; ``bf16`` forces it on the CPU too) and ``--fast-compile`` (default ``on``).

Every method runs **in its own Python process, on that process's main thread**, as a user
would run it, and the methods are **interleaved epoch by epoch** (plain epoch 1, vaekit
epoch 1, [fast epoch 1], plain epoch 2, ...): this script sends each process "epoch" over a
pipe and waits for its reply, so a burst of load from other processes hits all of them
alike and only one method computes at a time. (Until 2026-11-28 the methods shared one
process, vaekit's loop in a second thread; torch's OpenMP pool then ran a second team of
worker threads beside the idle main thread's, which on a 2-core AMD EPYC cost vaekit
about 45 % of its speed: 15.5k images/s in the thread against 28k on the main thread of
the same process.) Images/s = 60,000 x epochs / the summed wall seconds of that method's
epochs, timed inside its process from the command's arrival to the end of the epoch;
loading data and building models and loaders are not timed for any method; vaekit's
first epoch includes the loop's own set-up (optimiser, split: milliseconds). The report
also gives the **median of the per-epoch ratios**, the figure least disturbed by a noisy
machine.
Before the timed runs every method trains one untimed epoch on 10,000 images (for ``fast``
that includes compiling).

Loss: the final training loss of each is the mean negative ELBO per image (nats) over its
last epoch, as logged during training. Because those are averaged while the weights change,
the trained models are then also scored by one common function on all 60,000 training
images: negative ELBO per image with one reparameterised posterior sample (identical noise
for all, fixed seed), Bernoulli cross-entropy summed over pixels plus the analytic KL.

Targets: vaekit >= 1.5x the plain loop with a final loss no worse (issue 2); the fast path
>= 2.0x the plain loop with a final loss within 1 % of the fp32 vaekit loop's (issue 6).

Run from the repository root::

    python bench/throughput.py --epochs 10 --fast --json runs/throughput.json

The machines are shared and noisy: compare ratios, not absolute images/s. ``others`` is the
number of CPUs other processes kept busy, on average, during a method's epochs (from
``/proc/stat``, minus the method's own CPU time); the report warns when it exceeds a
quarter of a CPU. It cannot see a neighbour on the host that shares the physical cores:
such phases slow matrix multiplies most, and so the fp32 vaekit loop, whose time is almost
all matrix multiplies, more than the plain loop. Nor can it see a slowdown from within:
until 2026-12-06 vaekit's own step slowed by about a third after a few hundred steps, on
Adam moments stuck at subnormal values (see ``vaekit/training/adam.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import _common

N_PIXELS = 784
#: ``--arch``: (hidden layer widths, latent size). "recipe" is the pytorch/examples VAE
#: (784-400-20); "clustering" is vaekit's default clustering VAE (``VAEClustering()``:
#: 784-512-256-10), which benchmarks.md asks to time as well.
ARCHS = {"recipe": ((400,), 20), "clustering": ((512, 256), 10)}
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
#: Images in the untimed warm-up run of each method (one epoch).
N_WARMUP = 10_000
#: Images per forward pass when scoring the trained models.
EVAL_BATCH = 4096
TARGET_RATIO = 1.5
TARGET_FAST_RATIO = 2.0
#: The fast path's final loss may exceed the fp32 vaekit loop's by at most this fraction.
FAST_LOSS_TOLERANCE = 0.01
#: Warn when other processes kept more than this many CPUs busy, on average, during a run.
CONTENDED_OTHER_CPUS = 0.25
METHODS = ("plain", "vaekit", "fast")

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Decoder = Callable[[torch.Tensor], torch.Tensor]


# --- (b) the plain PyTorch loop: the pytorch/examples VAE recipe ---------------------------
class PlainVAE(nn.Module):
    """The pytorch/examples MLP VAE: 784-400-(20, 20) encoder, 20-400-784 decoder.

    ``hidden`` and ``latent`` give other sizes the same shape (ReLU hidden layers, a mean
    and a log-variance head, a mirrored decoder); the layers are created in the recipe's
    order, so the default sizes draw the recipe's initial weights.
    """

    def __init__(self, hidden: tuple[int, ...] = (400,), latent: int = 20) -> None:
        super().__init__()
        sizes = [N_PIXELS, *hidden]
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.fc21 = nn.Linear(hidden[-1], latent)
        self.fc22 = nn.Linear(hidden[-1], latent)
        sizes = [latent, *reversed(hidden)]
        self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(hidden[0], N_PIXELS)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of flat images ``(B, 784)``."""
        for layer in self.enc:
            x = F.relu(layer(x))
        return self.fc21(x), self.fc22(x)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """One sample ``mu + std * eps`` from the posterior."""
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid decoder output ``(B, 784)`` (used only by the common evaluation)."""
        for layer in self.dec:
            z = F.relu(layer(z))
        return self.out(z)

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


def plain_epochs(
    x01: torch.Tensor, epochs: int, seed: int, device: str, arch: str
) -> Iterator[tuple[float, PlainVAE]]:
    """Train the recipe, sizes ``ARCHS[arch]``, on images ``x01`` in [0, 1], by epochs.

    The model, optimiser and loader are built here, before the first epoch is asked for,
    so that building them is not timed (as for vaekit).

    Returns
    -------
    iterator of (float, PlainVAE)
        Per epoch, the epoch's mean loss per image and the model.
    """
    torch.manual_seed(seed)
    model = PlainVAE(*ARCHS[arch]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    train_loader = DataLoader(TensorDataset(x01), batch_size=BATCH_SIZE, shuffle=True)
    return _plain_epochs(model, optimizer, train_loader, epochs, device)


def _plain_epochs(
    model: PlainVAE,
    optimizer: torch.optim.Optimizer,
    train_loader: DataLoader,
    epochs: int,
    device: str,
) -> Iterator[tuple[float, PlainVAE]]:
    for _epoch in range(epochs):
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
        model.eval()
        yield train_loss / len(train_loader.dataset), model


# --- (a) vaekit -------------------------------------------------------------------------
def make_vae(
    epochs: int, seed: int, device: str, precision: str, compile_mode: str, arch: str = "recipe"
) -> Any:
    """The estimator of the protocol (unfitted), sizes ``ARCHS[arch]``."""
    from vaekit import VAE

    hidden, latent = ARCHS[arch]
    return VAE(
        arch="mlp",
        hidden_dims=hidden,
        latent_dim=latent,
        likelihood="bernoulli",
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        lr_schedule="constant",
        max_epochs=epochs,
        kl_warmup_epochs=0,
        validation_fraction=0.0,
        device=device,
        random_state=seed,
        precision=precision,
        compile=compile_mode,
    )


def vaekit_child(args: argparse.Namespace, x_uint8: np.ndarray, channel: Channel) -> None:
    """Serve vaekit's training loop epoch by epoch, on this process's main thread.

    The loop runs exactly as ``VAE.fit`` runs it (``_setup_fit``, then
    ``vaekit.training.train``); its ``on_epoch_end`` callback reports the epoch and waits
    for the parent's next command, so nothing computes while the other method's process
    has its turn.
    """
    from vaekit.estimators.base import to_tensor
    from vaekit.training import train

    precision, compile_mode = ("fp32", "off")
    if args.child == "fast":
        precision, compile_mode = args.fast_precision, args.fast_compile
    # Untimed warm-up: one epoch on N_WARMUP images (for "fast" this compiles).
    warm = make_vae(1, args.seed, args.device, precision, compile_mode, args.arch)
    xw = to_tensor(x_uint8[:N_WARMUP])
    warm._setup_fit(xw, None)
    train(warm.module_, [xw], warm._train_config(warm.seed_))

    vae = make_vae(args.epochs, args.seed, args.device, precision, compile_mode, args.arch)
    x = to_tensor(x_uint8)
    vae._setup_fit(x, None)  # what VAE.fit does before the loop: seed, model
    cfg = vae._train_config(vae.seed_)
    channel.send(n_train=len(x))
    channel.wait("epoch")

    def report(row: dict[str, float]) -> None:
        channel.epoch_done(float(row["loss"]))
        if len(channel.epochs) < args.epochs:
            channel.wait("epoch")

    train(vae.module_, [x], cfg, on_epoch_end=report)
    vae.module_.eval()
    channel.wait("finish")
    x_t = torch.from_numpy(np.ascontiguousarray(x_uint8))
    channel.send(
        eval_loss=evaluate_vaekit(vae, x_t, args.seed, args.device),
        n_parameters=n_parameters(vae.module_),
    )


def plain_child(args: argparse.Namespace, x_uint8: np.ndarray, channel: Channel) -> None:
    """Serve the plain loop epoch by epoch, on this process's main thread."""
    x_t = torch.from_numpy(np.ascontiguousarray(x_uint8))
    x01 = x_t.to(torch.float32).div_(255.0)  # the recipe's float dataset
    for _ in plain_epochs(x01[:N_WARMUP], 1, args.seed, args.device, args.arch):  # warm-up
        pass
    model = None
    epochs = plain_epochs(x01, args.epochs, args.seed, args.device, args.arch)
    channel.send(n_train=len(x01))
    for _ in range(args.epochs):
        channel.wait("epoch")
        loss, model = next(epochs)
        channel.epoch_done(loss)
    assert model is not None
    channel.wait("finish")
    channel.send(
        eval_loss=evaluate_plain(model, x_t, args.seed, args.device),
        n_parameters=n_parameters(model),
    )


class Channel:
    """A child's side of the line protocol: commands on stdin, JSON replies on stdout."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._wall0 = self._cpu0 = 0.0

    def wait(self, command: str) -> None:
        """Block until the parent sends ``command``; an epoch's clocks start on "epoch"."""
        line = sys.stdin.readline().strip()
        if line != command:
            raise SystemExit(f"throughput child: expected {command!r}, got {line!r}")
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def epoch_done(self, loss: float) -> None:
        """Stop the clocks and report the epoch (wall and CPU seconds, loss per image)."""
        row = {
            "wall_s": time.perf_counter() - self._wall0,
            "cpu_s": time.process_time() - self._cpu0,
            "loss": loss,
        }
        self.epochs.append(row)
        self.send(**row)

    @staticmethod
    def send(**values: float) -> None:
        """Write one JSON line to the parent."""
        sys.stdout.write(json.dumps(values) + "\n")
        sys.stdout.flush()


def run_child(args: argparse.Namespace) -> None:
    """Entry point of ``--child NAME``: one method, driven by the parent over a pipe."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _common.use_checkout()
    from vaekit import load_dataset

    x_uint8 = load_dataset("fashion-mnist").x_train
    serve = plain_child if args.child == "plain" else vaekit_child
    serve(args, x_uint8, Channel())


class MethodProcess:
    """The parent's handle on one method's child process."""

    def __init__(self, name: str, args: argparse.Namespace):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            name,
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--device",
            args.device,
            "--arch",
            args.arch,
            "--fast-precision",
            args.fast_precision,
            "--fast-compile",
            args.fast_compile,
        ]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.records: list[dict[str, float]] = []

    def ask(self, command: str | None) -> dict[str, float]:
        """Send ``command`` (None: send nothing); return the child's next JSON reply."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"the {self.name} process ended early (exit status {code})")
        return json.loads(line)

    def epoch(self) -> None:
        """Run one epoch; record its wall/CPU seconds, loss and other processes' CPU use."""
        busy0 = _common.busy_cpu_seconds()
        t0 = time.perf_counter()
        row = self.ask("epoch")
        wall, busy1 = time.perf_counter() - t0, _common.busy_cpu_seconds()
        others = math.nan
        if busy0 is not None and busy1 is not None:
            others = max(0.0, busy1 - busy0 - row["cpu_s"]) / max(wall, row["wall_s"])
        self.records.append({**row, "other_cpus": others})

    def finish(self) -> dict[str, float]:
        """Let the child score its model; wait for it to exit."""
        out = self.ask("finish")
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise SystemExit(f"the {self.name} process failed (exit status {self.proc.returncode})")
        return out


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
        Latents ``(B, latent)`` -> Bernoulli logits with ``B * 784`` elements.
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


def architecture(arch: str) -> str:
    """Layer sizes of ``ARCHS[arch]`` as text, e.g. ``784-400-20``."""
    hidden, latent = ARCHS[arch]
    return "-".join(map(str, (N_PIXELS, *hidden, latent)))


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --- driver -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of all runs (default 0)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    p.add_argument("--device", default="cpu", help="torch device of all runs (default cpu)")
    p.add_argument(
        "--arch",
        default="recipe",
        choices=tuple(ARCHS),
        help="model sizes: the pytorch/examples VAE 784-400-20 (recipe, default) or "
        "vaekit's default clustering VAE 784-512-256-10 (clustering)",
    )
    p.add_argument("--fast", action="store_true", help="also time vaekit's fast path")
    p.add_argument("--fast-precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--fast-compile", default="on", choices=("auto", "on", "off"))
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", choices=METHODS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def summarise(records: list[dict[str, float]], n: int) -> dict[str, Any]:
    """Images/s and load figures of one method's timed epochs."""
    wall = sum(r["wall_s"] for r in records)
    return {
        "images_per_s": n * len(records) / wall,
        "best_epoch_images_per_s": n / min(r["wall_s"] for r in records),
        "wall_s": wall,
        "cpu_s": sum(r["cpu_s"] for r in records),
        "other_cpus": sum(r["other_cpus"] * r["wall_s"] for r in records) / wall,
        "final_loss": records[-1]["loss"],
        "epoch_losses": [r["loss"] for r in records],
        "epoch_seconds": [r["wall_s"] for r in records],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report and return the results."""
    args = parse_args(argv)
    if args.child is not None:
        run_child(args)
        return {}
    date, command = _common.utc_now(), _common.command_line()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _common.use_checkout()
    import vaekit
    from vaekit.training import fastpath

    info = _common.machine_info()
    _common.print_header("vaekit training throughput vs plain PyTorch", info, command, date)
    methods = ["plain", "vaekit"] + (["fast"] if args.fast else [])
    fast_desc = ""
    if args.fast:
        dtype = fastpath.resolve_precision(args.fast_precision, torch.device(args.device))
        fast_desc = (
            f"; fast = precision {args.fast_precision} (-> {dtype or 'fp32'}), "
            f"compile {args.fast_compile}; cpu bf16 instructions: {fastpath.cpu_has_bf16()}"
        )
    print(f"vaekit:  {vaekit.__version__} from {Path(vaekit.__file__).parent}")
    print(
        f"setup:   Fashion-MNIST train (60,000), MLP {architecture(args.arch)}, Bernoulli, "
        f"batch {BATCH_SIZE}, Adam lr {LEARNING_RATE:g}, epochs={args.epochs}, "
        f"seed={args.seed}, device={args.device}, methods interleaved by epoch: "
        f"{', '.join(methods)}{fast_desc}",
        flush=True,
    )

    # Each method runs in its own process (see the docstring); loading is not timed.
    _common.ensure_fashion_mnist()
    procs = {m: MethodProcess(m, args) for m in methods}
    # Each process reports its training-set size once it has loaded it and warmed up.
    n_train = min(int(procs[m].ask(None)["n_train"]) for m in methods)
    for epoch in range(args.epochs):
        for m in methods:
            procs[m].epoch()
        print(
            f"epoch {epoch + 1}: "
            + "  ".join(
                f"{m} {n_train / procs[m].records[-1]['wall_s']:,.0f} img/s "
                f"(others {procs[m].records[-1]['other_cpus']:.2f})"
                for m in methods
            ),
            flush=True,
        )
    finals = {m: procs[m].finish() for m in methods}
    records = {m: procs[m].records for m in methods}

    results = {m: summarise(records[m], n_train) for m in methods}
    for m in methods:
        results[m]["eval_loss"] = finals[m]["eval_loss"]
    n_plain, n_vaekit = finals["plain"]["n_parameters"], finals["vaekit"]["n_parameters"]
    load_end = _common.load_average()
    threads = args.threads or torch.get_num_threads()

    def ratios(m: str) -> tuple[float, float, list[float]]:
        per_epoch = [
            p["wall_s"] / r["wall_s"] for p, r in zip(records["plain"], records[m], strict=True)
        ]
        overall = results[m]["images_per_s"] / results["plain"]["images_per_s"]
        return overall, statistics.median(per_epoch), per_epoch

    print(
        f"parameters: plain {n_plain:,}, vaekit {n_vaekit:,} "
        f"({'match' if n_plain == n_vaekit else 'MISMATCH'})"
    )
    print()
    print(
        f"{'method':<8} {'images/s':>9} {'best epoch':>10} {'train s':>8} {'cpu/wall':>8} "
        f"{'others':>6} {'final epoch loss':>16} {'eval loss':>10}"
    )
    for name in methods:
        r = results[name]
        print(
            f"{name:<8} {r['images_per_s']:>9,.0f} {r['best_epoch_images_per_s']:>10,.0f} "
            f"{r['wall_s']:>8.1f} {r['cpu_s'] / r['wall_s']:>8.2f} {r['other_cpus']:>6.2f} "
            f"{r['final_loss']:>16.2f} {r['eval_loss']:>10.2f}"
        )
    print(
        "(best epoch: images/s of the fastest epoch; cpu/wall: CPUs this process used; "
        "others: CPUs other processes used, on average over the method's epochs)"
    )
    print()
    summary: dict[str, Any] = {}
    b, eb = results["plain"]["final_loss"], results["plain"]["eval_loss"]
    for m in methods[1:]:
        overall, median, per_epoch = ratios(m)
        a, ea = results[m]["final_loss"], results[m]["eval_loss"]
        target = TARGET_RATIO if m == "vaekit" else TARGET_FAST_RATIO
        print(
            f"ratio {m}/plain = {overall:.2f} overall, {median:.2f} median of epochs "
            f"({', '.join(f'{v:.2f}' for v in per_epoch)}); target >= {target}"
        )
        print(
            f"  final loss {m} {a:.2f} vs plain {b:.2f} (no worse: {'yes' if a <= b else 'no'});"
            f" eval loss {ea:.2f} vs {eb:.2f} (no worse: {'yes' if ea <= eb else 'no'})"
        )
        summary[m] = {
            "ratio": overall,
            "median_epoch_ratio": median,
            "epoch_ratios": per_epoch,
            "loss_no_worse": a <= b,
            "eval_loss_no_worse": ea <= eb,
        }
    if "fast" in results:
        a, ref = results["fast"]["final_loss"], results["vaekit"]["final_loss"]
        ok = a <= ref * (1 + FAST_LOSS_TOLERANCE)
        print(
            f"  fast final loss vs fp32 vaekit: {a:.2f} vs {ref:.2f} ({(a - ref) / ref:+.2%}; "
            f"within {FAST_LOSS_TOLERANCE:.0%}: {'yes' if ok else 'no'})"
        )
        summary["fast"]["loss_within_1pct_of_fp32"] = ok
    print(
        f"load:    {load_end} (1/5/15-min load average at end; {info['nproc']} CPUs, "
        f"{threads} torch threads)"
    )
    for name in methods:
        others = results[name]["other_cpus"]
        if others > CONTENDED_OTHER_CPUS:
            print(
                f"WARNING: other processes kept {others:.2f} of {info['nproc']} CPUs busy during "
                f"the {name} epochs; absolute timings are contended (ratios less so)"
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
            "methods": methods,
            "fast_precision": args.fast_precision if args.fast else None,
            "fast_compile": args.fast_compile if args.fast else None,
            "device": args.device,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "architecture": architecture(args.arch),
            "n_train": n_train,
            "warmup_images": N_WARMUP,
        },
        "parameters": {"plain": n_plain, "vaekit": n_vaekit},
        "results": results,
        "summary": summary,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
