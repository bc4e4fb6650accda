"""Evaluate a folder of predicted segmentations against reference segmentations.

Rows per case and region carry both metric families: the legacy BraTS ones
(``LEGACY_METRICS``) and the BraTS 2023 lesion-wise ones (``LESION_METRICS``).
"""

from __future__ import annotations

import csv
import io as _io
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_acs.io import BratsInputError, parse_name
from napari_acs.io.case import AFFINE_TOLERANCE_MM, affine_difference, label_values, walk_folders
from napari_acs.io.nifti import open_nifti
from napari_acs.metrics.brats import brats_metrics
from napari_acs.metrics.lesionwise import LESION_METRICS, LesionParams, get_challenge

LEGACY_METRICS = ("dice", "hd95", "sensitivity", "specificity", "volume_ml_pred", "volume_ml_ref")
#: CSV columns after ``case_id`` and ``region``: legacy, then lesion-wise (Dice, HD95 mm, counts).
METRICS = (*LEGACY_METRICS, *LESION_METRICS)


@dataclass
class SegFile:
    """A BraTS segmentation file with its case id and label convention."""

    path: Path
    case_id: str
    convention: str


def _seg_files(folder: Path) -> dict[str, SegFile]:
    """Segmentation files under ``folder`` (any depth, symlinked folders followed) by case id."""
    found: dict[str, SegFile] = {}
    paths = sorted(sub / name for sub, _, names in walk_folders(folder) for name in names) if folder.is_dir() else []
    for path in paths:
        name = parse_name(path.name)
        if name is None or name.kind != "seg":
            continue
        if name.case_id in found:
            raise BratsInputError(path, f"a second segmentation for case {name.case_id} "
                                        f"(first: {found[name.case_id].path})")
        found[name.case_id] = SegFile(path, name.case_id, name.convention)
    return found


def _read_labels(seg: SegFile, expected_shape: tuple[int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The file's labels (uint8, its own grid) and affine: header checked before any voxel is
    decompressed (size limit, ``expected_shape``), values checked against its convention."""
    img, shape = open_nifti(seg.path, expected_shape=expected_shape)
    return label_values(img, seg.path, shape, seg.convention), img.affine


def evaluate_folders(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, challenge: str | LesionParams = "GLI"
) -> list[dict]:
    """One row per case and region: ``case_id``, ``region`` and the :data:`METRICS`.

    Predictions and references are matched by case id and must share the grid
    (shape and affine); each file's naming gives its label convention. ``challenge``
    names the BraTS 2023 lesion-wise parameters (``"GLI"``, ``"SSA"``, ``"MEN"``,
    ``"PED"``, ``"MET"``).
    """
    params = get_challenge(challenge)  # an unknown name fails before any file is read
    preds, refs = _seg_files(Path(pred_dir)), _seg_files(Path(ref_dir))
    if not preds:
        raise BratsInputError(Path(pred_dir), "no segmentation files (<id>_seg.nii.gz) found")
    rows: list[dict] = []
    for case_id, pred in preds.items():
        if case_id not in refs:
            raise BratsInputError(pred.path, f"no reference segmentation for case {case_id} in {ref_dir}")
        ref = refs[case_id]
        r, r_aff = _read_labels(ref)
        try:
            p, p_aff = _read_labels(pred, expected_shape=r.shape)
        except BratsInputError as exc:
            if "differs from the expected" in str(exc):
                raise BratsInputError(pred.path, f"{exc.problem} shape of the reference {ref.path}") from None
            raise
        if not np.allclose(p_aff, r_aff, atol=AFFINE_TOLERANCE_MM):
            diff = float(np.abs(p_aff - r_aff).max())
            raise BratsInputError(pred.path, f"affine differs from the reference {ref.path} by {diff:.4g} mm "
                                             f"(tolerance {AFFINE_TOLERANCE_MM} mm): "
                                             f"{affine_difference(p_aff, r_aff, ('the prediction', 'the reference'))}")
        spacing = nib.affines.voxel_sizes(r_aff)
        metrics = brats_metrics(p, r, spacing, convention=pred.convention, ref_convention=ref.convention,
                                challenge=params)
        rows.extend({"case_id": case_id, "region": k, **v} for k, v in metrics.items())
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and median of each metric per region (lesion counts too: lesions per case)."""
    out = []
    for region in sorted({r["region"] for r in rows}, key=["WT", "TC", "ET"].index):
        sel = [r for r in rows if r["region"] == region]
        for stat, fn in (("mean", statistics.fmean), ("median", statistics.median)):
            out.append({"case_id": stat, "region": region, **{m: fn(r[m] for r in sel) for m in METRICS}})
    return out


def metrics_csv(rows: list[dict]) -> str:
    """CSV text of metric rows."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case_id", "region", *METRICS])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()
