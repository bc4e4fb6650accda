"""MGMT classification of one case as a function: a thin wrapper over :class:`~napari_acs.inference.Classifier`."""

from __future__ import annotations

import torch
from torch import nn

from napari_acs.inference.engine import Classifier
from napari_acs.progress import CancelSignal


def classify(case, model: nn.Module | Classifier, *, device: str | torch.device = "auto",
             cancel: CancelSignal = None) -> float:
    """Probability (sigmoid of the first logit) that the case is positive (MGMT methylated);
    see :meth:`Classifier.classify`. ``model`` is never changed."""
    engine = model if isinstance(model, Classifier) else Classifier(model, device=device)
    return engine.classify(case, cancel=cancel)
