"""BraTS 2023 lesion-wise Dice and HD95 (mm), with lesion TP / FP / FN counts.

The rule of the BraTS 2023 challenges, as the organisers' evaluation code applies it
(rachitsaluja/BraTS-2023-Metrics, ``eval.py`` / ``brats_2023_metrics/.../brats_metrics.py``:
``get_LesionWiseScores``, ``get_GTseg_combinedByDilation``, ``get_LesionWiseResults``);
this is our own implementation of it, per region (WT, TC, ET):

* ground-truth lesions are the 26-connected components of the reference; those that
  fall in one 26-connected component of the reference dilated ``dilation`` times with
  the 18-connected cross (``generate_binary_structure(3, 2)``) are one lesion;
* each lesion is dilated again the same way; every 26-connected predicted component
  touching the dilated lesion is matched to it (a component may match several lesions);
  the lesion's Dice and HD95 compare the union of its matched components with the
  undilated lesion; a lesion with no match scores Dice 0 and HD95 ``HD95_PENALTY``;
* predicted components that touch no dilated lesion are false positives;
* lesions of volume <= ``threshold_mm3`` are left out (matched or missed); false
  positives never are;
* lesion-wise Dice = sum of lesion Dice / (kept lesions + false positives); lesion-wise
  HD95 = (sum of lesion HD95 + ``HD95_PENALTY`` x false positives) / (kept lesions +
  false positives); with neither, Dice 1 and HD95 0.

HD95 is the official one: DeepMind's ``surface-distance`` ``compute_robust_hausdorff``
(surface elements on the voxel-corner grid of 2x2x2 neighbourhood codes, each weighted by
its area in mm^2, the 95th percentile taken on the cumulative area, the larger of both
directions), computed here with scipy and MONAI's port of the surfel-area table. It
differs from the legacy :func:`napari_acs.metrics.brats.hd95` (voxel surfaces, unweighted
interpolated percentile, as MONAI's ``compute_hausdorff_distance``) by a fraction of a voxel.

Differences from the official code: label conventions are honoured (the official code
assumes BraTS 2023 labels {1, 2, 3}, so ET = 4 of BraTS 2021 files falls out of every
region); the surfel areas are MONAI's float32 table (the official one is float64), which
could move a percentile by one surface element in a near-tie; the volume threshold and
the counts are the official ones (``Num_TP`` / ``Num_FN`` count kept lesions only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from napari_acs.io.labels import REGIONS, LabelConvention, get_convention, labels_to_regions

#: HD95 (mm) of a missed lesion and of each false positive, and of any infinite HD95.
HD95_PENALTY = 374.0
#: Keys each region gets from :func:`lesionwise_metrics`.
LESION_METRICS = ("lesion_dice", "lesion_hd95", "lesion_tp", "lesion_fp", "lesion_fn")

_CROSS_18 = ndimage.generate_binary_structure(3, 2)  # dilation element of the BraTS 2023 rule
_CUBE_26 = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity of the components


@dataclass(frozen=True)
class LesionParams:
    """Parameters of the lesion-wise rule: ``dilation`` (iterations of the 18-connected
    cross, >= 1) and ``threshold_mm3`` (lesions of this volume or less are left out)."""

    dilation: int
    threshold_mm3: float

    def __post_init__(self) -> None:
        if int(self.dilation) != self.dilation or self.dilation < 1:
            # scipy's binary_dilation reads iterations=0 as "until nothing changes"
            raise ValueError(f"dilation must be a whole number >= 1, not {self.dilation!r}")
        if self.threshold_mm3 < 0:
            raise ValueError(f"threshold_mm3 must be >= 0, not {self.threshold_mm3!r}")


#: The BraTS 2023 challenges' parameters: glioma, sub-Saharan Africa, meningioma, paediatric,
#: metastases.
CHALLENGES: dict[str, LesionParams] = {
    "GLI": LesionParams(dilation=3, threshold_mm3=50.0),
    "SSA": LesionParams(dilation=3, threshold_mm3=50.0),
    "MEN": LesionParams(dilation=1, threshold_mm3=50.0),
    "PED": LesionParams(dilation=3, threshold_mm3=50.0),
    "MET": LesionParams(dilation=1, threshold_mm3=2.0),
}


def get_challenge(challenge: str | LesionParams) -> LesionParams:
    """Parameters by challenge name (``"GLI"``, also ``"BraTS-GLI"``, any case) or as given."""
    if isinstance(challenge, LesionParams):
        return challenge
    key = challenge.upper().removeprefix("BRATS-")
    if key not in CHALLENGES:
        raise ValueError(f"unknown BraTS challenge {challenge!r}; expected one of {sorted(CHALLENGES)}")
    return CHALLENGES[key]


@dataclass(frozen=True)
class Lesion:
    """One ground-truth lesion: volume (mm^3), matched predicted components, Dice, HD95 (mm).

    ``hd95`` is NaN for a lesion left out by the volume threshold (never needed).
    """

    volume_mm3: float
    matched: int
    dice: float
    hd95: float
    kept: bool


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of a mask ``(X, Y, Z)`` grown by ``pad`` voxels (clipped), or None if empty."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis])))
    return tuple(box)


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


@lru_cache(maxsize=16)
def _surfel_table(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Area (mm^2) of the surface in each of the 256 2x2x2 neighbourhood codes, and the
    code kernel ``(2, 2, 2)``: DeepMind's table as MONAI ships it (imported here, lazily:
    MONAI takes seconds to import)."""
    from monai.metrics.utils import create_table_neighbour_code_to_surface_area

    areas, kernel = create_table_neighbour_code_to_surface_area(spacing)
    return areas.cpu().numpy().astype(np.float64), kernel.cpu().numpy().reshape(2, 2, 2).astype(np.uint8)


