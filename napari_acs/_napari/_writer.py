"""napari writer: a Labels layer -> NIfTI on its case's source grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_acs._napari._layers import METADATA_KEY, from_display


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
