"""What this process's CPU is: model name, vector extensions, and the kind the ACS rules key on.

The ACS operator's CPU paths (:mod:`napari_acs.models.acs_paths`) depend on the width of
oneDNN's vector kernels: 8 float32 lanes with AVX2, 16 with AVX-512. ``cpu_kind`` gives
``"avx512"`` where torch dispatches its CPU kernels to AVX-512 and ``"avx2"`` everywhere
else (AVX2 or less, or a non-x86 CPU: the rules measured on AVX2 are the conservative ones).
Benchmarks print :func:`describe_cpu` so that every figure names the CPU it came from.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

_FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's ``/proc/cpuinfo`` fields (empty where the file is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """``"AMD EPYC (family 26, model 2)"``; the machine type where ``/proc/cpuinfo`` is absent."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def cpu_flags() -> list[str]:
    """The vector-extension flags of :data:`_FLAGS_SHOWN` the CPU reports, in that order."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in _FLAGS_SHOWN if f in flags]


def cpu_kind() -> str:
    """``"avx512"`` when torch's CPU kernels run AVX-512, else ``"avx2"``."""
    return "avx512" if torch.backends.cpu.get_cpu_capability() == "AVX512" else "avx2"


def describe_cpu() -> str:
    """One line for benchmark output: model, flags, torch's capability and the ACS rules' kind."""
    flags = " ".join(cpu_flags()) or "none of " + " ".join(_FLAGS_SHOWN)
    return (
        f"CPU {cpu_model()}, flags {flags}, torch {torch.__version__} capability "
        f"{torch.backends.cpu.get_cpu_capability()} (ACS rules: {cpu_kind()})"
    )
