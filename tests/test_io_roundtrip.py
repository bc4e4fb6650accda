"""Segmentations saved on the source grid: voxel-exact round trips, header geometry, atomic writes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nifti_cases import AFFINES, SHAPE, write_case

from napari_acs.io import BratsInputError, default_seg_name, load_case, save_segmentation

GEOMETRY_HEADER_FIELDS = ("qform_code", "sform_code", "pixdim", "xyzt_units", "quatern_b", "quatern_c", "quatern_d")


def raw_image(path: Path) -> nib.Nifti1Image:
    """The file as stored: no canonicalisation."""
    return nib.load(path)


@pytest.mark.parametrize(
    ("geometry", "convention", "ext", "codes", "image_class"),
    [
        ("LPS", "brats2021", ".nii.gz", (1, 1), nib.Nifti1Image),
        ("RAS", "brats2023", ".nii.gz", (2, 0), nib.Nifti1Image),  # qform only
        ("oblique", "brats2021", ".nii", (0, 4), nib.Nifti1Image),  # sform only (MNI)
        ("anisotropic", "brats2023", ".nii.gz", (1, 2), nib.Nifti1Image),
        ("oblique", "brats2023", ".nii.gz", (1, 1), nib.Nifti2Image),
    ],
)
def test_label_round_trip_is_voxel_exact_on_the_source_grid(tmp_path, geometry, convention, ext, codes, image_class):
    files = write_case(
        tmp_path / "in", convention=convention, affine=AFFINES[geometry], ext=ext, codes=codes, image_class=image_class
    )
    case = load_case(tmp_path / "in")
    out = save_segmentation(case.label, case, tmp_path / default_seg_name(case))

    source, written = raw_image(files["seg"]), raw_image(out)
    assert type(written) is image_class
    assert written.get_data_dtype() == np.uint8
    assert written.shape == source.shape == SHAPE
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), np.asanyarray(source.dataobj))
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    for field in GEOMETRY_HEADER_FIELDS:
        np.testing.assert_array_equal(written.header[field], source.header[field], err_msg=field)
    assert written.header.get_slope_inter() in ((None, None), (1.0, 0.0))
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(AFFINES[geometry])


@pytest.mark.parametrize("geometry", ["LPS", "oblique", "anisotropic"])
def test_canonical_labels_are_written_at_their_world_position(tmp_path, geometry):
    write_case(tmp_path / "in", affine=AFFINES[geometry], seg=False)
    case = load_case(tmp_path / "in")
    labels = np.random.default_rng(5).choice(np.array([0, 1, 2, 4], np.uint8), case.shape)
    written = raw_image(save_segmentation(labels, case, tmp_path / "pred.nii.gz"))
    data = np.asanyarray(written.dataobj)

    # every written voxel holds the label of the canonical voxel at the same world position
    source_index = np.indices(written.shape).reshape(3, -1)
    world = written.affine[:3, :3] @ source_index + written.affine[:3, 3:]
    canonical = np.linalg.inv(case.affine)[:3, :3] @ world + np.linalg.inv(case.affine)[:3, 3:]
    canonical = np.round(canonical).astype(int)
    np.testing.assert_array_equal(data[tuple(source_index)], labels[tuple(canonical)])


def test_saving_in_another_convention_re_encodes_enhancing_tumour(tmp_path):
    files = write_case(tmp_path / "in", convention="brats2021")
    case = load_case(tmp_path / "in")
    out = save_segmentation(case.label, case, tmp_path / "seg2023.nii.gz", convention="brats2023")

    source = np.asanyarray(raw_image(files["seg"]).dataobj)
    written = np.asanyarray(raw_image(out).dataobj)
    np.testing.assert_array_equal(written, np.where(source == 4, 3, source))
    assert set(np.unique(written).tolist()) == {0, 1, 2, 3}


def test_default_seg_name_follows_the_case_naming(tmp_path):
    write_case(tmp_path / "a", case_id="BraTS2021_00000", convention="brats2021", seg=False)
    write_case(tmp_path / "b", case_id="BraTS-GLI-00000-000", convention="brats2023", seg=False)
    assert default_seg_name(load_case(tmp_path / "a")) == "BraTS2021_00000_seg.nii.gz"
    assert default_seg_name(load_case(tmp_path / "b")) == "BraTS-GLI-00000-000-seg.nii.gz"


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    write_case(tmp_path / "in")
    case = load_case(tmp_path / "in")
    out = tmp_path / "out" / "pred.nii.gz"
    out.parent.mkdir()
    save_segmentation(case.label, case, out)
    before = out.read_bytes()

    with pytest.raises(BratsInputError, match="file exists; pass overwrite=True") as error:
        save_segmentation(np.zeros(case.shape, np.uint8), case, out)
    assert error.value.path == out
    assert out.read_bytes() == before

    # a failing write (wrong shape) leaves the existing file untouched, even with overwrite
    with pytest.raises(BratsInputError, match="does not match the case shape"):
        save_segmentation(np.zeros((3, 3, 3), np.uint8), case, out, overwrite=True)
    assert out.read_bytes() == before

    save_segmentation(np.zeros(case.shape, np.uint8), case, out, overwrite=True)
    assert not np.asanyarray(raw_image(out).dataobj).any()
    assert [p.name for p in out.parent.iterdir()] == ["pred.nii.gz"]  # no temporary files left


def test_failed_rename_leaves_no_temporary_file(tmp_path):
    write_case(tmp_path / "in")
    case = load_case(tmp_path / "in")
    target = tmp_path / "out" / "pred.nii.gz"
    target.mkdir(parents=True)  # a folder in the way: the temporary file is written, the rename fails
    with pytest.raises(BratsInputError, match="cannot be written") as error:
        save_segmentation(case.label, case, target, overwrite=True)
    assert error.value.path == target
    assert [p.name for p in target.parent.iterdir()] == ["pred.nii.gz"]
    assert target.is_dir() and not any(target.iterdir())
