"""napari-acs: 2D ImageNet CNNs as native 3D models with ACS convolutions.

Importing this package is cheap: it does not import torch or napari. The
backend lives in the sub-packages (``napari_acs.io``, ``napari_acs.models``,
``napari_acs.inference``, ``napari_acs.metrics``, ``napari_acs.training``) and
the napari front end in ``napari_acs._napari``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
