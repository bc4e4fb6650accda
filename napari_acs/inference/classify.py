"""MGMT classification of one case with a classification checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from napari_acs.inference.device import resolve_device
from napari_acs.inference.predict import model_patch_size
from napari_acs.inference.watch import watch_layers
from napari_acs.models.fold import folded_batchnorm
from napari_acs.progress import CancelSignal


def classify(case, model: nn.Module, *, device: str | torch.device = "auto", cancel: CancelSignal = None) -> float:
    """Probability (sigmoid of the first logit) that the case is positive (MGMT methylated).

    The input is prepared as in training (``napari_acs.training.cohort.classification_input``
    at the checkpoint's ``input_size``: brain crop, z-score, cube, resize), float32
    ``(1, 4, *size)``. ``cancel`` is checked before every layer.
    """
    from napari_acs.training.cohort import classification_input

    meta = getattr(model, "checkpoint_meta", None) or {}
    size = meta.get("input_size") or model_patch_size(model)
    x = torch.from_numpy(classification_input(case.image, size))[None]
    dev = resolve_device(device)
    model.to(dev).eval()
    with torch.inference_mode(), folded_batchnorm(model), watch_layers(model, cancel, "classification"):
        logit = model(x.to(dev)).float()[0, 0]
    return float(torch.sigmoid(logit))
