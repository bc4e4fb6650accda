"""Cost measurements for the ACS-vs-3D comparison: parameters, FLOPs, peak training memory."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from napari_acs.models.table import count_parameters

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def forward_gflops(model: nn.Module, input_size: Sequence[int], in_channels: int = 4) -> float:
    """GFLOPs (1e9 floating-point operations; a multiply-add counts 2) of one forward pass
    over one ``(1, in_channels, *input_size)`` input, counted by PyTorch's FlopCounterMode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_channels, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (a ``DistributedDataParallel`` wrapper counts its module once)."""
    return count_parameters(getattr(model, "module", model))


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of a stretch of work, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` since :meth:`start`. CPU (Linux): the
    process's resident-set high-water mark (reset through ``/proc/self/clear_refs``)
    above its resident size at :meth:`start`. NaN where neither can be read.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base_kib: int | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self._base_kib = None
            return
        self._base_kib = _status_kib("VmRSS")

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _status_kib("VmHWM")
        if self._base_kib is None or peak is None:
            return math.nan
        return max(peak - self._base_kib, 0) / 1024
