"""Keep Triton out of a napari process whose OpenGL runs on Mesa (llvmpipe, radeonsi...).

Mesa's drivers map ``libLLVM``; Triton's ``libtriton.so`` exports its own LLVM with the
same symbol names (triton-lang/triton#1236; the same clash with TensorFlow's LLVM is
tensorflow/tensorflow#124205), and loading it after Mesa crashes the process: a
segmentation fault in Triton's module initialisation, reproduced under Xvfb with
llvmpipe and triton 3.8 (``import triton`` after ``napari.Viewer(show=True)``).
torch imports Triton lazily (``torch._dynamo`` and ``torch.utils.flop_counter``, which
torchvision and timm pull in) only to check that it is there; napari-acs compiles no
kernels. So, only when Triton is installed, ``libLLVM`` is already mapped and Triton is
not imported yet, Triton is marked unavailable (``import triton`` raises ``ImportError``
and torch carries on without it).

This is process-wide by nature (a crash of the whole process is what it prevents). The
locked environment of ``make`` does not install Triton (requirements/lock.txt), so there
it never acts; it protects users whose torch brought Triton along.
"""

from __future__ import annotations

import importlib.util
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
    """Mark Triton unavailable if it is installed, not imported, and Mesa's LLVM is loaded; True if blocked."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None or not llvm_is_mapped():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # import raises ImportError
    return True
