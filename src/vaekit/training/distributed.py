"""Data-parallel training with ``torch.distributed``: process group, ranks, reductions.

``torchrun --nproc_per_node N -m vaekit train ...`` starts ``N`` copies of vaekit with the
environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. :func:`init_from_env` turns those into a process group (``nccl`` on
CUDA, ``gloo`` on CPU). Without them, or with ``WORLD_SIZE=1``, nothing is initialised and
every function here answers for a single process, so the one-process path pays nothing.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os

import torch
import torch.distributed as dist

#: Environment variables set by ``torchrun`` (and by ``torch.distributed.launch``).
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
#: How long a collective may wait for the slowest rank before the run fails. Loading a large
#: dataset on one rank can take minutes, so this is generous.
TIMEOUT = dt.timedelta(minutes=30)


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset or not a number)."""
    try:
        return max(1, int(os.environ.get(ENV_WORLD_SIZE, "1")))
    except ValueError:
        return 1


def is_distributed() -> bool:
    """Whether a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Return this process's rank: from the process group, else ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get(ENV_RANK, "0"))
    except ValueError:
        return 0


def world_size() -> int:
    """Return the number of processes training together (1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """Tell whether this is rank 0, the only process that writes files and prints results.

    Works before the process group exists (it reads ``RANK``), so the command line can
    decide early.
    """
    return rank() == 0


def local_rank() -> int:
    """Index of this process on its machine (``LOCAL_RANK``; 0 when unset)."""
    try:
        return int(os.environ.get(ENV_LOCAL_RANK, "0"))
    except ValueError:
        return 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group described by torchrun's environment variables.

    Parameters
    ----------
    device : torch.device
        Where this rank trains: CUDA selects the ``nccl`` backend, anything else ``gloo``.

    Returns
    -------
    bool
        ``True`` when this process now trains with others (an existing group counts too).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1 or not dist.is_available():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    # Leaving the group to interpreter shutdown tears its threads down in no set order;
    # one of 9 two-process runs on a loaded 2-core machine died there ("terminate called
    # without an active exception", exit -6) after finishing its work.
    atexit.register(_leave_group)
    return dist.get_world_size() > 1


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def default_device_index() -> int:
    """Return the CUDA device of this rank: ``LOCAL_RANK`` modulo the visible devices."""
    n = torch.cuda.device_count()
    return local_rank() % n if n else 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks (in place) and return it; a no-op for one process."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_same_shape(t: torch.Tensor) -> list[torch.Tensor]:
    """``[t of rank 0, t of rank 1, ...]`` for a tensor of the same shape on every rank."""
    if not is_distributed():
        return [t]
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out
