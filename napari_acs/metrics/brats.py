"""BraTS region metrics: Dice, HD95 (mm), sensitivity, specificity, volumes (mL).

Conventions of the BraTS evaluation: a region empty in both prediction and
reference scores Dice 1 and HD95 0; empty in only one of them scores Dice 0 and
HD95 ``EMPTY_HD95`` (373.13 mm, what the BraTS tools report). Beside these legacy
metrics, :func:`brats_metrics` adds the BraTS 2023 lesion-wise ones
(:mod:`napari_acs.metrics.lesionwise`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_acs.io.labels import REGIONS, LabelConvention, get_convention, labels_to_regions
from napari_acs.metrics.lesionwise import LesionParams, lesion_region_metrics, region_masks

EMPTY_HD95 = 373.13


def _surface_points(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Coordinates (mm) ``(N, 3)`` of the boundary voxels of a boolean mask (face connectivity;
    voxels on the volume's border are boundary), computed on the mask's bounding box."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # +1 so borders erode properly
    crop = mask[box]
    surface = crop & ~ndimage.binary_erosion(crop, border_value=0)
    return (np.argwhere(surface) + [s.start for s in box]) * np.asarray(spacing, dtype=float)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm between two boolean masks.

    The larger of the two directed 95th percentiles of surface-to-surface
    distances (as MONAI and the BraTS tools compute it). Masks ``(X, Y, Z)``.
    Nearest distances come from a k-d tree over the surface voxels (exact, and
    cheap when scattered voxels make the masks' bounding box the whole volume).
    """
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return EMPTY_HD95
    sp, sr = _surface_points(pred, spacing), _surface_points(ref, spacing)
    dist_to_r = cKDTree(sr).query(sp)[0]
    dist_to_p = cKDTree(sp).query(sr)[0]
    return float(max(np.percentile(dist_to_r, 95), np.percentile(dist_to_p, 95)))


def region_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """Legacy metrics of one region from boolean masks ``(X, Y, Z)`` with voxel ``spacing`` in mm."""
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
    challenge: str | LesionParams | None = "GLI",
) -> dict[str, dict[str, float]]:
    """Per-region (WT, TC, ET) metrics of a predicted label map against a reference.

    Each region has the legacy ``dice``, ``hd95`` (mm), ``sensitivity``, ``specificity``,
    ``volume_ml_pred``, ``volume_ml_ref`` and, unless ``challenge`` is None, the BraTS 2023
    ``lesion_dice``, ``lesion_hd95`` (mm), ``lesion_tp``, ``lesion_fp``, ``lesion_fn``
    (:mod:`napari_acs.metrics.lesionwise`).

    Args:
        pred, ref: integer label maps ``(X, Y, Z)`` on the same grid.
        spacing: voxel size in mm along the three axes.
        convention: label values of ``pred`` (and of ``ref`` unless ``ref_convention``).
        challenge: lesion-wise parameters: ``"GLI"`` (default), ``"SSA"``, ``"MEN"``, ``"PED"``,
            ``"MET"`` or a :class:`~napari_acs.metrics.lesionwise.LesionParams`; None: legacy only.
    """
    pred_regions, ref_regions = region_masks(pred, ref, convention, ref_convention)
    out = {}
    for i, name in enumerate(REGIONS):
        out[name] = region_metrics(pred_regions[i], ref_regions[i], spacing)
        if challenge is not None:
            out[name].update(lesion_region_metrics(pred_regions[i], ref_regions[i], spacing, challenge))
    return out


def volumes_ml(
    labels: np.ndarray, spacing: Sequence[float], convention: str | LabelConvention
) -> dict[str, float]:
    """Volume in mL of each region (WT, TC, ET) of a label map."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    regions = labels_to_regions(labels, get_convention(convention))
    return {name: float(regions[i].sum()) * voxel_ml for i, name in enumerate(REGIONS)}
