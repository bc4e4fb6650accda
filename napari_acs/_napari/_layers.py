"""BratsCase <-> napari layer data, in radiological axial display order.

Cases are computed in canonical RAS+ ``(X, Y, Z)``. napari shows the last two
axes of an array, rows down and columns right; radiologists read axial slices
with anterior at the top and the patient's right on the screen's left. So
layers hold the view ``display = canonical.transpose(2, 1, 0)[:, ::-1, ::-1]``
(axes ``(Z, Y, X)``, Y and X reversed): the slider walks inferior to superior.
Both directions are views, never copies; ``scale`` carries the spacing in mm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_acs.io.labels import SUB_REGION_NAMES, colormap, get_convention

MODALITY_NAMES = ("T1", "T1ce", "T2", "FLAIR")
DEFAULT_VISIBLE = "FLAIR"
METADATA_KEY = "napari_acs"


def to_display(volume: np.ndarray) -> np.ndarray:
    """Canonical ``(..., X, Y, Z)`` -> display ``(..., Z, Y', X')`` (a view)."""
    moved = np.moveaxis(volume, (-3, -1), (-1, -3))
    return moved[..., ::-1, ::-1]


def from_display(volume: np.ndarray) -> np.ndarray:
    """Display ``(..., Z, Y', X')`` -> canonical ``(..., X, Y, Z)`` (a view)."""
    return np.moveaxis(volume[..., ::-1, ::-1], (-3, -1), (-1, -3))


def display_scale(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """Voxel size in mm along the display axes ``(Z, Y, X)``."""
    return (float(spacing[2]), float(spacing[1]), float(spacing[0]))


def contrast_limits(volume: np.ndarray) -> tuple[float, float]:
    """0.5-99.5 percentiles of the non-zero (brain) voxels, on a subsample for speed."""
    sample = volume[::2, ::2, ::2]
    brain = sample[sample != 0]
    if brain.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(brain, [0.5, 99.5])
    return (float(min(lo, 0.0)), float(hi if hi > lo else lo + 1.0))


def case_metadata(case: Any) -> dict:
    """What a layer keeps to write results back on the source grid."""
    return {
        METADATA_KEY: {
            "case": case,  # the layers are views of case.image: no extra memory
            "case_id": case.case_id,
            "affine": np.asarray(case.affine),
            "spacing": tuple(case.spacing),
            "convention": case.convention,
        }
    }


def labels_layer_kwargs(case: Any, name: str = "segmentation") -> dict:
    """Keyword arguments of a BraTS Labels layer: colours, region names, geometry."""
    from napari.utils.colormaps import DirectLabelColormap

    conv = get_convention(case.convention)
    values = conv.values
    return {
        "name": name,
        "scale": display_scale(case.spacing),
        "colormap": DirectLabelColormap(color_dict=colormap(conv)),
        "features": {
            "index": [0, *values.values()],
            "region": ["background", *(SUB_REGION_NAMES[k] for k in values)],
        },
        "opacity": 0.6,
        "metadata": case_metadata(case),
    }


def case_layer_data(case: Any) -> list[tuple]:
    """Layer data tuples for a case: one image layer per modality, plus its seg if any."""
    layers: list[tuple] = []
    meta = case_metadata(case)
    for name, volume in zip(MODALITY_NAMES, case.image):
        layers.append(
            (
                to_display(volume),
                {
                    "name": f"{case.case_id} {name}",
                    "scale": display_scale(case.spacing),
                    "contrast_limits": contrast_limits(volume),
                    "colormap": "gray",
                    # one modality shown at a time; the others are a click away
                    "visible": name == DEFAULT_VISIBLE,
                    "metadata": {**meta, "modality": name},
                },
                "image",
            )
        )
    if case.label is not None:
        layers.append(
            (to_display(case.label), labels_layer_kwargs(case, f"{case.case_id} seg"), "labels")
        )
    return layers
