"""The prepared case on disk: a BraTS-named case folder, reused while its inputs are unchanged.

Default place: ``<reference file's folder>/.napari-acs/prepared/<case_id>/`` (hidden, so
cohort discovery skips it). The folder holds ``<id>-t1c.nii.gz`` ... (the prepared
sequences, float32, BraTS 2023 or 2021 names: ``napari-acs segment FOLDER`` reads it when
all four are there), ``<id>-brainmask.nii.gz`` (uint8), ``<id>-<sequence>.tfm`` (each
registered sequence's rigid transform, reference -> sequence, LPS mm, SimpleITK/ITK text)
and ``prepare.json``: the key (each input's resolved path, size and mtime, the reference,
convention, case id and settings), the grid, the steps and the registration figures. The
folder is written atomically (:func:`napari_acs.io.files.atomic_folder`); it is read back
when the key matches, else prepared again and replaced.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from napari_acs.io.case import SEPARATORS, load_case
from napari_acs.io.errors import BratsInputError
from napari_acs.io.files import atomic_folder, writable_folder
from napari_acs.io.volume import load_volume
from napari_acs.progress import CancelSignal, check_cancel

#: Version of the folder's layout; a folder of another version is prepared again.
FORMAT = 1
MANIFEST = "prepare.json"
MASK = "brainmask"


def default_folder(reference_file: Path, case_id: str) -> Path:
    """``<reference_file's folder>/.napari-acs/prepared/<case_id>``."""
    return reference_file.parent / ".napari-acs" / "prepared" / case_id


def _stat(path: Path) -> dict:
    info = path.stat()
    return {"path": str(path.resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def unchanged(path: Path, entry: dict) -> bool:
    """Whether ``path`` still has the size and modification time recorded in ``entry``."""
    info = path.stat()
    return info.st_size == entry["size"] and info.st_mtime_ns == entry["mtime_ns"]


def cache_key(inputs: dict[str, Path], reference: str, convention: str, case_id: str, settings) -> dict:  # noqa: ANN001
    """What a prepared folder must have been made from to be reused (JSON types only)."""
    key = {"format": FORMAT, "inputs": {kind: _stat(path) for kind, path in inputs.items()},
           "reference": reference, "convention": convention, "case_id": case_id, "settings": settings.as_dict()}
    return json.loads(json.dumps(key))


def file_name(case_id: str, convention: str, kind: str, suffix: str = ".nii.gz") -> str:
    """``<id>-t1c.nii.gz`` (BraTS 2023) or ``<id>_t1ce.nii.gz`` (BraTS 2021) and the like."""
    return f"{case_id}{SEPARATORS[convention]}{kind}{suffix}"


def read_manifest(folder: Path) -> dict | None:
    """The folder's ``prepare.json`` of this :data:`FORMAT`, or ``None``."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("key", {}).get("format") == FORMAT else None


def write_prepared(exam, folder: Path, key: dict, *, cancel: CancelSignal = None):  # noqa: ANN001, ANN201
    """Write ``exam`` (a :class:`~napari_acs.prepare.PreparedExam`) to ``folder`` atomically and
    return it with ``folder`` set and its case's ``files`` the written ones. An existing folder
    is replaced only when it is empty or a prepared case (it holds ``prepare.json``)."""
    folder = Path(folder)
    if folder.exists() and not (folder / MANIFEST).is_file() and (not folder.is_dir() or any(folder.iterdir())):
        raise BratsInputError(folder, "exists and is not a prepared case folder: choose a new or empty folder")
    writable_folder(folder.parent)
    case = exam.case
    names = {kind: file_name(case.case_id, case.convention, kind) for kind in exam.inputs}
    tfms = {kind: file_name(case.case_id, case.convention, kind, ".tfm") for kind in exam.transforms}
    mask_name = file_name(case.case_id, case.convention, MASK)
    with atomic_folder(folder, overwrite=True) as tmp:
        for kind, name in names.items():
            check_cancel(cancel, "preparation")
            _save(case.image[case.modalities.index(kind)], case.affine, exam.case.source.header, tmp / name)
        _save(exam.mask.astype(np.uint8), case.affine, case.source.header, tmp / mask_name)
        for kind, name in tfms.items():
            sitk.WriteTransform(exam.transforms[kind], str(tmp / name))
        manifest = {"key": key, "files": names, "mask": mask_name, "transforms": tfms, "steps": exam.steps,
                    "registrations": exam.registrations, "brain_ml": round(exam.brain_ml, 1),
                    "grid": {"shape": list(case.shape), "affine": case.affine.tolist()},
                    "missing": list(case.missing)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        check_cancel(cancel, "preparation")
    written = replace(case, files={kind: folder / name for kind, name in names.items()})
    return replace(exam, case=written, folder=folder)


def _save(data: np.ndarray, affine: np.ndarray, header: nib.Nifti1Header, path: Path) -> None:
    """One NIfTI file (gzip level 1) with the grid's header; float32 or uint8 as given."""
    header = header.copy()
    header.set_data_dtype(data.dtype)
    nib.save(nib.Nifti1Image(np.asarray(data), affine, header=header), path)


def read_prepared(folder: Path, key: dict):  # noqa: ANN201 (PreparedExam | None)
    """The prepared exam in ``folder`` if it was made from ``key``, else ``None`` (also when a
    file of it cannot be read: it is then prepared again)."""
    from napari_acs.prepare.exam import PreparedExam
    from napari_acs.prepare.writeback import file_geometry

    manifest = read_manifest(folder)
    if manifest is None or manifest["key"] != key:
        return None
    try:
        files = {kind: folder / name for kind, name in manifest["files"].items()}
        case = load_case(files=files, convention=key["convention"], case_id=key["case_id"], threads=1)
        mask = load_volume(folder / manifest["mask"]).data > 0.5
        transforms = {kind: sitk.ReadTransform(str(folder / name)).Downcast()
                      for kind, name in manifest["transforms"].items()}
        reference = Path(key["inputs"][key["reference"]]["path"])
        reference_source, _ = file_geometry(reference)
    except (BratsInputError, OSError, RuntimeError, KeyError):
        return None
    return PreparedExam(
        case=case, mask=mask, reference=key["reference"],
        inputs={kind: Path(entry["path"]) for kind, entry in key["inputs"].items()},
        reference_source=reference_source, transforms=transforms, registrations=manifest["registrations"],
        steps=manifest["steps"], folder=Path(folder), reused=True)
