"""The single-machine fast path: bf16 autocast and ``torch.compile``, chosen per machine.

Both are opt-in speed knobs of :class:`~vaekit.training.TrainConfig`:

* ``precision`` - ``"fp32"``, ``"bf16"`` (autocast: matrix multiplies in bfloat16, weights,
  optimiser state and loss reductions in float32) or ``"auto"``: bf16 on CUDA devices
  with bf16 support, fp32 on the CPU. On a CPU with AVX512-BF16 (a 2-core AMD EPYC) bf16
  trained the benchmark VAE about 1.4x faster with the same ELBO, but its latents
  clustered worse (Fashion-MNIST, five seeds: ACC 0.641 against 0.666 with fp32, and the
  GMM on the same latents 0.578 against 0.625) and it erased the gain of unlabeled images
  in the digits semi-supervised test, so the CPU default is fp32 and bf16 is opt-in there
  (BENCHMARKS.md). Without AVX512-BF16/AMX, bf16 on the CPU is emulated and slower.
* ``compile`` - ``"on"``, ``"off"`` or ``"auto"`` (= off): ``torch.compile`` fuses the
  element-wise work of the loss, but compiling costs tens of seconds on a small CPU, which
  short runs never win back (measured in bench/throughput.py), so it is never chosen
  automatically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

from vaekit.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "on", "off")
#: ``/proc/cpuinfo`` flags of CPUs that compute bf16 dot products in hardware.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = "/proc/cpuinfo"


@cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16 flags)."""
    try:
        with open(CPUINFO, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(CPU_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def check_fast_path(precision: str, compile_mode: str) -> None:
    """Raise :class:`ConfigError` for an unknown ``precision`` or ``compile`` value."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if compile_mode not in COMPILE_MODES:
        raise ConfigError(
            f"compile must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}"
        )


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"}
        The requested precision.
    device : torch.device
        Where the model runs.

    Returns
    -------
    torch.dtype or None
        ``torch.bfloat16`` when bf16 autocast should be used, else ``None``.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return None  # the CPU (see the module docstring) and other devices: fp32


def resolve_compile(compile_mode: str) -> bool:
    """Whether to ``torch.compile`` the loss (``"auto"`` means no; see module docstring)."""
    return compile_mode == "on"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Context that runs the enclosed forward pass under ``dtype`` autocast (or unchanged)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def maybe_compile(fn: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """Return ``torch.compile(fn)`` when ``enabled``, else ``fn``.

    Shapes are static: one recompile for the last, shorter batch of an epoch. The KL
    weight reaches the compiled function as a 0-d tensor: a Python float is a constant to
    ``torch.compile``, so each new weight of the warm-up would compile the loss again.
    """
    if not enabled:
        return fn
    compiled = torch.compile(fn, dynamic=False)

    def call(*batch: torch.Tensor, kl_weight: float) -> Any:
        weight = torch.tensor(kl_weight, dtype=torch.float32, device=batch[0].device)
        return compiled(*batch, kl_weight=weight)

    return call
