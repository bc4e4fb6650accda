"""Segmentation and classification as functions: thin wrappers over the engines.

Each call builds an engine (a private, prepared copy of ``model``; the model itself is
never changed). To segment or classify many cases, build one
:class:`~napari_acs.inference.Segmenter` (or :class:`~napari_acs.inference.Classifier`)
and call it repeatedly instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from napari_acs.inference.engine import Classifier, Segmenter
from napari_acs.progress import CancelSignal, ProgressCallback


def _engine(model: nn.Module | Segmenter, **options) -> Segmenter:
    return model if isinstance(model, Segmenter) else Segmenter(model, **options)


def predict_regions(
    image: np.ndarray,
    model: nn.Module | Segmenter,
    *,
    device: str | torch.device = "auto",
    roi_size: Sequence[int] | Literal["auto"] = "auto",
    overlap: float = 0.5,
    sw_batch_size: int = 1,
    tta: bool = False,
    amp: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
) -> np.ndarray:
    """Region probabilities, float32 ``(num_classes, X, Y, Z)``, of a normalised float32
    image ``(C, X, Y, Z)`` (see :meth:`Segmenter.predict_regions`; a given ``Segmenter``
    is used as it is and the other options are ignored)."""
    engine = _engine(model, device=device, roi_size=roi_size, overlap=overlap, sw_batch_size=sw_batch_size,
                     tta=tta, amp=amp)
    return engine.predict_regions(image, progress=progress, cancel=cancel)


def segment(
    case,
    model: nn.Module | Segmenter,
    *,
    device: str | torch.device = "auto",
    tta: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    space: Literal["canonical", "source"] = "canonical",
    threshold: float = 0.5,
    **engine_options,
) -> np.ndarray:
    """uint8 NCR / ED / ET label map ``(X, Y, Z)`` of a :class:`~napari_acs.io.BratsCase`
    in the case's convention (see :meth:`Segmenter.segment`).

    ``engine_options`` go to :class:`Segmenter` (``roi_size``, ``overlap``, ``amp``...);
    a given ``Segmenter`` is used as it is and the other options are ignored.
    """
    engine = _engine(model, device=device, tta=tta, threshold=threshold, **engine_options)
    return engine.segment(case, progress=progress, cancel=cancel, space=space)


def classify(case, model: nn.Module | Classifier, *, device: str | torch.device = "auto",
             cancel: CancelSignal = None) -> float:
    """Probability (sigmoid of the first logit) that the case is positive (MGMT methylated);
    see :meth:`Classifier.classify`. ``model`` is never changed."""
    engine = model if isinstance(model, Classifier) else Classifier(model, device=device)
    return engine.classify(case, cancel=cancel)
