"""Inference engines (:class:`Segmenter`, :class:`Classifier`), sliding window, TTA, device choice.

The engines own a private, prepared copy of their network; ``segment``, ``predict_regions``
and ``classify`` are thin wrappers that build one per call.
"""

from napari_acs.inference.classify import classify
from napari_acs.inference.device import resolve_device
from napari_acs.inference.engine import Classifier, Segmenter
from napari_acs.inference.predict import predict_regions, segment
from napari_acs.progress import Cancelled

__all__ = ["Cancelled", "Classifier", "Segmenter", "classify", "predict_regions", "resolve_device", "segment"]
