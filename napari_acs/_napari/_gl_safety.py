"""Keep Triton out of a napari process whose OpenGL runs on Mesa (llvmpipe, radeonsi...).

Mesa's drivers map ``libLLVM``; Triton's ``libtriton.so`` carries its own LLVM with
the same symbol names, and loading it after Mesa crashes the process (a segfault in
Triton's module initialisation; seen under Xvfb with llvmpipe). torch imports
Triton lazily (``torch._dynamo``, which torchvision and timm pull in) only to check
that it is installed. napari-acs compiles no kernels in the GUI, so when ``libLLVM``
is already mapped and Triton is not imported yet, Triton is marked unavailable:
``import triton`` raises ``ImportError`` and torch carries on without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

MAPS = Path("/proc/self/maps")


def llvm_is_mapped() -> bool:
    """True when a ``libLLVM`` shared library is loaded in this process (Linux only)."""
    try:
        return "libLLVM" in MAPS.read_text()
    except OSError:  # no /proc (macOS, Windows): no clash known there
        return False


def block_triton_after_mesa() -> bool:
    """Mark Triton unavailable if Mesa's LLVM is loaded and Triton is not; True if blocked."""
    if "triton" in sys.modules or not llvm_is_mapped():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # import raises ImportError
    return True
