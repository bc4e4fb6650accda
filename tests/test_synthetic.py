"""The synthetic BraTS-like generator: determinism, anatomy, contrasts, files, cohorts, sample data."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs.io.labels import convert_labels
from napari_acs.io.sample import SAMPLE_CASE_ID, SPARE_CASE_ID, sample_data_dir
from napari_acs.synthetic import (
    BRATS_SHAPE,
    brats_affine,
    case_file_names,
    cohort_members,
    load_template,
    make_case,
    make_cohort,
    synthesize,
    write_mgmt_csv,
)

SMALL = (80, 80, 52)  # the BraTS field of view at 3 mm
SEED = 3
SAMPLE_DATA = sample_data_dir()
#: The committed cases are members 0 and 1 of this cohort (see sample_data/README.md).
SAMPLE_COHORT_SEED = 5
SAMPLE_CASES = (SAMPLE_CASE_ID, SPARE_CASE_ID)
#: Floating-point rounding differs between CPUs (numpy's and OpenBLAS's SIMD kernels: AVX-512,
#: AVX2, SSE), so a voxel that lands on .5 before rounding to int16 may differ by 1 between
#: machines. Emulating 10 kernel sets (OPENBLAS_CORETYPE, NPY_DISABLE_CPU_FEATURES) on the
#: full-size sample case changed at most 32 of 8.9 million voxels, each by 1, and no label.
MAX_CHANGED_VOXELS = 1e-4  # share of an image's voxels that may differ, each by at most 1
MAX_CHANGED_LABELS = 1e-4  # share of the tumour's voxels whose label may differ


def assert_same_nifti(path: Path, reference: Path, *, labels: bool) -> None:
    """``path`` holds the volume of ``reference``, decoded (not byte for byte): every header
    field (shape, datatype, pixdim, qform/sform and their codes, xyzt units...) and the affine
    exactly; image voxels within :data:`MAX_CHANGED_VOXELS`, labels within
    :data:`MAX_CHANGED_LABELS`."""
    image, expected = nib.load(path), nib.load(reference)
    for field in expected.header:
        np.testing.assert_array_equal(image.header[field], expected.header[field], err_msg=f"{path.name} {field}")
    assert np.array_equal(image.affine, expected.affine), path.name
    data, want = np.asarray(image.dataobj), np.asarray(expected.dataobj)
    assert data.dtype == want.dtype and data.shape == want.shape, path.name
    changed = data != want
    if labels:
        assert changed.sum() <= MAX_CHANGED_LABELS * (want > 0).sum(), f"{path.name}: {changed.sum()} labels differ"
    else:
        assert changed.sum() <= MAX_CHANGED_VOXELS * want.size, f"{path.name}: {changed.sum()} voxels differ"
        assert np.abs(data.astype(np.int32) - want)[changed].max(initial=0) <= 1, path.name


def assert_same_case(folder: Path, reference: Path, case_id: str) -> None:
    """Each file of case ``case_id`` in ``folder`` matches ``reference``'s (see :func:`assert_same_nifti`)."""
    for kind, name in case_file_names(case_id).items():
        assert_same_nifti(folder / name, reference / name, labels=kind == "seg")


@pytest.fixture(scope="module")
def case():
    return synthesize(SEED, shape=SMALL)


def test_same_seed_gives_identical_arrays(case) -> None:
    again = synthesize(SEED, shape=SMALL)
    for modality, image in case.images.items():
        assert np.array_equal(image, again.images[modality]), modality
    assert np.array_equal(case.seg, again.seg)


def test_different_seeds_give_different_cases(case) -> None:
    others = [synthesize(seed, shape=SMALL) for seed in (SEED + 1, SEED + 2)]
    for other in others:
        assert other.tumour.centre != case.tumour.centre
        assert not np.array_equal(other.seg, case.seg)
        assert not np.array_equal(other.brain, case.brain)  # the head pose differs too
        assert not np.array_equal(other.images["t1"], case.images["t1"])


def test_grid_dtypes_and_labels(case) -> None:
    assert case.shape == SMALL
    assert all(image.dtype == np.int16 and image.shape == SMALL for image in case.images.values())
    assert list(case.images) == ["t1", "t1ce", "t2", "flair"]
    assert case.seg.dtype == np.uint8
    assert set(np.unique(case.seg)) == {0, 1, 2, 4}
    np.testing.assert_allclose(case.affine, brats_affine(SMALL, (3.0, 3.0, 155 / 52)))


def test_brats2023_convention_is_the_same_case_relabelled(case) -> None:
    case23 = synthesize(SEED, shape=SMALL, convention="brats2023")
    assert set(np.unique(case23.seg)) == {0, 1, 2, 3}
    assert np.array_equal(case23.seg, convert_labels(case.seg, "brats2021", "brats2023"))
    assert np.array_equal(case23.images["flair"], case.images["flair"])


def test_skull_stripped_and_tumour_inside_brain(case) -> None:
    brain = case.brain
    for modality, image in case.images.items():
        assert np.array_equal(image > 0, brain), modality  # zero exactly outside the brain
    assert brain.sum() * 27 / 1000 > 1200  # mL: a whole adult brain, not a fragment
    assert not (case.seg > 0)[~brain].any()


