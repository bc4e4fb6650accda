"""Network inputs, shared by inference and training: brain crop, normalisation, classifier input.

One place for how a BraTS image becomes what a network sees, so that training
(:mod:`napari_acs.training.cohort`) and the engines (:mod:`napari_acs.inference.engine`)
can never drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_acs.io.normalize import brain_bbox, brain_mask, zscore_in_mask

BRAIN_MARGIN = 8  # voxels kept around the brain's bounding box


def brain_crop(image: np.ndarray) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]:
    """Segmentation input: the brain's bounding box (``BRAIN_MARGIN`` voxels around it),
    the crop z-scored inside the brain, and the brain mask of the crop.

    ``image`` raw float32 ``(C, X, Y, Z)`` -> ``(box, float32 (C, x, y, z), bool (x, y, z))``.
    """
    box = brain_bbox(image, margin=BRAIN_MARGIN)
    crop = image[(slice(None), *box)]
    brain = brain_mask(crop)
    return box, zscore_in_mask(crop, brain), brain


def pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Zero-pad the last three axes symmetrically up to at least ``shape``."""
    pads = [(0, 0)] * (array.ndim - 3)
    for size, target in zip(array.shape[-3:], shape):
        extra = max(int(target) - size, 0)
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(array, pads) if any(p != (0, 0) for p in pads) else array


def classification_input(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Network input of the classifier: brain crop, z-scored, padded to a cube, resized.

    ``image`` raw (C, X, Y, Z) -> float32 (C, *size). The cube padding keeps the
    brain's proportions; downsizing averages (area), upsizing is trilinear.
    """
    box = brain_bbox(image)
    crop = zscore_in_mask(image[(slice(None), *box)])
    side = max(crop.shape[1:])
    cube = torch.from_numpy(pad_to(crop, (side, side, side)))[None]
    mode = "area" if side >= max(size) else "trilinear"
    resized = F.interpolate(cube, size=tuple(int(s) for s in size), mode=mode)
    return resized[0].numpy()


def model_patch_size(model: nn.Module) -> tuple[int, int, int]:
    """Training patch size ``(X, Y, Z)`` from a checkpoint's metadata or the model's preset."""
    meta = getattr(model, "checkpoint_meta", None) or {}
    if meta.get("patch_size"):
        return tuple(int(s) for s in meta["patch_size"])  # type: ignore[return-value]
    preset = getattr(model, "preset", None)
    return tuple(preset.patch_size) if preset is not None else (128, 128, 128)  # type: ignore[return-value]


def model_input_size(model: nn.Module) -> tuple[int, int, int]:
    """Classifier input size ``(X, Y, Z)``: the checkpoint's ``input_size``, else the patch size."""
    meta = getattr(model, "checkpoint_meta", None) or {}
    size = meta.get("input_size") or model_patch_size(model)
    return tuple(int(s) for s in size)  # type: ignore[return-value]
