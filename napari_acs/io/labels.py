"""BraTS label conventions, tumour regions and display colours: the one place for them.

Two conventions exist on disk:

* ``"brats2021"``: NCR = 1, ED = 2, ET = 4 (files ``<id>_{t1,t1ce,t2,flair,seg}``).
* ``"brats2023"``: NCR = 1, ED = 2, ET = 3 (files ``<id>-{t1n,t1c,t2w,t2f,seg}``).

Internally the product uses *regions*, evaluated as BraTS does:
WT (whole tumour) = NCR + ED + ET, TC (tumour core) = NCR + ET, ET = enhancing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Convention = Literal["brats2021", "brats2023"]
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
SUB_REGIONS: tuple[str, ...] = ("NCR", "ED", "ET")

#: Display name of each tumour sub-region, used by every widget, legend and file.
SUB_REGION_NAMES: dict[str, str] = {
    "NCR": "necrotic core (NCR)",
    "ED": "peritumoral oedema (ED)",
    "ET": "enhancing tumour (ET)",
}
#: RGBA colours of the sub-regions, everywhere in the product (napari, screenshots, docs).
SUB_REGION_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "NCR": (1.0, 0.15, 0.15, 1.0),  # red
    "ED": (0.2, 0.85, 0.2, 1.0),  # green
    "ET": (1.0, 0.85, 0.0, 1.0),  # yellow
}


@dataclass(frozen=True)
class LabelConvention:
    """Integer values of the sub-regions in one on-disk convention."""

    name: str
    ncr: int
    ed: int
    et: int

    @property
    def values(self) -> dict[str, int]:
        """Sub-region name -> label value."""
        return {"NCR": self.ncr, "ED": self.ed, "ET": self.et}

    @property
    def allowed(self) -> frozenset[int]:
        """All label values legal in a segmentation file of this convention (0 included)."""
        return frozenset({0, self.ncr, self.ed, self.et})


CONVENTIONS: dict[str, LabelConvention] = {
    "brats2021": LabelConvention("brats2021", ncr=1, ed=2, et=4),
    "brats2023": LabelConvention("brats2023", ncr=1, ed=2, et=3),
}


def get_convention(convention: str | LabelConvention) -> LabelConvention:
    """Look up a convention by name (``"brats2021"`` or ``"brats2023"``)."""
    if isinstance(convention, LabelConvention):
        return convention
    try:
        return CONVENTIONS[convention]
    except KeyError:
        raise ValueError(
            f"unknown label convention {convention!r}; expected one of {sorted(CONVENTIONS)}"
        ) from None


def colormap(convention: str | LabelConvention) -> dict[int | None, tuple[float, float, float, float]]:
    """napari ``DirectLabelColormap``-style mapping: label value -> RGBA (0 transparent)."""
    conv = get_convention(convention)
    cmap: dict[int | None, tuple[float, float, float, float]] = {
        None: (0.0, 0.0, 0.0, 0.0),
        0: (0.0, 0.0, 0.0, 0.0),
    }
    for sub, value in conv.values.items():
        cmap[value] = SUB_REGION_COLOURS[sub]
    return cmap


def labels_to_regions(labels: np.ndarray, convention: str | LabelConvention) -> np.ndarray:
    """Label map ``(X, Y, Z)`` -> boolean region masks ``(3, X, Y, Z)`` in order WT, TC, ET."""
    conv = get_convention(convention)
    ncr = labels == conv.ncr
    ed = labels == conv.ed
    et = labels == conv.et
    return np.stack([ncr | ed | et, ncr | et, et])


def regions_to_labels(regions: np.ndarray, convention: str | LabelConvention) -> np.ndarray:
    """Region masks ``(3, X, Y, Z)`` (WT, TC, ET; bool or probabilities >= 0.5) -> uint8 labels.

    Regions are made consistent first (ET inside TC inside WT): a voxel is ET if
    it is ET, otherwise NCR if TC, otherwise ED if WT.
    """
    conv = get_convention(convention)
    masks = regions if regions.dtype == bool else regions >= 0.5
    wt, tc, et = masks[0], masks[1], masks[2]
    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = conv.ed
    out[tc | et] = conv.ncr
    out[et] = conv.et
    return out


def convert_labels(
    labels: np.ndarray, source: str | LabelConvention, target: str | LabelConvention
) -> np.ndarray:
    """Re-encode a label map from one convention to another (uint8)."""
    src, dst = get_convention(source), get_convention(target)
    out = np.zeros(labels.shape, dtype=np.uint8)
    for sub in SUB_REGIONS:
        out[labels == src.values[sub]] = dst.values[sub]
    return out


def unknown_label_values(labels: np.ndarray, convention: str | LabelConvention) -> list[float]:
    """Sorted distinct values of ``labels`` that are not legal in ``convention`` (empty if all are)."""
    known = np.zeros_like(labels, dtype=bool)  # same memory layout as labels: no strided passes
    for value in get_convention(convention).allowed:  # 4 comparisons: faster than np.isin here
        known |= labels == value
    return [] if known.all() else np.unique(labels[~known]).tolist()
