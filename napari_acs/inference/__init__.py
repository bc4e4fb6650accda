"""Sliding-window prediction, TTA, device selection, post-processing and classification."""

from napari_acs.inference.classify import classify
from napari_acs.inference.device import resolve_device
from napari_acs.inference.predict import predict_regions, segment
from napari_acs.progress import Cancelled

__all__ = ["Cancelled", "classify", "predict_regions", "resolve_device", "segment"]
