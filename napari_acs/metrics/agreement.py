"""Agreement of two segmentations of one case (model A against model B), per BraTS region.

For a region (WT, TC, ET) every voxel is one of: neither model labels it (0), only model A
(:data:`A_ONLY`), only model B (:data:`B_ONLY`) or both (:data:`BOTH`). The map of these values
is the disagreement map a reader looks at; its counts give both models' volumes (mL), the
volumes labelled by one model only, and the inter-model Dice. Unlike
:func:`~napari_acs.metrics.brats_metrics`, neither side is a reference: the numbers are
symmetric in A and B (A only and B only swap).

Label maps are ``(X, Y, Z)`` integer arrays on one grid (e.g. two engines' ``segment`` of
one case), in a BraTS label convention (:mod:`napari_acs.io.labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_acs.io.labels import REGIONS, LabelConvention, get_convention

#: Values of a disagreement map (0: neither model).
A_ONLY, B_ONLY, BOTH = 1, 2, 3
#: Display name of each value, for legends and layer features.
AGREEMENT_NAMES: dict[int, str] = {0: "neither", A_ONLY: "A only", B_ONLY: "B only", BOTH: "both"}
#: RGBA colours of the values, from the Okabe-Ito palette (told apart with the common colour
#: vision deficiencies): A only orange, B only sky blue, both bluish green, drawn fainter
#: (alpha 0.6) so that where the models disagree stands out.
AGREEMENT_COLOURS: dict[int, tuple[float, float, float, float]] = {
    A_ONLY: (0.902, 0.624, 0.0, 1.0),  # orange #E69F00
    B_ONLY: (0.337, 0.706, 0.914, 1.0),  # sky blue #56B4E9
    BOTH: (0.0, 0.620, 0.451, 0.6),  # bluish green #009E73
}


@dataclass(frozen=True)
class RegionAgreement:
    """One region's agreement between models A and B: volumes in mL, Dice in [0, 1].

    ``dice`` is 1 when neither model labels the region (the BraTS convention for two empty
    masks), else ``2 * both / (A + B)``.
    """

    volume_ml_a: float
    volume_ml_b: float
    a_only_ml: float
    b_only_ml: float
    both_ml: float
    dice: float


def region_mask(labels: np.ndarray, region: str, convention: str | LabelConvention) -> np.ndarray:
    """Boolean mask ``(X, Y, Z)`` of one region (WT = NCR + ED + ET, TC = NCR + ET, ET) of a label map."""
    conv = get_convention(convention)
    values = {"WT": (conv.ncr, conv.ed, conv.et), "TC": (conv.ncr, conv.et), "ET": (conv.et,)}
    if region not in values:
        raise ValueError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
    mask = labels == values[region][0]
    for value in values[region][1:]:
        mask |= labels == value
    return mask


def disagreement(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    region: str,
    convention: str | LabelConvention = "brats2021",
    convention_b: str | LabelConvention | None = None,
) -> np.ndarray:
    """Disagreement map of one region: uint8 ``(X, Y, Z)``, 0 neither, 1 A only, 2 B only, 3 both.

    Args:
        labels_a, labels_b: integer label maps ``(X, Y, Z)`` on the same grid.
        region: ``"WT"``, ``"TC"`` or ``"ET"``.
        convention: label values of ``labels_a`` (and of ``labels_b`` unless ``convention_b``).
    """
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"model A's labels have shape {labels_a.shape}, model B's {labels_b.shape}: "
                         "they must be on the same grid")
    out = region_mask(labels_a, region, convention).view(np.uint8)  # bool -> 0/1 without a copy
    out = out + 2 * region_mask(labels_b, region, convention_b or convention).view(np.uint8)
    return out.astype(np.uint8, copy=False)


def summarise(dmap: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> RegionAgreement:
    """Volumes (mL) and inter-model Dice of a disagreement map ``(X, Y, Z)`` (voxel ``spacing`` in mm)."""
    counts = np.bincount(dmap.ravel(), minlength=4)
    if counts.size > 4:
        raise ValueError(f"not a disagreement map: values up to {counts.size - 1} (expected 0-3)")
    a_only, b_only, both = (int(counts[v]) for v in (A_ONLY, B_ONLY, BOTH))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_a, n_b = a_only + both, b_only + both
    return RegionAgreement(
        volume_ml_a=n_a * voxel_ml,
        volume_ml_b=n_b * voxel_ml,
        a_only_ml=a_only * voxel_ml,
        b_only_ml=b_only * voxel_ml,
        both_ml=both * voxel_ml,
        dice=1.0 if n_a + n_b == 0 else 2.0 * both / (n_a + n_b),
    )


def compare_labels(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    convention: str | LabelConvention = "brats2021",
    convention_b: str | LabelConvention | None = None,
) -> dict[str, RegionAgreement]:
    """Per region (WT, TC, ET): both models' volumes (mL), what only one labels, inter-model Dice.

    Args:
        labels_a, labels_b: integer label maps ``(X, Y, Z)`` on the same grid.
        spacing: voxel size in mm along the three axes.
        convention: label values of ``labels_a`` (and of ``labels_b`` unless ``convention_b``).
    """
    return {
        region: summarise(disagreement(labels_a, labels_b, region, convention, convention_b), spacing)
        for region in REGIONS
    }
