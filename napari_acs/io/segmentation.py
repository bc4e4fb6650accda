"""A segmentation file read onto a loaded case's grid (a prediction to report on or compare)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_acs.io.case import AFFINE_TOLERANCE_MM, BratsCase, label_values, parse_name
from napari_acs.io.errors import BratsInputError
from napari_acs.io.labels import convert_labels
from napari_acs.io.nifti import open_nifti


def read_segmentation(path: str | os.PathLike, case: BratsCase) -> np.ndarray:
    """The label map in ``path`` as uint8 ``(X, Y, Z)`` on ``case.image``'s canonical grid, in
    ``case.convention``'s label values.

    The file must lie on the case's source grid (shape, and affine within
    ``AFFINE_TOLERANCE_MM``); a BraTS-named file (``<id>_seg.nii.gz``, ``<id>-seg.nii.gz``)
    brings its own convention, any other name is read in the case's. The header is checked
    before any voxel is decompressed. Raises :class:`BratsInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise BratsInputError(path, "segmentation file not found" if not path.exists() else "is not a file")
    source = case.source
    reference = next(iter(case.files.values()))
    try:
        img, shape = open_nifti(path, expected_shape=source.shape)
    except BratsInputError as exc:
        if "differs from the expected" in exc.problem:
            raise BratsInputError(path, f"{exc.problem} grid of case {case.case_id} ({reference})") from None
        raise
    diff = float(np.abs(img.affine - source.affine).max())
    if not diff <= AFFINE_TOLERANCE_MM:
        raise BratsInputError(path, f"affine differs from the affine of case {case.case_id} ({reference}) by "
                                    f"{diff:.4g} mm (tolerance {AFFINE_TOLERANCE_MM} mm): not on the case's grid")
    name = parse_name(path.name)
    convention = name.convention if name is not None and name.kind == "seg" else case.convention
    labels = np.array(source.to_canonical(label_values(img, path, shape, convention)), dtype=np.uint8, order="C")
    return labels if convention == case.convention else convert_labels(labels, convention, case.convention)
