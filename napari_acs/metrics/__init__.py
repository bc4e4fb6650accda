"""BraTS region metrics: Dice, HD95, sensitivity, specificity, volumes."""

from napari_acs.metrics.brats import EMPTY_HD95, brats_metrics, hd95, region_metrics, volumes_ml

__all__ = ["EMPTY_HD95", "brats_metrics", "hd95", "region_metrics", "volumes_ml"]
