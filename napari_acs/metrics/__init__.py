"""BraTS region metrics: legacy Dice, HD95, sensitivity, specificity, volumes, and the
BraTS 2023 lesion-wise Dice / HD95 with lesion counts; the agreement of two models."""

from napari_acs.metrics.agreement import RegionAgreement, compare_labels, disagreement
from napari_acs.metrics.brats import EMPTY_HD95, brats_metrics, hd95, region_metrics, volumes_ml
from napari_acs.metrics.lesionwise import (
    CHALLENGES,
    HD95_PENALTY,
    LESION_METRICS,
    LesionParams,
    get_challenge,
    lesionwise_metrics,
)

__all__ = [
    "CHALLENGES",
    "EMPTY_HD95",
    "HD95_PENALTY",
    "LESION_METRICS",
    "LesionParams",
    "RegionAgreement",
    "brats_metrics",
    "compare_labels",
    "disagreement",
    "get_challenge",
    "hd95",
    "lesionwise_metrics",
    "region_metrics",
    "volumes_ml",
]
