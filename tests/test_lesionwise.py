"""BraTS 2023 lesion-wise metrics: hand-made cases with known answers, a deliberately simple
second implementation on random multi-lesion volumes, and numbers of the official code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics.utils import get_mask_edges
from scipy import ndimage
from scipy.spatial.distance import cdist

from napari_acs.io.labels import CONVENTIONS
from napari_acs.metrics import (
    CHALLENGES,
    HD95_PENALTY,
    LESION_METRICS,
    LesionParams,
    brats_metrics,
    get_challenge,
    hd95,
    lesionwise_metrics,
)
from napari_acs.metrics.lesionwise import lesion_region_metrics, surfel_hd95

SHAPE = (40, 40, 40)


def box(corner: tuple[int, int, int], size: tuple[int, int, int] | int, shape=SHAPE) -> np.ndarray:
    """Boolean cuboid of ``size`` voxels from ``corner``."""
    size = (size,) * 3 if isinstance(size, int) else size
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + s) for c, s in zip(corner, size))] = True
    return mask


def ball(shape, centre, radius: float, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius**2


# ---------------------------------------------------------------- the simple second implementation
def simple_surfel_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """surface-distance's robust HD95 the long way: MONAI's sub-voxel edges and areas (torch),
    all-pairs distances, the first distance whose cumulative area reaches 95 %."""
    pa, pb = (torch.from_numpy(np.pad(m, 1)) for m in (a, b))  # MONAI crops without padding
    edges_a, edges_b, areas_a, areas_b = (np.asarray(x) for x in get_mask_edges(pa, pb, spacing=list(spacing)))
    points_a, points_b = np.argwhere(edges_a) * spacing, np.argwhere(edges_b) * spacing
    pairwise = cdist(points_a, points_b)
    out = []
    for distances, areas in ((pairwise.min(axis=1), areas_a[edges_a]), (pairwise.min(axis=0), areas_b[edges_b])):
        order = np.argsort(distances)
        cumulative = np.cumsum(areas[order].astype(float)) / areas.sum()
        out.append(distances[order][min(np.searchsorted(cumulative, 0.95), len(distances) - 1)])
    return float(max(out))


def simple_lesionwise(pred: np.ndarray, ref: np.ndarray, spacing, params: LesionParams) -> dict:
    """The rule as written, on the whole volume, one lesion at a time, with Python sets."""
    cross, cube = ndimage.generate_binary_structure(3, 2), np.ones((3, 3, 3), bool)
    voxel_mm3 = float(np.prod(spacing))
    gt_cc, n_gt = ndimage.label(ref, structure=cube)
    dilated_cc, _ = ndimage.label(ndimage.binary_dilation(ref, cross, iterations=params.dilation), structure=cube)
    pred_cc, n_pred = ndimage.label(pred, structure=cube)
    groups: dict[int, set[int]] = {}
    for c in range(1, n_gt + 1):
        (zone,) = set(np.unique(dilated_cc[gt_cc == c]).tolist())
        groups.setdefault(zone, set()).add(c)
    matched_anywhere: set[int] = set()
    dice, hd, tp, fn = [], [], 0, 0
    for members in groups.values():
        lesion = np.isin(gt_cc, sorted(members))
        zone = ndimage.binary_dilation(lesion, cross, iterations=params.dilation)
        matched = set(np.unique(pred_cc[zone]).tolist()) - {0}
        matched_anywhere |= matched
        if lesion.sum() * voxel_mm3 <= params.threshold_mm3:
            continue
        found = np.isin(pred_cc, sorted(matched))
        dice.append(2.0 * (found & lesion).sum() / (found.sum() + lesion.sum()))
        hd.append(simple_surfel_hd95(found, lesion, spacing) if matched else 374.0)
        tp, fn = tp + bool(matched), fn + (not matched)
    fp = len(set(range(1, n_pred + 1)) - matched_anywhere)
    n = len(dice) + fp
    return {
        "lesion_dice": sum(dice) / n if n else 1.0,
        "lesion_hd95": (sum(hd) + 374.0 * fp) / n if n else 0.0,
        "lesion_tp": tp, "lesion_fp": fp, "lesion_fn": fn,
    }


def assert_same(ours: dict, expected: dict) -> None:
    assert set(ours) == set(LESION_METRICS)
    for key in ("lesion_tp", "lesion_fp", "lesion_fn"):
        assert ours[key] == expected[key], key
    assert ours["lesion_dice"] == pytest.approx(expected["lesion_dice"], abs=1e-9)
    assert ours["lesion_hd95"] == pytest.approx(expected["lesion_hd95"], abs=1e-6)


def check(pred: np.ndarray, ref: np.ndarray, spacing=(1.0, 1.0, 1.0), challenge: str = "GLI", **known) -> dict:
    """Ours against the simple implementation, and against the ``known`` answers given."""
    ours = lesion_region_metrics(pred, ref, spacing, challenge)
    assert_same(ours, simple_lesionwise(pred, ref, spacing, CHALLENGES[challenge]))
    for key, value in known.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    return ours


# ---------------------------------------------------------------- hand-made cases, known answers
def test_two_lesions_within_the_dilation_are_one_lesion() -> None:
    first = box((5, 5, 5), 5)
    # 6 empty slices between them: the 3-times dilations meet, so one lesion of 250 mm^3
    check(first, first | box((5, 5, 16), 5), lesion_dice=2 * 125 / 375, lesion_tp=1, lesion_fn=0, lesion_fp=0)
    # 7 empty slices: two lesions, the second missed (Dice 0, HD95 374)
    check(first, first | box((5, 5, 17), 5), lesion_dice=0.5, lesion_hd95=187.0, lesion_tp=1, lesion_fn=1)
    # MEN dilates once: 6 slices apart is two lesions there
    check(first, first | box((5, 5, 16), 5), challenge="MEN", lesion_dice=0.5, lesion_fn=1)


def test_false_positive_counts_even_when_tiny() -> None:
    lesion = box((5, 5, 5), 10)
    check(lesion | box((30, 30, 30), 1), lesion, lesion_dice=0.5, lesion_hd95=187.0, lesion_tp=1, lesion_fp=1)


def test_a_predicted_component_within_the_dilation_is_matched_not_false() -> None:
    lesion = box((5, 5, 5), 10)
    near = box((5, 5, 17), 2)  # 2 empty slices from the lesion: inside its 3-times dilation
    check(lesion | near, lesion, lesion_dice=2 * 1000 / (1000 + 1000 + 8), lesion_tp=1, lesion_fp=0)


def test_missed_small_lesion_is_left_out() -> None:
    lesion = box((5, 5, 5), 10)
    small = box((30, 30, 30), 3)  # 27 mm^3 <= 50: neither a lesion nor a miss
    check(lesion, lesion | small, lesion_dice=1.0, lesion_hd95=0.0, lesion_tp=1, lesion_fn=0, lesion_fp=0)
    exactly = box((30, 30, 30), (5, 5, 2))  # 50 mm^3: "<= threshold" is left out too
    check(lesion, lesion | exactly, lesion_dice=1.0, lesion_fn=0)
    # MET keeps lesions > 2 mm^3 (and dilates once)
    check(lesion, lesion | small, challenge="MET", lesion_dice=0.5, lesion_hd95=187.0, lesion_fn=1)


def test_missed_large_lesion_scores_zero_and_374() -> None:
    lesion = box((5, 5, 5), 10)
    check(lesion, lesion | box((28, 28, 28), 6), lesion_dice=0.5, lesion_hd95=(0 + HD95_PENALTY) / 2,
          lesion_tp=1, lesion_fn=1, lesion_fp=0)


def test_anisotropic_spacing_volumes_and_distances_in_mm() -> None:
    lesion = box((5, 5, 5), 10)
    shifted = np.roll(lesion, 1, axis=2)  # one voxel along the third axis
    check(shifted, lesion, (1.0, 1.0, 3.0), lesion_dice=0.9, lesion_hd95=3.0)
    check(shifted, lesion, (3.0, 1.0, 1.0), lesion_dice=0.9, lesion_hd95=1.0)
    # 50 voxels at 1.04 mm^3 are 52 mm^3 > 50: a lesion, here a missed one
    fifty = box((30, 30, 30), (5, 5, 2))
    check(lesion, lesion | fifty, (1.0, 1.0, 1.04), lesion_dice=0.5, lesion_fn=1)
    # the dilation counts voxels, not mm: 6 slices of 3 mm still merge
    check(box((5, 5, 5), 5), box((5, 5, 5), 5) | box((5, 5, 16), 5), (1.0, 1.0, 3.0), lesion_tp=1, lesion_fn=0)


def test_empty_regions() -> None:
    empty = np.zeros(SHAPE, bool)
    lesion = box((5, 5, 5), 10)
    check(empty, empty, lesion_dice=1.0, lesion_hd95=0.0, lesion_tp=0, lesion_fp=0, lesion_fn=0)
    check(empty, lesion, lesion_dice=0.0, lesion_hd95=374.0, lesion_fn=1)
    check(lesion | box((30, 30, 30), 2), empty, lesion_dice=0.0, lesion_hd95=374.0, lesion_fp=2)
    check(empty, box((30, 30, 30), 3), lesion_dice=1.0, lesion_hd95=0.0, lesion_fn=0)  # only a small lesion


# ---------------------------------------------------------------- random multi-lesion volumes
def random_case(seed: int, shape=(36, 32, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction masks with several blobs each, a shifted copy of some
    reference blobs in the prediction and scattered false-positive voxels."""
    rng = np.random.default_rng(seed)
    ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    for mask in (ref, pred):
        for _ in range(rng.integers(1, 6)):
            mask |= ball(shape, rng.uniform(2, np.array(shape) - 2), rng.uniform(0.8, 5.0))
    pred |= np.roll(ref, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2)) & (rng.random(shape) < 0.97)
    pred[tuple(rng.integers(0, s, 4) for s in shape)] = True
    return pred, ref


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("spacing", "challenge"), [((1.0, 1.0, 1.0), "GLI"), ((0.8, 1.2, 2.0), "GLI"),
                                                    ((1.0, 1.0, 1.0), "MEN"), ((1.0, 1.0, 2.5), "MET")])
