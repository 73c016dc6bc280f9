"""DeepCluster on several processes with torch DDP (``torchrun``): the few collectives it needs.

One process per device (GPU, or a share of the CPU cores with gloo). Every process holds
all images; the embedding is computed shard by shard and gathered, rank 0 clusters and
broadcasts the pseudo-labels, and every global batch is split across the processes, whose
gradients DDP averages. With one process (no process group) every function here is the
identity, so the estimator has a single code path.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import distributed as dist

__all__ = ["world", "init_from_env", "shard", "gather_rows", "broadcast_labels", "all_sum"]


def world() -> tuple[int, int]:
    """``(rank, number of processes)``: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str = "auto") -> str:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``): NCCL on GPUs (one per process, by local
    rank), gloo on the CPU. Returns the device this process should use; without
    ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing is joined and ``device`` is returned."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo")
    return device


def _bounds(n: int, size: int) -> np.ndarray:
    return np.linspace(0, n, size + 1).round().astype(int)


def shard(n: int) -> slice:
    """This process's contiguous share of ``n`` rows (sizes differ by at most one)."""
    rank, size = world()
    bounds = _bounds(n, size)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The rows of every process's :func:`shard` of ``n`` rows, in order (``local`` is this
    process's share; the result is on ``local``'s device)."""
    rank, size = world()
    if size == 1:
        return local
    bounds = _bounds(n, size)
    padded = local.new_zeros((int(np.diff(bounds).max()), *local.shape[1:]))  # all_gather needs equal shapes
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:b - a] for p, a, b in zip(parts, bounds[:-1], bounds[1:])])


def broadcast_labels(labels: np.ndarray | None, n: int, value: float, device) -> tuple[np.ndarray, float]:
    """Rank 0's ``(labels, value)`` on every process (the others pass ``labels=None``)."""
    rank, size = world()
    if size == 1:
        return labels, value
    buf = torch.empty(n + 1, dtype=torch.float64, device=device)
    if rank == 0:
        buf[:n] = torch.as_tensor(labels, dtype=torch.float64)
        buf[n] = value
    dist.broadcast(buf, src=0)
    buf = buf.cpu()
    return buf[:n].numpy().astype(np.int64), float(buf[n])


def all_sum(value: float, device) -> float:
    """The sum of ``value`` over the processes."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())