def _directed_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """Area-weighted percentile as ``compute_robust_hausdorff``: the first sorted distance
    whose cumulative area fraction reaches ``percent`` / 100."""
    order = np.argsort(distances, kind="stable")
    cumulative = np.cumsum(areas[order]) / np.sum(areas)
    index = min(int(np.searchsorted(cumulative, percent / 100.0)), distances.size - 1)
    return float(distances[order][index])


def surfel_hd95(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance (mm) between boolean masks ``(X, Y, Z)`` the way the
    BraTS 2023 code computes it (surface-distance ``compute_robust_hausdorff``); ``inf`` when
    exactly one mask is empty, 0 when both are."""
    box = _bbox(a | b)
    if box is None:
        return 0.0
    if not a.any() or not b.any():
        return float("inf")
    areas, kernel = _surfel_table(tuple(float(s) for s in spacing))
    distances, weights = [], []
    codes = [ndimage.correlate(np.pad(m[box], 1).astype(np.uint8), kernel, mode="constant", cval=0)
             for m in (a, b)]
    borders = [(c != 0) & (c != 255) for c in codes]
    for mine, other in ((0, 1), (1, 0)):
        to_other = ndimage.distance_transform_edt(~borders[other], sampling=spacing)
        distances.append(to_other[borders[mine]])
        weights.append(areas[codes[mine][borders[mine]]])
    return max(_directed_percentile(d, w, 95.0) for d, w in zip(distances, weights))


def find_lesions(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], params: LesionParams
) -> tuple[list[Lesion], int]:
    """Ground-truth lesions of one region and the number of false-positive predicted components.

    Args:
        pred, ref: boolean masks ``(X, Y, Z)`` of one region.
        spacing: voxel size in mm.
        params: dilation and volume threshold (see :data:`CHALLENGES`).
    """
    voxel_mm3 = float(np.prod(spacing))
    pred_box = _bbox(pred)
    pred_cc = np.zeros(pred.shape, dtype=np.int32)
    n_pred = 0
    if pred_box is not None:
        pred_cc[pred_box], n_pred = ndimage.label(pred[pred_box], structure=_CUBE_26)
    ref_box = _bbox(ref, pad=params.dilation)
    if ref_box is None:
        return [], n_pred
    # A lesion's dilation is exactly its component of the dilated reference (the dilation of
    # each voxel is connected, and components are disjoint), so both steps of the rule, the
    # merge and the match, read one labelled dilation. The box holds every dilated voxel.
    dilated, n_lesions = ndimage.label(
        ndimage.binary_dilation(ref[ref_box], structure=_CROSS_18, iterations=params.dilation),
        structure=_CUBE_26)
    lesion_cc = np.where(ref[ref_box], dilated, 0)
    pred_in_box = pred_cc[ref_box]
    touching = (dilated > 0) & (pred_in_box > 0)
    pairs = np.unique(dilated[touching].astype(np.int64) * (n_pred + 1) + pred_in_box[touching])
    pair_lesion, pair_comp = pairs // (n_pred + 1), pairs % (n_pred + 1)
    comp_sizes = np.bincount(pred_cc[pred_box].ravel(), minlength=n_pred + 1) if n_pred else np.zeros(1, int)
    ref_sizes = np.bincount(lesion_cc.ravel(), minlength=n_lesions + 1)
    overlap = np.bincount(lesion_cc[pred[ref_box]], minlength=n_lesions + 1)
    pred_boxes = ndimage.find_objects(pred_cc) if n_pred else []
    lesion_full = np.zeros(ref.shape, dtype=np.int32)  # lesion ids on the whole grid
    lesion_full[ref_box] = lesion_cc
    offset = [s.start for s in ref_box]
    lesion_boxes = [tuple(slice(s.start + o, s.stop + o) for s, o in zip(b, offset))
                    for b in ndimage.find_objects(lesion_cc)]

    lesions = []
    for k in range(1, n_lesions + 1):
        comps = pair_comp[pair_lesion == k]
        volume = float(ref_sizes[k]) * voxel_mm3
        kept = volume > params.threshold_mm3
        pred_voxels = int(comp_sizes[comps].sum())
        dice = 2.0 * float(overlap[k]) / (pred_voxels + float(ref_sizes[k]))
        if not kept:
            hd = float("nan")
        elif comps.size == 0:
            hd = HD95_PENALTY
        else:
            box = lesion_boxes[k - 1]
            for c in comps:
                box = _union_box(box, pred_boxes[c - 1])
            hd = surfel_hd95(np.isin(pred_cc[box], comps), lesion_full[box] == k, spacing)
        lesions.append(Lesion(volume, int(comps.size), dice, hd, kept))
    n_fp = n_pred - int(np.unique(pair_comp).size)
    return lesions, n_fp


def lesion_region_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
    challenge: str | LesionParams = "GLI",
) -> dict[str, float | int]:
    """Lesion-wise Dice, HD95 (mm) and lesion TP / FP / FN counts of one region.

    Args:
        pred, ref: boolean masks ``(X, Y, Z)``.
        spacing: voxel size in mm.
        challenge: a name of :data:`CHALLENGES` or :class:`LesionParams`.
    """
    lesions, n_fp = find_lesions(pred, ref, spacing, get_challenge(challenge))
    kept = [lesion for lesion in lesions if lesion.kept]
    count = len(kept) + n_fp
    tp = sum(1 for lesion in kept if lesion.matched)
    return {
        "lesion_dice": 1.0 if count == 0 else sum(lesion.dice for lesion in kept) / count,
        "lesion_hd95": 0.0 if count == 0 else (sum(lesion.hd95 for lesion in kept) + HD95_PENALTY * n_fp) / count,
        "lesion_tp": tp,
        "lesion_fp": n_fp,
        "lesion_fn": len(kept) - tp,
    }


def lesionwise_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    convention: str | LabelConvention = "brats2021",
    ref_convention: str | LabelConvention | None = None,
    challenge: str | LesionParams = "GLI",
) -> dict[str, dict[str, float | int]]:
    """BraTS 2023 lesion-wise metrics per region (WT, TC, ET) of a label map against a reference.

    Args:
        pred, ref: integer label maps ``(X, Y, Z)`` on the same grid.
        spacing: voxel size in mm along the three axes.
        convention: label values of ``pred`` (and of ``ref`` unless ``ref_convention``).
        challenge: parameters, ``"GLI"`` (default), ``"SSA"``, ``"MEN"``, ``"PED"``, ``"MET"``.

    Returns:
        ``{region: {"lesion_dice", "lesion_hd95" (mm), "lesion_tp", "lesion_fp", "lesion_fn"}}``.
    """
    params = get_challenge(challenge)
    pred_regions, ref_regions = region_masks(pred, ref, convention, ref_convention)
    return {name: lesion_region_metrics(pred_regions[i], ref_regions[i], spacing, params)
            for i, name in enumerate(REGIONS)}


def region_masks(
    pred: np.ndarray, ref: np.ndarray, convention: str | LabelConvention,
    ref_convention: str | LabelConvention | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean WT, TC, ET masks ``(3, X, Y, Z)`` of a prediction and its reference (same grid)."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    conv = get_convention(convention)
    return labels_to_regions(pred, conv), labels_to_regions(ref, ref_convention or conv)