def test_random_volumes_match_the_simple_implementation(seed: int, spacing, challenge: str) -> None:
    pred, ref = random_case(seed)
    check(pred, ref, spacing, challenge)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.2, 2.0)])
def test_surfel_hd95_is_within_a_voxel_of_the_legacy_hd95(spacing) -> None:
    a = ball((48, 44, 40), (22, 21, 19), 9, spacing)
    b = ball((48, 44, 40), (25, 20, 19), 8, spacing)
    assert surfel_hd95(a, b, spacing) == pytest.approx(simple_surfel_hd95(a, b, spacing), abs=1e-6)
    assert abs(surfel_hd95(a, b, spacing) - hd95(a, b, spacing)) < max(spacing)


# ---------------------------------------------------------------- label maps, conventions, official numbers
def paint_tumour(labels: np.ndarray, centre, radius: float, convention: str) -> None:
    """ED ball with an ET shell around an NCR centre."""
    conv = CONVENTIONS[convention]
    labels[ball(labels.shape, centre, radius) & (labels == 0)] = conv.ed
    labels[ball(labels.shape, centre, 0.6 * radius)] = conv.et
    labels[ball(labels.shape, centre, 0.3 * radius)] = conv.ncr


def golden_case(convention: str = "brats2023") -> tuple[np.ndarray, np.ndarray]:
    """A prediction and reference label map (48, 44, 36) with a matched tumour, two ED blobs
    that dilation merges (half found), a missed tumour, a missed small blob and false positives."""
    ref, pred = np.zeros((48, 44, 36), np.uint8), np.zeros((48, 44, 36), np.uint8)
    ed = CONVENTIONS[convention].ed
    paint_tumour(ref, (14, 14, 12), 7, convention)
    paint_tumour(pred, (15, 14, 12), 6.5, convention)
    ref[ball(ref.shape, (34, 12, 10), 3)] = ed
    ref[ball(ref.shape, (34, 12, 19), 3)] = ed
    pred[ball(pred.shape, (34, 12, 10), 3.5)] = ed
    paint_tumour(ref, (36, 32, 26), 4, convention)
    ref[6:8, 34:36, 29:32] = ed
    paint_tumour(pred, (22, 34, 8), 2.5, convention)
    pred[44, 3, 3] = ed
    return pred, ref


