"""One NIfTI file with any name, as it is: a 3D or 4D volume in canonical RAS+ order.

What the napari reader opens when a file is not part of a BraTS case (``scan.nii.gz``
from a scanner or PACS export, a 4D series). Same validation path as a case
(:func:`napari_acs.io.nifti.open_nifti`: header first, sizes capped, gzip bounded), same
reorientation (axis permutations and flips to RAS+, never resampling), same refusals of
NaN/inf and empty volumes. A 4D file (X, Y, Z, T) keeps its T volumes together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.orientations import io_orientation

from napari_acs.io.case import SourceGeometry, read_voxels
from napari_acs.io.errors import BratsInputError
from napari_acs.io.nifti import is_nifti_name, nifti_stem, open_nifti, read_header


@dataclass(frozen=True, eq=False)
class NiftiVolume:
    """One NIfTI file in canonical RAS+ orientation.

    ``data`` float32 ``(X, Y, Z)`` or ``(X, Y, Z, T)`` (T volumes of a 4D file), scaled
    (scl_slope / scl_inter applied); ``affine`` (4, 4) canonical voxel -> world mm;
    ``source`` the file's own grid (to write results back); ``path`` the file.
    """

    data: np.ndarray
    affine: np.ndarray
    source: SourceGeometry
    path: Path

    @property
    def name(self) -> str:
        """The file name without ``.nii`` / ``.nii.gz``."""
        return nifti_stem(self.path)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Canonical spatial shape (X, Y, Z)."""
        return tuple(int(s) for s in self.data.shape[:3])

    @property
    def volumes(self) -> int:
        """Number of 3D volumes: 1, or T of a 4D file."""
        return int(self.data.shape[3]) if self.data.ndim == 4 else 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes."""
        return tuple(float(s) for s in voxel_sizes(self.affine))


def check_volume_file(path: str | os.PathLike) -> None:
    """Whether :func:`load_volume` may read ``path``, from its name and header only (nothing
    decompressed beyond the header): raises :class:`BratsInputError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise BratsInputError(path, "no such file")
    if not is_nifti_name(path):
        raise BratsInputError(path, "not a NIfTI file name (.nii or .nii.gz)")
    read_header(path, allow_4d=True)


def load_volume(path: str | os.PathLike) -> NiftiVolume:
    """Read and validate one 3D or 4D NIfTI file (any name); see :class:`NiftiVolume`.

    Raises :class:`BratsInputError` naming the file for anything
    :func:`~napari_acs.io.nifti.open_nifti` refuses, NaN or infinite voxels, or an
    empty (constant) volume.
    """
    path = Path(path)
    check_volume_file(path)
    img, shape = open_nifti(path, allow_4d=True)
    full = tuple(int(s) for s in img.shape[:4])
    source = SourceGeometry(affine=img.affine.copy(), shape=shape, header=img.header.copy(),
                            ornt=io_orientation(img.affine))
    raw = read_voxels(img, path, full)
    data = np.array(source.to_canonical(raw), dtype=np.float32, order="C")
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    if slope != 1.0:
        data *= np.float32(slope)
    if inter != 0.0:
        data += np.float32(inter)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    low, high = data.min(), data.max()  # NaN propagates through min/max
    if not (np.isfinite(low) and np.isfinite(high)):
        raise BratsInputError(path, f"has {int(np.isnan(data).sum())} NaN and {int(np.isinf(data).sum())} "
                                    "infinite voxels")
    if low == high:
        raise BratsInputError(path, "is all-zero (empty volume)" if low == 0 else f"is constant (every voxel is {low:g})")
    return NiftiVolume(data=data, affine=source.canonical_affine, source=source, path=path)
