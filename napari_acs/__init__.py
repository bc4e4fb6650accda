"""napari-acs: 2D ImageNet CNNs as native 3D models with ACS convolutions.

Importing this package is cheap: it does not import torch or napari. The
backend lives in the sub-packages (``napari_acs.io``, ``napari_acs.models``,
``napari_acs.inference``, ``napari_acs.metrics``, ``napari_acs.training``) and
the napari front end in ``napari_acs._napari``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__"]


def _on_first_use(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``package``: name -> the attribute of the module
    ``exports[name]`` names, imported when first asked for (sub-packages stay cheap to import)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
