"""Bad BraTS input: every problem raises BratsInputError naming the file and the problem."""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nifti_cases import AFFINES, SHAPE, write_case, write_volume

from napari_acs.io import BratsInputError, load_case, save_segmentation


def expect_error(call: Callable[[], object], path: Path, *fragments: str) -> str:
    """Run ``call``; it must raise BratsInputError about ``path`` whose message has ``fragments``."""
    with pytest.raises(BratsInputError) as info:
        call()
    message = str(info.value)
    assert info.value.path == path, message
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def case_files(tmp_path) -> dict[str, Path]:
    return write_case(tmp_path / "case01", case_id="case01")


def raw(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


# --------------------------------------------------------------------------- finding the files


def test_missing_folder_or_file(tmp_path, case_files):
    expect_error(lambda: load_case(tmp_path / "nope"), tmp_path / "nope", "no such file or folder")
    gone = case_files["t1"].with_name("case01_t1.nii")
    expect_error(lambda: load_case([case_files["t1ce"], gone]), gone, "no such file")


def test_folder_without_brats_files(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    write_volume(folder / "brain.nii.gz", np.ones(SHAPE, np.int16), np.eye(4))
    expect_error(lambda: load_case(folder), folder, "not a BraTS case folder", "<id>_t1.nii.gz", "<id>-t1n.nii.gz")

    write_case(folder / "a")
    write_case(folder / "b")
    expect_error(lambda: load_case(folder), folder, "it holds 2 case folders", "find_cases")


def test_file_that_is_not_brats_named(tmp_path, case_files):
    other = write_volume(tmp_path / "brain.nii.gz", np.ones(SHAPE, np.int16), np.eye(4))
    expect_error(lambda: load_case(other), other, "not a BraTS file name")
    expect_error(lambda: load_case([*case_files.values(), other]), other, "not a BraTS file name")


@pytest.mark.parametrize(
    ("convention", "removed", "expected"),
    [("brats2021", "t1ce", "case01_t1ce.nii.gz"), ("brats2023", "t2f", "case01-t2f.nii.gz")],
)
def test_missing_modality(tmp_path, convention, removed, expected):
    files = write_case(tmp_path, case_id="case01", convention=convention)
    files[removed].unlink()
    expect_error(lambda: load_case(tmp_path), tmp_path, f"missing modality {removed}", expected)
    expect_error(lambda: load_case(files["seg"]), tmp_path, f"missing modality {removed}", expected)


def test_two_files_for_one_modality(case_files):
    folder = case_files["t1"].parent
    uncompressed = folder / "case01_t1.nii"
    nib.save(nib.load(case_files["t1"]), uncompressed)
    expect_error(lambda: load_case(folder), folder, "2 files for t1", "case01_t1.nii, case01_t1.nii.gz")

    uncompressed.unlink()
    nib.save(nib.load(case_files["t1"]), folder / "case01-t1n.nii.gz")
    expect_error(lambda: load_case(folder), folder, "2 files for t1/t1n", "case01-t1n.nii.gz", "case01_t1.nii.gz")


def test_mixed_2021_and_2023_naming(case_files):
    folder = case_files["t2"].parent
    case_files["t2"].rename(folder / "case01-t2w.nii.gz")
    expect_error(lambda: load_case(folder), folder, "mixes BraTS 2021 names", "BraTS 2023 names (case01-t2w.nii.gz)")


def test_files_of_several_cases(tmp_path):
    a = write_case(tmp_path, case_id="a")
    b = write_case(tmp_path, case_id="b")
    expect_error(lambda: load_case(tmp_path), tmp_path, "holds files of 2 cases (a, b)")
    expect_error(lambda: load_case([a["t1"], a["t1ce"], a["t2"], b["flair"]]), tmp_path, "belong to 2 cases (a, b)")


# --------------------------------------------------------------------------- geometry


def test_shapes_that_disagree(case_files):
    write_volume(case_files["t2"], np.ones((24, 20, 15), np.int16), AFFINES["LPS"])
    expect_error(
        lambda: load_case(case_files["t1"]),
        case_files["t2"],
        "shape (24, 20, 15)",
        "case01_t1.nii.gz shape (24, 20, 16)",
    )


def test_affines_that_disagree_beyond_the_tolerance(case_files):
    shifted = AFFINES["LPS"].copy()
    shifted[0, 3] += 5e-4  # within 1e-3 mm: the same grid
    write_volume(case_files["flair"], raw(case_files["flair"]), shifted)
    load_case(case_files["t1"])

    shifted[0, 3] += 0.5
    write_volume(case_files["flair"], raw(case_files["flair"]), shifted)
    expect_error(
        lambda: load_case(case_files["t1"]), case_files["flair"], "affine differs", "case01_t1.nii.gz", "0.5005 mm"
    )


@pytest.mark.parametrize(
    ("shape", "what"),
    [((24, 20), "is a 2D image"), ((24, 20, 1), "is a 2D image"), ((24, 20, 16, 3), "is a 4D volume")],
)
def test_2d_or_4d_volume(case_files, shape, what):
    write_volume(case_files["t1ce"], np.ones(shape, np.int16), AFFINES["LPS"])
    expect_error(lambda: load_case(case_files["t1"]), case_files["t1ce"], what, f"shape {shape}")


def test_voxels_that_are_not_numbers(case_files):
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.complex64), AFFINES["LPS"]), case_files["t2"])
    expect_error(lambda: load_case(case_files["t1"]), case_files["t2"], "voxel type complex64")


# --------------------------------------------------------------------------- voxel values


