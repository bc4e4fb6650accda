"""PyTorch's own distributed engine: process group set-up for ``torchrun`` and small collectives.

``torchrun --nproc_per_node=N -m napari_acs.training ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`init_distributed`
joins that group (NCCL on CUDA, Gloo on the CPU) and gives each process its device.
A single process (no ``WORLD_SIZE`` > 1) runs without any process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from napari_acs.inference.device import resolve_device


@dataclass
class DistContext:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and history and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str | torch.device = "auto") -> tuple[DistContext, torch.device]:
    """Join the ``torchrun`` process group if there is one; return the context and this rank's device.

    An already initialised group (a caller's) is used as it is and left open. Under
    several processes a CUDA device becomes ``cuda:<LOCAL_RANK>``.
    """
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=False)
    elif world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)
    else:
        ctx = DistContext()
    if ctx.distributed and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(dev)
    return ctx, dev