#: What rachitsaluja/BraTS-2023-Metrics ``get_LesionWiseResults`` (metrics.py at commit 43c9052)
#: reports for ``golden_case()`` written as BraTS 2023 NIfTI files with the spacing as the
#: affine's diagonal, per challenge and spacing: region -> (Dice, HD95 mm, TP, FP, FN).
OFFICIAL = {
    ("GLI", (1.0, 1.0, 1.0)): {
        "WT": (0.29015121, 226.200000, 2, 2, 1),
        "TC": (0.26738609, 249.666667, 1, 1, 1),
        "ET": (0.36693548, 187.500000, 1, 1, 0),
    },
    ("MET", (1.0, 1.0, 1.0)): {
        "WT": (0.24179267, 250.833333, 2, 2, 2),
        "TC": (0.26738609, 249.666667, 1, 1, 1),
        "ET": (0.24462366, 249.666667, 1, 1, 1),
    },
    ("GLI", (0.9, 1.1, 1.5)): {
        "WT": (0.29015121, 227.084253, 2, 2, 1),
        "TC": (0.26738609, 249.833333, 1, 1, 1),
        "ET": (0.24462366, 249.833333, 1, 1, 1),
    },
}


@pytest.mark.parametrize(("challenge", "spacing"), list(OFFICIAL))
def test_golden_case_matches_the_official_code(challenge: str, spacing) -> None:
    pred, ref = golden_case()
    ours = lesionwise_metrics(pred, ref, spacing, convention="brats2023", challenge=challenge)
    assert set(OFFICIAL[(challenge, spacing)]) == {"WT", "TC", "ET"}
    for region, (dice, hd, tp, fp, fn) in OFFICIAL[(challenge, spacing)].items():
        got = ours[region]
        assert (got["lesion_tp"], got["lesion_fp"], got["lesion_fn"]) == (tp, fp, fn), region
        assert got["lesion_dice"] == pytest.approx(dice, abs=1e-6), region
        assert got["lesion_hd95"] == pytest.approx(hd, abs=1e-4), region


