"""Results on the prepared 1 mm grid written back on the reference file's own grid.

Labels are resampled by nearest neighbour through the inverse of the 1 mm grid's mapping
(the reference was the fixed image of every registration, so no transform is involved);
when the reference file already is the 1 mm grid, the labels are only re-oriented, voxel
for voxel, like every BraTS case (:meth:`~napari_acs.io.SourceGeometry.to_source`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nibabel.orientations import io_orientation
from scipy import ndimage

from napari_acs.io.case import MODALITIES, BratsCase, SourceGeometry, label_values
from napari_acs.io.labels import Convention
from napari_acs.io.nifti import open_nifti
from napari_acs.io.writer import save_segmentation
from napari_acs.prepare.errors import PrepareError
from napari_acs.prepare.grid import Grid


def file_geometry(path: Path) -> tuple[SourceGeometry, object]:
    """The grid of a NIfTI file (header only, through :func:`~napari_acs.io.nifti.open_nifti`)
    and the opened image (its voxels not read yet)."""
    image, shape = open_nifti(path)
    geometry = SourceGeometry(affine=image.affine.copy(), shape=shape, header=image.header.copy(),
                              ornt=io_orientation(image.affine))
    return geometry, image


def reference_grid(source: SourceGeometry) -> Grid:
    """The canonical (RAS+) grid of a source file."""
    return Grid(source.canonical_shape, source.canonical_affine)


def labels_to_grid(labels: np.ndarray, grid: Grid, target: Grid) -> np.ndarray:
    """uint8 labels (X, Y, Z) on ``grid`` sampled on ``target`` by nearest neighbour (0 outside
    ``grid``); a copy when the two grids are one."""
    labels = np.asarray(labels)
    if labels.shape != grid.shape:
        raise ValueError(f"labels shape {labels.shape} is not the grid's {grid.shape}")
    if target.same_as(grid):
        return labels.astype(np.uint8, copy=True)
    to_grid = np.linalg.inv(grid.affine) @ target.affine  # target voxel -> grid voxel
    return ndimage.affine_transform(labels.astype(np.uint8), to_grid[:3, :3], offset=to_grid[:3, 3],
                                    output_shape=target.shape, order=0, mode="constant", cval=0)


def save_on_source(labels: np.ndarray, source: SourceGeometry, path: str | os.PathLike, *, case_id: str,
                   convention: Convention, overwrite: bool = False) -> Path:
    """Write canonical labels (X, Y, Z) on ``source``'s canonical grid, in ``convention``, as a
    NIfTI with ``source``'s grid and header (:func:`~napari_acs.io.save_segmentation`: atomic,
    values checked, nothing overwritten unless asked)."""
    on_source = BratsCase(  # the geometry only: a zero image that takes no memory
        image=np.broadcast_to(np.float32(0), (4, *source.canonical_shape)), modalities=MODALITIES[convention],
        affine=source.canonical_affine, case_id=case_id, convention=convention, files={}, source=source)
    return save_segmentation(labels, on_source, path, overwrite=overwrite)


def to_reference_grid(seg_path: str | os.PathLike, prepared_dir: str | os.PathLike, out: str | os.PathLike, *,
                      overwrite: bool = False) -> Path:
    """Write a segmentation of a prepared case (``seg_path``, on the prepared 1 mm grid, e.g.
    from ``napari-acs segment PREPARED_DIR``) back on the grid of the exam's reference file,
    as ``out`` (.nii.gz); returns ``out``.

    Raises :class:`~napari_acs.prepare.PrepareError` (step ``"write-back"``) naming the file:
    ``prepared_dir`` not a prepared case, the reference file gone or changed since, the
    segmentation not on the prepared grid; :class:`~napari_acs.io.BratsInputError` for an
    unreadable segmentation or label values unknown to the prepared case's convention.
    """
    from napari_acs.prepare.cache import read_manifest, unchanged

    prepared_dir, seg_path = Path(prepared_dir), Path(seg_path)
    manifest = read_manifest(prepared_dir)
    if manifest is None:
        raise PrepareError(prepared_dir, "write-back", "not a prepared case folder (no readable prepare.json)")
    key = manifest["key"]
    ref_kind, convention = key["reference"], key["convention"]
    ref_entry = key["inputs"][ref_kind]
    ref_path = Path(ref_entry["path"])
    if not ref_path.is_file():
        raise PrepareError(ref_path, "write-back", "the reference file is gone: its grid is needed to write back")
    if not unchanged(ref_path, ref_entry):
        raise PrepareError(ref_path, "write-back", f"changed since it was prepared into {prepared_dir}: prepare again")
    grid = Grid(tuple(manifest["grid"]["shape"]), np.array(manifest["grid"]["affine"], dtype=float))
    seg_source, seg_image = file_geometry(seg_path)
    if not reference_grid(seg_source).same_as(grid):
        raise PrepareError(seg_path, "write-back", f"is not on the prepared grid of {prepared_dir} "
                           f"(shape {seg_source.shape}, prepared {grid.shape}): segment the prepared case")
    labels = seg_source.to_canonical(label_values(seg_image, seg_path, seg_source.shape, convention))
    source, _ = file_geometry(ref_path)
    return save_on_source(labels_to_grid(labels, grid, reference_grid(source)), source, out,
                          case_id=key["case_id"], convention=convention, overwrite=overwrite)