def test_tumour_sizes_vary_in_the_brats_range() -> None:
    whole = [sum(synthesize(seed, shape=SMALL).volumes_ml().values()) for seed in range(6)]
    assert all(15.0 < ml < 200.0 for ml in whole), whole
    assert max(whole) > 1.5 * min(whole)


def _class_means(case, modality: str) -> dict[str, float]:
    image = case.images[modality].astype(np.float64)
    healthy = case.seg == 0
    masks = {name: (case.tissue(name) > 0.9) & healthy for name in ("gm", "wm", "csf")}
    masks.update({"ncr": case.seg == 1, "ed": case.seg == 2, "et": case.seg == 4})
    return {name: float(image[mask].mean()) for name, mask in masks.items()}


def test_contrasts_are_ordered_like_brats(case) -> None:
    t1, t1ce, t2, flair = (_class_means(case, m) for m in ("t1", "t1ce", "t2", "flair"))
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t2["csf"] > max(v for k, v in t2.items() if k != "csf")  # CSF brightest on T2
    assert t2["gm"] > t2["wm"] and t2["ed"] > 1.5 * t2["wm"] and t2["ncr"] > t2["wm"]
    assert flair["csf"] < 0.5 * min(flair["wm"], flair["gm"])  # CSF suppressed
    assert flair["gm"] > flair["wm"] and flair["ed"] > 1.3 * flair["wm"]
    assert t1ce["et"] > 1.3 * t1ce["wm"] and t1ce["et"] > 1.3 * t1["et"]  # enhancement
    assert t1ce["ncr"] < 0.6 * t1ce["wm"]


def test_mgmt_label_leaves_a_learnable_trace() -> None:
    """Methylated tumours have relatively less oedema (ED / WT) than unmethylated ones."""
    ratios = {0: [], 1: []}
    for seed in range(5):
        for mgmt in (0, 1):
            volumes = synthesize(seed, shape=SMALL, mgmt=mgmt).volumes_ml()
            ratios[mgmt].append(volumes["ED"] / sum(volumes.values()))
    assert np.mean(ratios[1]) < np.mean(ratios[0]) - 0.05


def test_make_case_writes_brats_files_reproducibly(tmp_path: Path) -> None:
    first = make_case("Case_7", SEED, tmp_path / "a", shape=SMALL)
    second = make_case("Case_7", SEED, tmp_path / "b", shape=SMALL)
    names = case_file_names("Case_7")
    assert sorted(p.name for p in first.iterdir()) == sorted(names.values())
    assert names["t1ce"] == "Case_7_t1ce.nii.gz" and names["seg"] == "Case_7_seg.nii.gz"
    for name in names.values():
        assert (first / name).read_bytes() == (second / name).read_bytes(), name  # byte-identical
    expected = synthesize(SEED, shape=SMALL)
    for kind, name in names.items():
        image = nib.load(first / name)
        data = np.asarray(image.dataobj)
        assert data.dtype == (np.uint8 if kind == "seg" else np.int16)
        assert np.array_equal(data, expected.seg if kind == "seg" else expected.images[kind])
        np.testing.assert_allclose(image.affine, expected.affine)
        assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 1
    assert not list(tmp_path.glob("*/.*"))  # no partial folders left behind


def test_make_case_brats2023_names(tmp_path: Path) -> None:
    folder = make_case("BraTS-GLI-00007-000", SEED, tmp_path, shape=SMALL, convention="brats2023")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"BraTS-GLI-00007-000-{k}.nii.gz" for k in ("t1n", "t1c", "t2w", "t2f", "seg"))
    seg = np.asarray(nib.load(folder / "BraTS-GLI-00007-000-seg.nii.gz").dataobj)
    assert set(np.unique(seg)) == {0, 1, 2, 3}


def test_make_case_refuses_to_overwrite(tmp_path: Path) -> None:
    folder = make_case("C", SEED, tmp_path, shape=SMALL)
    before = (folder / "C_t1.nii.gz").read_bytes()
    with pytest.raises(FileExistsError, match=str(folder)):
        make_case("C", SEED + 1, tmp_path, shape=SMALL)
    assert (folder / "C_t1.nii.gz").read_bytes() == before
    make_case("C", SEED + 1, tmp_path, shape=SMALL, overwrite=True)
    assert (folder / "C_t1.nii.gz").read_bytes() != before


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mgmt must be 0 or 1"):
        synthesize(SEED, shape=SMALL, mgmt=2)
    with pytest.raises(ValueError, match="unknown label convention"):
        synthesize(SEED, shape=SMALL, convention="brats2019")
    with pytest.raises(ValueError, match="at least one case"):
        make_cohort(tmp_path, 0)
    with pytest.raises(FileNotFoundError, match="template file"):
        load_template(tmp_path)