@pytest.mark.parametrize(
    ("bad", "what"), [(np.nan, "has 1 NaN and 0 infinite voxels"), (np.inf, "has 0 NaN and 1 infinite voxels")]
)
def test_nan_or_inf_voxels(case_files, bad, what):
    data = raw(case_files["flair"]).astype(np.float32)
    data[3, 4, 5] = bad
    write_volume(case_files["flair"], data, AFFINES["LPS"])
    expect_error(lambda: load_case(case_files["t1"]), case_files["flair"], what)


@pytest.mark.parametrize(("value", "what"), [(0, "is all-zero (empty volume)"), (7, "is constant (every voxel is 7)")])
def test_empty_or_constant_volume(case_files, value, what):
    write_volume(case_files["t1"], np.full(SHAPE, value, np.int16), AFFINES["LPS"])
    expect_error(lambda: load_case(case_files["t1"]), case_files["t1"], what)


# --------------------------------------------------------------------------- damaged files


def test_truncated_gzip(case_files):
    data = case_files["t2"].read_bytes()
    case_files["t2"].write_bytes(data[: len(data) // 2])
    expect_error(lambda: load_case(case_files["t1"]), case_files["t2"], "corrupt or truncated gzip file", "EOFError")


def test_corrupt_gzip_is_caught_by_its_checksum(case_files):
    data = bytearray(case_files["t2"].read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the compressed voxels
    case_files["t2"].write_bytes(bytes(data))
    expect_error(lambda: load_case(case_files["t1"]), case_files["t2"], "corrupt or truncated gzip file")


def test_truncated_uncompressed_nifti(tmp_path):
    files = write_case(tmp_path, ext=".nii")
    data = files["t1ce"].read_bytes()
    files["t1ce"].write_bytes(data[: len(data) - 100])
    expect_error(lambda: load_case(tmp_path), files["t1ce"], f"is {len(data) - 100:,} bytes but its header needs",
                 "truncated file")


def test_files_that_are_not_nifti(tmp_path, case_files):
    case_files["t1"].write_text("patient notes, not an image\n" * 20)
    expect_error(lambda: load_case(case_files["seg"]), case_files["t1"], "not gzip-compressed", "not a .nii.gz file")

    case_files["t1"].write_bytes(gzip.compress(b"patient notes, not an image\n" * 20))
    expect_error(lambda: load_case(case_files["seg"]), case_files["t1"], "not a readable NIfTI file")

    case_files["t1"].unlink()
    text_nii = case_files["t1"].with_name("case01_t1.nii")
    text_nii.write_text("patient notes, not an image\n" * 20)
    expect_error(lambda: load_case(case_files["seg"]), text_nii, "not a readable NIfTI file")


# --------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    ("convention", "bad_value", "fragments"),
    [
        ("brats2021", 3, ("values 3 unknown to the brats2021 convention (allowed [0, 1, 2, 4])", "fit the brats2023")),
        ("brats2023", 4, ("values 4 unknown to the brats2023 convention (allowed [0, 1, 2, 3])", "fit the brats2021")),
        ("brats2021", 7, ("label values 7 unknown to the brats2021 convention",)),
    ],
)
def test_segmentation_with_unknown_labels(tmp_path, convention, bad_value, fragments):
    files = write_case(tmp_path, convention=convention)
    labels = raw(files["seg"])
    labels[labels == {"brats2021": 4, "brats2023": 3}[convention]] = bad_value
    write_volume(files["seg"], labels, AFFINES["LPS"])
    message = expect_error(lambda: load_case(tmp_path), files["seg"], *fragments)
    assert ("fit the" in message) == (bad_value != 7)


@pytest.mark.parametrize(("bad", "what"), [(1.5, "non-integer label values (1.5)"), (np.nan, "NaN or infinite values")])
def test_segmentation_with_non_integer_values(case_files, bad, what):
    labels = raw(case_files["seg"]).astype(np.float32)
    labels[2, 3, 4] = bad
    write_volume(case_files["seg"], labels, AFFINES["LPS"])
    expect_error(lambda: load_case(case_files["t1"]), case_files["seg"], what)


def test_segmentation_on_another_grid(case_files):
    labels = raw(case_files["seg"])
    write_volume(case_files["seg"], labels[:, :, :-1], AFFINES["LPS"])
    load = functools.partial(load_case, case_files["t1"])
    expect_error(load, case_files["seg"], "shape (24, 20, 15) differs from case01_t1.nii.gz")

    write_volume(case_files["seg"], labels, AFFINES["RAS"])
    expect_error(load, case_files["seg"], "affine differs from the affine of case01_t1.nii.gz")


# --------------------------------------------------------------------------- writing


def test_labels_that_cannot_be_saved(tmp_path, case_files):
    case = load_case(case_files["t1"])
    out = tmp_path / "out_seg.nii.gz"
    cut = case.label[:, :, :-1]
    expect_error(lambda: save_segmentation(cut, case, out), out, "(24, 20, 15) does not match", "(24, 20, 16)")
    as_float = case.label.astype(np.float32)
    expect_error(lambda: save_segmentation(as_float, case, out), out, "integer label map", "float32")
    bad = case.label.copy()
    bad[0, 0, 0] = 3
    expect_error(lambda: save_segmentation(bad, case, out), out, "[3] unknown to the case's brats2021 convention")
    png = tmp_path / "out.png"
    expect_error(lambda: save_segmentation(case.label, case, png), png, ".nii.gz or .nii")
    missing = tmp_path / "no" / "out.nii.gz"
    expect_error(lambda: save_segmentation(case.label, case, missing), missing, f"{missing.parent} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case01"]
