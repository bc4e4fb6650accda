"""The manifest's file contributions: the reader, the writer and the sample data.

The reader takes a BraTS case folder or any of its NIfTI files and gives image + labels
layers; any other NIfTI file (``scan.nii.gz``, 3D or 4D) opens as one image layer named
by the file, with the same geometry and radiological display as a case's layers (see
:mod:`napari_acs._napari._layers`). A 4D file (X, Y, Z, T) is one 4D layer, its volumes
along napari's first axis (one more slider), not T layers: a series may hold hundreds
of volumes. What it cannot read (not NIfTI, 2D, 5D, RGB voxels, over 512^3 voxels, a
corrupt header) it declines, from the header alone, so that another reader may try.
The writer puts a Labels layer back on its case's source grid as NIfTI; the sample data
is the synthetic case shipped with the plugin. The backend is imported when a file is
read or written, not when napari loads the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_acs._napari._layers import (
    METADATA_KEY,
    PREPARED_KEY,
    case_layer_data,
    contrast_limits,
    display_scale,
    display_translate,
    from_display,
    save_case_labels,
    to_display,
)
from napari_acs.io.case import find_case_files
from napari_acs.io.sequences import SEQUENCE_LABELS, guess_sequence
from napari_acs.io.volume import check_volume_file

LayerData = list[tuple]


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """A reader for (part of) a BraTS case, else for NIfTI files of any name, else ``None``.

    Decided from names and headers only; never raises. A BraTS-named file whose case is
    incomplete (e.g. the other sequences are missing) opens as a single volume.
    """
    paths = [path] if isinstance(path, str) else list(path)
    try:
        for p in paths:
            find_case_files(Path(p))
        return read_case
    except Exception:  # noqa: BLE001  (not a case: perhaps single volumes)
        pass
    try:
        for p in paths:
            check_volume_file(p)
    except Exception:  # noqa: BLE001  (not ours: let napari try other readers)
        return None
    return read_volumes


#: This plugin's name in napari (the manifest's ``name``).
PLUGIN_NAME = "napari-acs"
#: napari reader preferences (fnmatch patterns of paths) a user may opt into: NIfTI files
#: and folders whose path holds "BraTS" (BraTS downloads: BraTS2021_00000, BraTS-GLI-...).
READER_PATTERNS = ("*.nii", "*.nii.gz", f"*BraTS*{os.sep}", f"*brats*{os.sep}")


def use_napari_acs_by_default(enable: bool = True) -> dict[str, str]:
    """Make napari open NIfTI files and BraTS folders with this plugin without asking (or stop).

    napari asks which reader to use whenever two can read a path, and its builtin reader
    claims every folder and ``*.nii.gz``; no manifest field can rank readers. What napari
    honours is the user's reader preference, ``settings.plugins.extension2reader`` (the
    reader dialog's "Remember this choice", Preferences > Plugins). This sets (``enable``)
    or removes our entries there, for :data:`READER_PATTERNS` only; it is a user-level,
    persistent setting, changed only when the user asks (the Load widget's check box).
    Returns the preferences now in force.
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    preferences = dict(plugins.extension2reader)
    for pattern in READER_PATTERNS:
        if enable:
            preferences[pattern] = PLUGIN_NAME
        elif preferences.get(pattern) == PLUGIN_NAME:
            del preferences[pattern]
    plugins.extension2reader = preferences
    return preferences


def is_default_reader() -> bool:
    """Whether the user's napari preferences send every pattern of :data:`READER_PATTERNS` to us."""
    from napari.settings import get_settings

    preferences = get_settings().plugins.extension2reader
    return all(preferences.get(pattern) == PLUGIN_NAME for pattern in READER_PATTERNS)


def read_case(path: str | list[str]) -> LayerData:
    """Load one case (folder, file or list of its files) as napari layer data."""
    from napari_acs.io import load_case

    return case_layer_data(load_case(path))


def read_volumes(path: str | list[str]) -> LayerData:
    """Load NIfTI files of any name, one image layer each (see :func:`volume_layer_data`)."""
    from napari_acs.io.volume import load_volume

    paths = [path] if isinstance(path, str) else list(path)
    return [layer for p in paths for layer in volume_layer_data(load_volume(p))]


def volume_layer_data(volume: Any) -> LayerData:
    """One image layer of a :class:`~napari_acs.io.volume.NiftiVolume`, named by its file.

    Display order, ``scale`` (mm) and ``translate`` as for a case's layers; a 4D volume
    ``(X, Y, Z, T)`` becomes ``(T, Z, Y', X')`` with a unit step along T. The metadata
    keep the file, its canonical affine and spacing (no case: a single file is not one) and,
    when the file's name says it (:func:`~napari_acs.io.sequences.guess_sequence`), its
    sequence as ``"modality"`` (``"FLAIR"``...), as a case's layers have it.
    """
    data = np.moveaxis(volume.data, 3, 0) if volume.data.ndim == 4 else volume.data
    scale, translate = display_scale(volume.spacing), display_translate(volume.affine, volume.shape)
    if data.ndim == 4:
        scale, translate = (1.0, *scale), (0.0, *translate)
    meta = {"file": str(volume.path), "affine": np.asarray(volume.affine), "spacing": tuple(volume.spacing),
            "volumes": volume.volumes}
    metadata: dict = {METADATA_KEY: meta}
    sequence = guess_sequence(volume.path)
    if sequence is not None:  # the window presets of that sequence (napari_acs.io.window)
        metadata["modality"] = SEQUENCE_LABELS[sequence]
    return [(to_display(data), {"name": volume.name, "scale": scale, "translate": translate,
                                "contrast_limits": contrast_limits(volume.data), "colormap": "gray",
                                "metadata": metadata}, "image")]


def sample_case() -> LayerData:
    """Layers of the shipped sample case (four modalities and its reference seg)."""
    from napari_acs.io.sample import sample_case_path

    return read_case(str(sample_case_path()))


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a segmentation Labels layer opened from (or predicted on) a BraTS case.

    The layer's metadata must carry its case (the reader and the Segment widget
    put it there); labels are written on the source file's grid and affine (a prepared
    case's: its reference file's), in the case's label convention, atomically.
    """
    from napari_acs.io import BratsInputError

    info = (meta.get("metadata") or {}).get(METADATA_KEY)
    if not info or info.get("case") is None:
        raise BratsInputError(
            f"cannot write {path}: layer {meta.get('name')!r} has no BraTS case geometry "
            "(open the case with napari-acs first, then segment or draw on its layers)"
        )
    labels = from_display(np.asarray(data))
    written = save_case_labels(labels, info["case"], path, prepared=info.get(PREPARED_KEY), overwrite=True)
    return [str(written)]
