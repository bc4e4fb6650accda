"""BraTS region metrics: Dice, HD95 (mm), sensitivity, specificity, volumes (mL).

Conventions of the BraTS evaluation: a region empty in both prediction and
reference scores Dice 1 and HD95 0; empty in only one of them scores Dice 0 and
HD95 ``EMPTY_HD95`` (373.13 mm, what the BraTS tools report).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_acs.io.labels import REGIONS, LabelConvention, get_convention, labels_to_regions

EMPTY_HD95 = 373.13


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a boolean mask (face connectivity)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm between two boolean masks.

    The larger of the two directed 95th percentiles of surface-to-surface
    distances (as MONAI and the BraTS tools compute it). Masks ``(X, Y, Z)``.
    """
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return EMPTY_HD95
    # compute on the bounding box of both masks only (+1 voxel so borders erode properly)
    box = ndimage.find_objects((pred | ref).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    p, r = pred[box], ref[box]
    sp, sr = _surface(p), _surface(r)
    dist_to_r = ndimage.distance_transform_edt(~sr, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(dist_to_r[sp], 95), np.percentile(dist_to_p[sr], 95)))


def region_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """Metrics of one region from boolean masks ``(X, Y, Z)`` with voxel ``spacing`` in mm."""
    tp = int(np.count_nonzero(pred & ref))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    fp, fn = n_pred - tp, n_ref - tp
    tn = pred.size - tp - fp - fn
    voxel_ml = float(np.prod(spacing)) / 1000.0
    both_empty = n_pred == 0 and n_ref == 0
    return {
        "dice": 1.0 if both_empty else 2.0 * tp / (n_pred + n_ref),
        "hd95": hd95(pred, ref, spacing),
        "sensitivity": 1.0 if n_ref == 0 else tp / n_ref,
        "specificity": 1.0 if tn + fp == 0 else tn / (tn + fp),
        "volume_ml_pred": n_pred * voxel_ml,
        "volume_ml_ref": n_ref * voxel_ml,
    }


def brats_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    convention: str | LabelConvention = "brats2021",
    ref_convention: str | LabelConvention | None = None,
) -> dict[str, dict[str, float]]:
    """Per-region (WT, TC, ET) metrics of a predicted label map against a reference.

    Args:
        pred, ref: integer label maps ``(X, Y, Z)`` on the same grid.
        spacing: voxel size in mm along the three axes.
        convention: label values of ``pred`` (and of ``ref`` unless ``ref_convention``).
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    conv = get_convention(convention)
    pred_regions = labels_to_regions(pred, conv)
    ref_regions = labels_to_regions(ref, ref_convention or conv)
    return {
        name: region_metrics(pred_regions[i], ref_regions[i], spacing)
        for i, name in enumerate(REGIONS)
    }


def volumes_ml(
    labels: np.ndarray, spacing: Sequence[float], convention: str | LabelConvention
) -> dict[str, float]:
    """Volume in mL of each region (WT, TC, ET) of a label map."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    regions = labels_to_regions(labels, get_convention(convention))
    return {name: float(regions[i].sum()) * voxel_ml for i, name in enumerate(REGIONS)}
