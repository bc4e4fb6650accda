"""The manifest's file contributions: the reader, the writer and the sample data.

The reader takes a BraTS case folder or any of its NIfTI files and gives image + labels
layers; the writer puts a Labels layer back on its case's source grid as NIfTI; the
sample data is the synthetic case shipped with the plugin. The backend is imported when
a file is read or written, not when napari loads the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_acs._napari._layers import METADATA_KEY, case_layer_data, from_display
from napari_acs.io.case import find_case_files

LayerData = list[tuple]


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return a reader if ``path`` is (part of) a BraTS case, else ``None`` (never raises)."""
    paths = [path] if isinstance(path, str) else list(path)
    try:
        for p in paths:
            find_case_files(Path(p))
    except Exception:  # not ours: let napari try other readers
        return None
    return read_case


def read_case(path: str | list[str]) -> LayerData:
    """Load one case (folder, file or list of its files) as napari layer data."""
    from napari_acs.io import load_case

    return case_layer_data(load_case(path))


def sample_case() -> LayerData:
    """Layers of the shipped sample case (four modalities and its reference seg)."""
    from napari_acs.io.sample import sample_case_path

    return read_case(str(sample_case_path()))


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a segmentation Labels layer opened from (or predicted on) a BraTS case.

    The layer's metadata must carry its case (the reader and the Segment widget
    put it there); labels are written on the source file's grid and affine, in
    the case's label convention, atomically.
    """
    from napari_acs.io import BratsInputError, save_segmentation

    info = (meta.get("metadata") or {}).get(METADATA_KEY)
    if not info:
        raise BratsInputError(
            f"cannot write {path}: layer {meta.get('name')!r} has no BraTS case geometry "
            "(open the case with napari-acs first, then segment or draw on its layers)"
        )
    labels = from_display(np.asarray(data))
    written = save_segmentation(labels, info["case"], path, overwrite=True)
    return [str(written)]
