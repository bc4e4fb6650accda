"""Sliding-window prediction, TTA, device selection and post-processing."""

from napari_acs.inference.device import resolve_device
from napari_acs.inference.predict import predict_regions, segment
from napari_acs.progress import Cancelled

__all__ = ["Cancelled", "predict_regions", "resolve_device", "segment"]
