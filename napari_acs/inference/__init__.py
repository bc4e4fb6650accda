"""Inference engines (:class:`Segmenter`, :class:`Classifier`), sliding window, TTA, device choice.

The engines own a private, prepared copy of their network; ``segment``, ``predict_regions``
and ``classify`` are thin wrappers that build one per call. Names are imported on first
use, so the command line (:mod:`napari_acs.inference.cli`) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_acs import _on_first_use

_EXPORTS = {
    "Cancelled": "napari_acs.progress",
    "Classifier": "napari_acs.inference.engine",
    "Segmenter": "napari_acs.inference.engine",
    "classify": "napari_acs.inference.predict",
    "predict_regions": "napari_acs.inference.predict",
    "resolve_device": "napari_acs.inference.device",
    "segment": "napari_acs.inference.predict",
}
__all__ = ["Cancelled", "Classifier", "Segmenter", "classify", "predict_regions", "resolve_device", "segment"]

if TYPE_CHECKING:
    from napari_acs.inference.device import resolve_device
    from napari_acs.inference.engine import Classifier, Segmenter
    from napari_acs.inference.predict import classify, predict_regions, segment
    from napari_acs.progress import Cancelled

__getattr__ = _on_first_use(__name__, _EXPORTS)
