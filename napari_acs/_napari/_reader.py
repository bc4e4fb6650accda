"""napari reader: a BraTS case folder or any of its NIfTI files -> image + labels layers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
    from napari_acs._napari._layers import case_layer_data
    from napari_acs.io import load_case

    return case_layer_data(load_case(path))
