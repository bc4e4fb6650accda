"""Loading BraTS cases: naming, channel order, canonical RAS+ geometry, scaling, discovery, normalisation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nifti_cases import AFFINES, SHAPE, write_case, write_volume

from napari_acs.io import (
    BratsCase,
    BratsInputError,
    brain_bbox,
    brain_mask,
    find_cases,
    load_case,
    zscore_in_mask,
)
from napari_acs.io.case import MODALITIES


@pytest.mark.parametrize(("convention", "labels"), [("brats2021", {0, 1, 2, 4}), ("brats2023", {0, 1, 2, 3})])
def test_load_case_folder(tmp_path, convention, labels):
    files = write_case(tmp_path / "c", case_id="BraTS-GLI-00001-000", convention=convention)
    case = load_case(tmp_path / "c")

    assert isinstance(case, BratsCase)
    assert case.case_id == "BraTS-GLI-00001-000"
    assert case.convention == convention
    assert case.modalities == MODALITIES[convention]
    assert case.files == files
    assert case.image.dtype == np.float32 and case.image.flags.c_contiguous
    assert case.image.shape == (4, *SHAPE) and case.shape == SHAPE
    # channel i is about (i + 1) * 1000 inside the brain, whatever the order of the files on disk
    inside = brain_mask(case.image)
    for channel in range(4):
        assert abs(np.median(case.image[channel][inside]) - (channel + 1) * 1000) < 50
    assert case.label.dtype == np.uint8 and case.label.shape == SHAPE
    assert set(np.unique(case.label).tolist()) == labels
    assert case.spacing == (1.0, 1.0, 1.0)
    assert case.voxel_volume_ml == pytest.approx(0.001)


def test_one_file_or_a_list_loads_the_same_case_as_the_folder(tmp_path):
    files = write_case(tmp_path, case_id="a", seed=1)
    write_case(tmp_path, case_id="b", seed=2)  # a second case in the same flat folder
    from_file = load_case(files["t2"])
    from_list = load_case([files[k] for k in ("seg", "flair", "t1", "t2", "t1ce")], threads=1)

    assert from_file.case_id == from_list.case_id == "a"
    assert from_file.files == from_list.files == files
    np.testing.assert_array_equal(from_file.image, from_list.image)
    np.testing.assert_array_equal(from_file.label, from_list.label)
    raw_t2 = np.asanyarray(nib.load(files["t2"]).dataobj)
    np.testing.assert_array_equal(from_file.image[2], from_file.source.to_canonical(raw_t2))


def test_uncompressed_nii_without_segmentation(tmp_path):
    files = write_case(tmp_path, convention="brats2023", ext=".nii", seg=False)
    case = load_case(tmp_path)
    assert case.label is None
    assert set(case.files) == {"t1n", "t1c", "t2w", "t2f"}
    assert all(p.name.endswith("nii") for p in files.values())


@pytest.mark.parametrize(
    ("geometry", "spacing"),
    [("RAS", (1, 1, 1)), ("LPS", (1, 1, 1)), ("oblique", (0.9, 1.1, 1.2)), ("anisotropic", (1, 1, 3))],
)
def test_canonical_image_is_ras_and_every_voxel_keeps_its_world_position(tmp_path, geometry, spacing):
    source_affine = AFFINES[geometry]
    files = write_case(tmp_path, affine=source_affine, seg=False)
    case = load_case(tmp_path)

    assert nib.aff2axcodes(case.affine) == ("R", "A", "S")
    np.testing.assert_allclose(case.spacing, spacing)
    np.testing.assert_array_equal(case.source.affine, nib.load(files["t1"]).affine)
    assert case.source.shape == SHAPE
    # every source voxel lands at the canonical index whose world position is the same
    source_index = np.indices(SHAPE).reshape(3, -1)
    world = source_affine[:3, :3] @ source_index + source_affine[:3, 3:]
    canonical_index = np.linalg.inv(case.affine)[:3, :3] @ world + np.linalg.inv(case.affine)[:3, 3:]
    np.testing.assert_allclose(canonical_index, np.round(canonical_index), atol=1e-6)
    canonical_index = np.round(canonical_index).astype(int)
    raw_flair = np.asanyarray(nib.load(files["flair"]).dataobj)
    np.testing.assert_array_equal(case.image[3][tuple(canonical_index)], raw_flair[tuple(source_index)])


def test_nifti_scaling_is_applied(tmp_path):
    files = write_case(tmp_path, seg=False)
    values = np.random.default_rng(3).uniform(0.5, 7.5, SHAPE).astype(np.float32)
    img = nib.Nifti1Image(values, AFFINES["LPS"])
    img.set_data_dtype(np.int16)  # nibabel stores int16 with scl_slope / scl_inter
    nib.save(img, files["t1ce"])
    assert nib.load(files["t1ce"]).dataobj.slope != 1.0

    case = load_case(tmp_path)
    np.testing.assert_allclose(case.image[1], case.source.to_canonical(nib.load(files["t1ce"]).get_fdata()), rtol=1e-6)


def test_4d_file_with_one_volume_is_read_as_3d(tmp_path):
    files = write_case(tmp_path, seg=False)
    raw = np.asanyarray(nib.load(files["t2"]).dataobj)
    write_volume(files["t2"], raw[..., np.newaxis], AFFINES["LPS"])
    assert nib.load(files["t2"]).shape == (*SHAPE, 1)

    case = load_case(tmp_path)
    np.testing.assert_array_equal(case.image[2], case.source.to_canonical(raw))


def test_find_cases_in_a_cohort(tmp_path):
    write_case(tmp_path / "cohort" / "BraTS2021_00002")
    write_case(tmp_path / "cohort" / "site_b" / "BraTS-GLI-00001-000", convention="brats2023")
    (tmp_path / "cohort" / "empty").mkdir()
    (tmp_path / "cohort" / "notes.txt").write_text("not a case")

    assert find_cases(tmp_path / "cohort") == [
        tmp_path / "cohort" / "BraTS2021_00002",
        tmp_path / "cohort" / "site_b" / "BraTS-GLI-00001-000",
    ]
    assert find_cases(tmp_path / "cohort" / "BraTS2021_00002") == [tmp_path / "cohort" / "BraTS2021_00002"]
    with pytest.raises(BratsInputError, match="no BraTS case found") as error:
        find_cases(tmp_path / "cohort" / "empty")
    assert error.value.path == tmp_path / "cohort" / "empty"
    with pytest.raises(BratsInputError, match="no such folder"):
        find_cases(tmp_path / "missing")


def test_zscore_inside_the_brain_mask(tmp_path):
    write_case(tmp_path, seg=False)
    image = load_case(tmp_path).image
    before = image.copy()
    mask = brain_mask(image)
    normalised = zscore_in_mask(image)

    assert normalised.dtype == np.float32 and normalised.shape == image.shape
    np.testing.assert_array_equal(image, before)
    assert 0 < mask.sum() < mask.size
    for channel in normalised:
        assert abs(channel[mask].mean()) < 1e-4
        assert channel[mask].std() == pytest.approx(1.0, abs=1e-4)
        assert not channel[~mask].any()

    smaller = np.zeros_like(mask)
    smaller[5:15, 5:15, 4:12] = True
    inside_small = zscore_in_mask(image, smaller)
    assert not inside_small[:, ~smaller].any()
    assert inside_small[0][smaller].std() == pytest.approx(1.0, abs=1e-4)

    constant = np.where(mask, 5.0, 0.0).astype(np.float32)[np.newaxis]
    assert not zscore_in_mask(constant).any()
    with pytest.raises(ValueError, match="mask is empty"):
        zscore_in_mask(image, np.zeros_like(mask))


def test_brain_bbox_with_margin_clipped_to_the_volume():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[3:10, 0:4, 8:16] = True
    assert brain_bbox(mask) == (slice(3, 10), slice(0, 4), slice(8, 16))
    assert brain_bbox(mask, margin=2) == (slice(1, 12), slice(0, 6), slice(6, 16))
    assert brain_bbox(mask, margin=(0, 1, 5)) == (slice(3, 10), slice(0, 5), slice(3, 16))
    image = np.stack([np.where(mask, 7.0, 0.0)] + [np.zeros(SHAPE)] * 3)
    assert brain_bbox(image, margin=2) == brain_bbox(mask, margin=2)
    with pytest.raises(ValueError, match="mask is empty"):
        brain_bbox(np.zeros(SHAPE, dtype=bool))