def test_cohort_members_are_stable_and_balanced() -> None:
    assert cohort_members(3, seed=1) == cohort_members(10, seed=1)[:3]
    members = cohort_members(10, seed=1)
    assert sum(m.mgmt for m in members) == 5
    assert [m.case_id for m in members[:2]] == ["BraTS2021_00000", "BraTS2021_00001"]
    assert [m.rsna_id for m in members[:2]] == ["00000", "00001"]
    assert cohort_members(1, convention="brats2023")[0].case_id == "BraTS-GLI-00000-000"
    assert len({m.seed for m in members}) == 10
    assert cohort_members(4, seed=2) != cohort_members(4, seed=1)


def test_make_cohort_writes_cases_and_labels(tmp_path: Path) -> None:
    calls = []
    paths = make_cohort(tmp_path, 4, seed=1, shape=SMALL, workers=1, progress=lambda f, m: calls.append((f, m)))
    members = cohort_members(4, seed=1)
    assert paths == [tmp_path / m.case_id for m in members]
    assert [f for f, _ in calls] == [0.25, 0.5, 0.75, 1.0] and "BraTS2021_00003" in calls[-1][1]
    with open(tmp_path / "train_labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["BraTS21ID", "MGMT_value"]
    assert rows[1:] == [[m.rsna_id, str(m.mgmt)] for m in members]
    assert {row[1] for row in rows[1:]} == {"0", "1"}
    for member, path in zip(members, paths):  # each case is the member's own seed and label
        case = synthesize(member.seed, shape=SMALL, mgmt=member.mgmt)
        seg = np.asarray(nib.load(path / f"{member.case_id}_seg.nii.gz").dataobj)
        assert np.array_equal(seg, case.seg)
    with pytest.raises(FileExistsError, match="BraTS2021_00000"):
        make_cohort(tmp_path, 5, seed=1, shape=SMALL, workers=1)
    assert not (tmp_path / "BraTS2021_00004").exists()  # refused before writing anything


def test_make_cohort_in_worker_processes_matches_one_process(tmp_path: Path) -> None:
    """The same cases from worker processes (decoded and compared as across machines)."""
    serial = make_cohort(tmp_path / "serial", 2, seed=1, shape=SMALL, workers=1)
    pooled = make_cohort(tmp_path / "pooled", 2, seed=1, shape=SMALL, workers=2)
    assert [p.name for p in serial] == [p.name for p in pooled]
    for a, b in zip(serial, pooled):
        assert_same_case(b, a, a.name)
    assert (tmp_path / "serial/train_labels.csv").read_bytes() == (tmp_path / "pooled/train_labels.csv").read_bytes()


def test_committed_sample_cases() -> None:
    for case_id in SAMPLE_CASES:
        folder = SAMPLE_DATA / case_id
        files = case_file_names(case_id)
        seg = nib.load(folder / files["seg"])
        assert seg.shape == BRATS_SHAPE and seg.get_data_dtype() == np.uint8
        np.testing.assert_allclose(seg.affine, brats_affine(BRATS_SHAPE, (1.0, 1.0, 1.0)))
        assert set(np.unique(np.asarray(seg.dataobj))) == {0, 1, 2, 4}
        assert sum(p.stat().st_size for p in folder.iterdir()) < 12e6


def test_committed_sample_case_loads_with_load_case() -> None:
    from napari_acs.io.case import load_case

    loaded = load_case(SAMPLE_DATA / SAMPLE_CASES[0])
    assert loaded.image.shape == (4, *BRATS_SHAPE)
    assert loaded.spacing == (1.0, 1.0, 1.0)
    assert loaded.convention == "brats2021" and set(np.unique(loaded.label)) == {0, 1, 2, 4}


def test_committed_mgmt_csv_is_the_cohorts(tmp_path: Path) -> None:
    members = cohort_members(20, seed=SAMPLE_COHORT_SEED)
    expected = write_mgmt_csv(members, tmp_path / "labels.csv")
    assert (SAMPLE_DATA / "mgmt_labels.csv").read_bytes() == expected.read_bytes()
    assert [m.case_id for m in members[:2]] == list(SAMPLE_CASES)


@pytest.mark.slow
def test_full_size_case_regenerates_the_committed_sample(tmp_path: Path) -> None:
    """One BraTS-size case (240 x 240 x 155, 1 mm) equals the committed sample once decoded: the
    same headers and affine, at most 0.01 % of each image's voxels off by 1 (rounding differs
    between CPUs, so the gzip bytes may too) and at most 0.01 % of the tumour's labels."""
    member = cohort_members(1, seed=SAMPLE_COHORT_SEED)[0]
    folder = make_case(member.case_id, member.seed, tmp_path, mgmt=member.mgmt)
    files = case_file_names(member.case_id)
    for kind, name in files.items():
        image = nib.load(folder / name)
        assert image.shape == BRATS_SHAPE
        assert image.header.get_zooms() == (1.0, 1.0, 1.0)
        assert image.get_data_dtype() == (np.uint8 if kind == "seg" else np.int16)
    assert_same_case(folder, SAMPLE_DATA / member.case_id, member.case_id)
    seg = np.asarray(nib.load(folder / files["seg"]).dataobj)
    assert set(np.unique(seg)) == {0, 1, 2, 4}
