"""BraTS metrics against hand-made cases and MONAI's independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance

from napari_acs.io.labels import CONVENTIONS
from napari_acs.metrics import EMPTY_HD95, brats_metrics, hd95, region_metrics, volumes_ml


def sphere(shape, centre, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    return d2 <= radius**2


def monai_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    ta = torch.from_numpy(a[None, None].astype(np.float32))
    tb = torch.from_numpy(b[None, None].astype(np.float32))
    return float(compute_hausdorff_distance(ta, tb, percentile=95, spacing=list(spacing)))


def test_shifted_cubes_exact_dice_and_volumes() -> None:
    a = np.zeros((40, 40, 40), bool)
    b = np.zeros_like(a)
    a[10:30, 10:30, 10:30] = True
    b[14:34, 10:30, 10:30] = True  # shifted 4 voxels: overlap 16 of 20 slices
    m = region_metrics(a, b, spacing=(1.0, 1.0, 2.0))
    assert m["dice"] == pytest.approx(0.8)
    assert m["sensitivity"] == pytest.approx(0.8)
    assert m["volume_ml_pred"] == pytest.approx(8000 * 2 / 1000)
    fp = 4 * 20 * 20
    assert m["specificity"] == pytest.approx(1 - fp / (a.size - 8000))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (0.8, 1.2, 2.0)])
def test_hd95_matches_monai_on_shifted_spheres(spacing) -> None:
    a = sphere((48, 44, 40), (22, 21, 19), 9, spacing)
    b = sphere((48, 44, 40), (25, 20, 19), 8, spacing)
    assert hd95(a, b, spacing) == pytest.approx(monai_hd95(a, b, spacing), abs=1e-4)


def test_hd95_of_concentric_spheres_is_radius_difference() -> None:
    a = sphere((50, 50, 50), (25, 25, 25), 10)
    b = sphere((50, 50, 50), (25, 25, 25), 16)
    assert hd95(a, b) == pytest.approx(6.0, abs=1.0)


def test_empty_region_conventions() -> None:
    empty = np.zeros((10, 10, 10), bool)
    full = empty.copy()
    full[3:6, 3:6, 3:6] = True
    both = region_metrics(empty, empty)
    assert both["dice"] == 1.0 and both["hd95"] == 0.0
    one = region_metrics(full, empty)
    assert one["dice"] == 0.0 and one["hd95"] == EMPTY_HD95


@pytest.mark.parametrize("convention", ["brats2021", "brats2023"])
def test_brats_metrics_regions(convention: str) -> None:
    conv = CONVENTIONS[convention]
    ref = np.zeros((30, 30, 30), np.uint8)
    ref[5:25, 5:25, 5:25] = conv.ed
    ref[10:20, 10:20, 10:20] = conv.et
    ref[13:17, 13:17, 13:17] = conv.ncr
    pred = ref.copy()
    pred[pred == conv.ncr] = conv.et  # NCR called ET: WT and TC unchanged, ET grows
    m = brats_metrics(pred, ref, convention=convention)
    assert m["WT"]["dice"] == 1.0 and m["TC"]["dice"] == 1.0
    et_ref, et_pred = 1000 - 64, 1000
    assert m["ET"]["dice"] == pytest.approx(2 * et_ref / (et_ref + et_pred))
    assert volumes_ml(ref, (1, 1, 1), convention) == pytest.approx(
        {"WT": 8.0, "TC": 1.0, "ET": 0.936}
    )


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        brats_metrics(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))
