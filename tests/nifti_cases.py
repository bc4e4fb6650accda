"""Small, real BraTS-named NIfTI cases written with nibabel, for the napari_acs.io tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from napari_acs.io.case import MODALITIES, SEPARATORS
from napari_acs.io.labels import get_convention

SHAPE = (24, 20, 16)


def rotation_z(degrees: float) -> np.ndarray:
    """(3, 3) rotation about the z axis."""
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def affine(linear: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = origin
    return out


#: Source voxel -> world affines of the geometries the tests cover.
AFFINES: dict[str, np.ndarray] = {
    "RAS": affine(np.diag([1.0, 1.0, 1.0]), (-12.0, -10.0, -8.0)),
    "LPS": affine(np.diag([-1.0, -1.0, 1.0]), (12.0, 10.0, -8.0)),  # BraTS files are stored like this
    "oblique": affine(rotation_z(20) @ np.diag([-0.9, 1.1, 1.2]), (5.0, -7.0, 3.0)),
    # 1 x 1 x 3 mm, stored with the thick axis first and axes permuted (S, L, A)
    "anisotropic": affine(np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0]]), (4.0, -6.0, -30.0)),
}


def brain(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Boolean ellipsoid filling most of the volume."""
    grid = np.indices(shape, dtype=float)
    centre = [(s - 1) / 2 for s in shape]
    radius = [0.42 * s for s in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) <= 1.0


def write_volume(
    path: Path, data: np.ndarray, affine: np.ndarray, *, codes: tuple[int, int] = (1, 1), image_class=nib.Nifti1Image
) -> Path:
    """Write ``data`` with ``affine``; ``codes`` = (qform_code, sform_code), 0 leaves that form unset.
    Units are mm and s, as scanners write them."""
    img = image_class(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=codes[0])
    img.set_sform(affine, code=codes[1])
    nib.save(img, path)
    return path


def path_of(folder: Path, case_id: str, convention: str, kind: str, ext: str = ".nii.gz") -> Path:
    return folder / f"{case_id}{SEPARATORS[convention]}{kind}{ext}"


def write_case(
    folder: Path,
    *,
    case_id: str = "case01",
    convention: str = "brats2021",
    affine: np.ndarray = AFFINES["LPS"],
    shape: tuple[int, int, int] = SHAPE,
    seg: bool = True,
    ext: str = ".nii.gz",
    codes: tuple[int, int] = (1, 1),
    image_class=nib.Nifti1Image,
    seed: int = 0,
) -> dict[str, Path]:
    """Write four int16 modalities (channel i is about (i + 1) * 1000 inside the brain, 0 outside)
    and, if ``seg``, a uint8 segmentation of random legal labels inside the brain."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    inside = brain(shape)
    files = {}
    for channel, kind in enumerate(MODALITIES[convention]):
        data = np.zeros(shape, dtype=np.int16)
        data[inside] = (channel + 1) * 1000 + rng.integers(-100, 100, int(inside.sum()))
        path = path_of(folder, case_id, convention, kind, ext)
        files[kind] = write_volume(path, data, affine, codes=codes, image_class=image_class)
    if seg:
        labels = np.zeros(shape, dtype=np.uint8)
        labels[inside] = rng.choice(sorted(get_convention(convention).allowed), int(inside.sum()))
        path = path_of(folder, case_id, convention, "seg", ext)
        files["seg"] = write_volume(path, labels, affine, codes=codes, image_class=image_class)
    return files
