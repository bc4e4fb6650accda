"""Write label maps as NIfTI on a case's source grid, atomically and without clobbering."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from napari_acs.io.case import SEPARATORS, BratsCase
from napari_acs.io.errors import BratsInputError
from napari_acs.io.files import atomic_path
from napari_acs.io.labels import Convention, convert_labels, get_convention, unknown_label_values

_SUFFIXES = (".nii.gz", ".nii")
#: ISA-L compression level of the ``.nii.gz`` files written (0-3; 1 matches nibabel's zlib level 1 in size).
GZIP_LEVEL = 1


def default_seg_name(case: BratsCase) -> str:
    """File name BraTS uses for the case's segmentation: ``<id>_seg.nii.gz`` or ``<id>-seg.nii.gz``."""
    return f"{case.case_id}{SEPARATORS[case.convention]}seg.nii.gz"


def save_segmentation(
    labels: np.ndarray,
    case: BratsCase,
    path: str | os.PathLike,
    *,
    convention: Convention | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a canonical integer label map (X, Y, Z), in ``case.convention``, on the source grid.

    The file has the source's shape, affine, orientation, qform/sform codes, pixdim
    and units (the source header is the template), uint8 voxels, no scaling. A
    ``convention`` other than the case's re-encodes the labels. The file is written to
    a temporary name in the same folder and renamed, so it appears whole or not at
    all; an existing file is kept unless ``overwrite``. Returns the path written.
    """
    path = _destination(path, "segmentation", overwrite)
    data = _checked_labels(labels, case, path)
    if convention is not None and get_convention(convention).name != case.convention:
        data = convert_labels(data, case.convention, convention)
    img = _source_image(np.asarray(case.source.to_source(data)), case)
    _atomic_save(img, path, overwrite)
    return path


def save_map(volume: np.ndarray, case: BratsCase, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a canonical float map on the case's source grid: ``(X, Y, Z)`` (an uncertainty map)
    or ``(R, X, Y, Z)`` (region probabilities, stored as a 4D NIfTI with R volumes).

    float32 voxels, no scaling, the source header's geometry; written atomically like
    :func:`save_segmentation`, an existing file kept unless ``overwrite``.
    """
    path = _destination(path, "map", overwrite)
    volume = np.asarray(volume, dtype=np.float32)
    spatial = volume if volume.ndim == 3 else np.moveaxis(volume, 0, -1)
    if volume.ndim not in (3, 4) or spatial.shape[:3] != case.shape:
        raise BratsInputError(path, f"map shape {volume.shape} does not match the case shape {case.shape}")
    _atomic_save(_source_image(np.asarray(case.source.to_source(spatial)), case), path, overwrite)
    return path


def _destination(path: str | os.PathLike, what: str, overwrite: bool) -> Path:
    """``path`` as a Path after the checks every writer here makes: a NIfTI suffix, an
    existing folder, no file there unless ``overwrite``."""
    path = Path(path)
    if not path.name.endswith(_SUFFIXES):
        raise BratsInputError(path, f"a {what} must be saved as .nii.gz or .nii")
    if not path.parent.is_dir():
        raise BratsInputError(path, f"the folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise BratsInputError(path, "file exists; pass overwrite=True to replace it")
    return path


def _checked_labels(labels: np.ndarray, case: BratsCase, path: Path) -> np.ndarray:
    """Validate dtype, shape and values against the case; return uint8 (X, Y, Z)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise BratsInputError(path, f"labels must be an integer label map, got dtype {labels.dtype}")
    if labels.shape != case.shape:
        raise BratsInputError(path, f"labels shape {labels.shape} does not match the case shape {case.shape}")
    unknown = unknown_label_values(labels, case.convention)
    if unknown:
        allowed = sorted(get_convention(case.convention).allowed)
        raise BratsInputError(
            path,
            f"labels hold values {unknown[:10]} unknown to the case's {case.convention} convention "
            f"(allowed {allowed})",
        )
    return labels.astype(np.uint8, copy=False)


def _source_image(data: np.ndarray, case: BratsCase) -> nib.Nifti1Image:
    """``data`` (uint8 labels or a float32 map) on the source grid with the source header's
    geometry (codes, pixdim, units)."""
    header = case.source.header.copy()
    header.set_data_dtype(data.dtype)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"] = header["cal_max"] = 0
    header.set_intent("none")
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    # The header's own affine equals case.source.affine, so nibabel keeps its q/sform as they are.
    return image_class(data, case.source.affine, header=header)


def _atomic_save(img: nib.Nifti1Image, path: Path, overwrite: bool) -> None:
    """Write ``img`` to a temporary file beside ``path``, flush it to disk, then rename it.
    ``.nii.gz`` is compressed by ISA-L at level 1 (about 6x faster than zlib's level 1, which
    nibabel uses, and a little smaller)."""
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            if path.name.endswith(".gz"):
                tmp.write_bytes(igzip.compress(img.to_bytes(), compresslevel=GZIP_LEVEL))
            else:
                nib.save(img, tmp)
    except FileExistsError:  # created by someone else while we wrote
        raise BratsInputError(path, "file exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        raise BratsInputError(path, f"cannot be written: {exc.strerror or exc}") from exc
