"""Network input normalisation and brain extent: brain mask, per-modality z-score, bounding box.

The z-score matches MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)``
except that one brain mask (any modality non-zero) is shared by all channels, so a
voxel dark in one sequence but inside the brain is still normalised. It is written
here with numpy because ``napari_acs.io`` must not import torch.
"""

from __future__ import annotations

import numpy as np


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Boolean (X, Y, Z) mask of voxels non-zero in any channel of ``image`` (C, X, Y, Z)."""
    if image.ndim != 4:
        raise ValueError(f"brain_mask expects a (C, X, Y, Z) image, got shape {image.shape}")
    mask = image[0] != 0
    for channel in image[1:]:
        mask |= channel != 0
    return mask


def zscore_in_mask(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel z-score inside ``mask`` (default :func:`brain_mask`); outside set to 0.

    ``image`` (C, X, Y, Z) -> new float32 (C, X, Y, Z); the input is not modified. A
    channel constant inside the mask becomes 0 there (only centred, not scaled).
    """
    mask = brain_mask(image) if mask is None else np.asarray(mask, dtype=bool)
    if image.ndim != 4 or mask.shape != image.shape[1:]:
        raise ValueError(
            f"zscore_in_mask expects image (C, X, Y, Z) and mask (X, Y, Z), got {image.shape} and {mask.shape}"
        )
    if not mask.any():
        raise ValueError("zscore_in_mask: the mask is empty, nothing to normalise")
    out = np.empty(image.shape, dtype=np.float32)
    for channel, result in zip(image, out):
        inside = channel[mask]
        mean = inside.mean(dtype=np.float64)
        std = inside.std(dtype=np.float64)
        np.subtract(channel, np.float32(mean), out=result, dtype=np.float32)
        if std > 0:
            result *= np.float32(1.0 / std)
        result *= mask
    return out


def brain_bbox(
    image_or_mask: np.ndarray, margin: int | tuple[int, int, int] = 0
) -> tuple[slice, slice, slice]:
    """Bounding box of the brain as slices over (X, Y, Z), grown by ``margin`` voxels and clipped.

    Accepts an image (C, X, Y, Z) (brain = any channel non-zero) or a mask (X, Y, Z)
    (brain = non-zero). ``image[(slice(None), *box)]`` crops an image, ``labels[box]`` a map.
    """
    mask = brain_mask(image_or_mask) if image_or_mask.ndim == 4 else image_or_mask
    if mask.ndim != 3:
        raise ValueError(f"brain_bbox expects (C, X, Y, Z) or (X, Y, Z), got shape {image_or_mask.shape}")
    margins = (margin,) * 3 if isinstance(margin, (int, np.integer)) else tuple(margin)
    if len(margins) != 3 or min(margins) < 0:
        raise ValueError(f"brain_bbox margin must be one or three non-negative ints, got {margin!r}")
    box = []
    for axis, (size, grow) in enumerate(zip(mask.shape, margins)):
        other_axes = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(np.any(mask, axis=other_axes))
        if present.size == 0:
            raise ValueError("brain_bbox: the mask is empty, there is no brain to bound")
        box.append(slice(max(int(present[0]) - grow, 0), min(int(present[-1]) + 1 + grow, size)))
    return tuple(box)