def test_both_label_conventions_give_the_same_lesions() -> None:
    results = {c: lesionwise_metrics(*golden_case(c), (1.0, 1.0, 1.5), convention=c) for c in CONVENTIONS}
    assert results["brats2021"] == results["brats2023"]
    assert results["brats2021"]["ET"]["lesion_tp"] == 1  # ET = 4 in 2021 files is seen as ET
    # a BraTS 2021 prediction against a BraTS 2023 reference
    mixed = lesionwise_metrics(golden_case("brats2021")[0], golden_case("brats2023")[1], (1.0, 1.0, 1.5),
                               convention="brats2021", ref_convention="brats2023")
    assert mixed == results["brats2023"]


def test_brats_metrics_reports_both_families() -> None:
    pred, ref = golden_case("brats2021")
    both = brats_metrics(pred, ref, (1.0, 1.0, 1.0))
    legacy = brats_metrics(pred, ref, (1.0, 1.0, 1.0), challenge=None)
    lesion = lesionwise_metrics(pred, ref, (1.0, 1.0, 1.0))
    for region in ("WT", "TC", "ET"):
        assert set(legacy[region]) == {"dice", "hd95", "sensitivity", "specificity", "volume_ml_pred", "volume_ml_ref"}
        assert both[region] == {**legacy[region], **lesion[region]}
    met = brats_metrics(pred, ref, (1.0, 1.0, 1.0), challenge="MET")
    assert met["WT"]["lesion_fn"] > both["WT"]["lesion_fn"]  # the small blob counts for MET


def test_challenge_parameters() -> None:
    assert {k: (v.dilation, v.threshold_mm3) for k, v in CHALLENGES.items()} == {
        "GLI": (3, 50), "SSA": (3, 50), "MEN": (1, 50), "PED": (3, 50), "MET": (1, 2)}
    assert get_challenge("BraTS-MET") is CHALLENGES["MET"] and get_challenge("gli") is CHALLENGES["GLI"]
    custom = LesionParams(dilation=2, threshold_mm3=10)
    assert get_challenge(custom) is custom
    with pytest.raises(ValueError, match="GLI"):
        get_challenge("BraTS-XYZ")
    with pytest.raises(ValueError, match="dilation"):
        LesionParams(dilation=0, threshold_mm3=50)
    with pytest.raises(ValueError, match="shape"):
        lesionwise_metrics(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))
