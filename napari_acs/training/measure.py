"""Cost measurements for the ACS-vs-3D comparison: parameters, FLOPs, peak training memory."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from napari_acs.models.table import count_parameters

_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: How often the CPU peak-memory sampler reads the resident set size (s).
SAMPLE_SECONDS = 0.02


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


def _rss_bytes() -> int | None:
    """This process's resident set size (Linux ``/proc/self/statm``), or ``None``."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of a stretch of work, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` since :meth:`start`. CPU (Linux): the
    largest resident set size a sampling thread saw (every :data:`SAMPLE_SECONDS`)
    above the resident size at :meth:`start`; nothing process-wide is reset, so other
    measurements in the same process (napari's, a profiler's) are unaffected.
    NaN where neither can be read.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base: int | None = None
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self._base = _rss_bytes()
        if self._base is None:
            return
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="napari-acs peak memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def peak_mib(self) -> float:
        """The peak so far (MiB above the start); the sampling stops."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self._base is None or self._thread is None:
            return math.nan
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes() or 0)
        return max(self._peak - self._base, 0) / 2**20
