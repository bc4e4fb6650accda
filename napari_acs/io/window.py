"""Display windows (window width / level) of an MRI sequence, from its brain's intensities.

MRI intensities have no fixed scale (unlike CT's Hounsfield units), so radiology viewers
derive their windows from each scan's own histogram. Here every preset is a pair of
percentiles of the brain's voxels (the non-zero ones: BraTS scans are skull-stripped, the
background is 0), chosen per sequence:

- ``"Auto brain"``: 0.5-99.5 percentiles, the whole brain readable (the default on opening);
- ``"Tumour contrast"``: a narrower window where glioma stands out: the upper part for the
  sequences where it is bright (oedema on FLAIR and T2, the enhancing rim on T1ce), the
  middle of the range on native T1, where tumour is dark against white matter;
- ``"Full range"``: the volume's minimum to maximum (background included).

A window is ``(width, level)`` in the volume's own intensity units; the display limits
(napari's ``contrast_limits``) are ``level -/+ width / 2``. No Qt or napari here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUTO_BRAIN = "Auto brain"
TUMOUR_CONTRAST = "Tumour contrast"
FULL_RANGE = "Full range"
PRESET_NAMES = (AUTO_BRAIN, TUMOUR_CONTRAST, FULL_RANGE)

#: Brain percentiles (lower, upper) of the "Auto brain" window, every sequence.
AUTO_PERCENTILES = (0.5, 99.5)
#: Brain percentiles of the "Tumour contrast" window, per sequence (see the module docstring).
TUMOUR_PERCENTILES: dict[str, tuple[float, float]] = {
    "T1": (20.0, 99.0),
    "T1ce": (50.0, 99.9),
    "T2": (40.0, 99.8),
    "FLAIR": (50.0, 99.9),
}
#: Used for a sequence of unknown name: the upper half of the brain's intensities.
DEFAULT_TUMOUR_PERCENTILES = (50.0, 99.9)
#: Sequence names as files and conventions spell them -> the names above.
SEQUENCE_ALIASES = {
    "t1": "T1", "t1n": "T1", "t1ce": "T1ce", "t1c": "T1ce", "t1gd": "T1ce",
    "t2": "T2", "t2w": "T2", "flair": "FLAIR", "t2f": "FLAIR",
}
#: Default subsampling step per axis: every 2nd voxel (1/8 of them) gives percentiles within
#: a fraction of a percent of the exact ones on a brain, in an eighth of the time.
SUBSAMPLE = 2


@dataclass(frozen=True)
class Window:
    """A display window: ``width`` > 0 and ``level`` (its centre), in intensity units."""

    width: float
    level: float

    @classmethod
    def from_limits(cls, lower: float, upper: float) -> Window:
        """The window showing ``lower`` as black and ``upper`` as white."""
        return cls(float(upper) - float(lower), (float(upper) + float(lower)) / 2.0)

    @property
    def limits(self) -> tuple[float, float]:
        """``(lower, upper)``: the intensities shown as black and as white (contrast limits)."""
        return (self.level - self.width / 2.0, self.level + self.width / 2.0)


def sequence_name(name: str | None) -> str | None:
    """``"t1c"``, ``"T1ce"``, ``"t2f"``... -> ``"T1ce"``, ``"FLAIR"``...; ``None`` if unknown."""
    if not name:
        return None
    return SEQUENCE_ALIASES.get(name.strip().lower())


def brain_voxels(volume: np.ndarray, step: int = SUBSAMPLE) -> np.ndarray:
    """The non-zero, finite voxels of ``volume`` (any shape), every ``step``-th along each axis, 1D."""
    sample = np.asarray(volume)[(slice(None, None, step),) * np.ndim(volume)]
    values = sample[sample != 0]
    return values[np.isfinite(values)]


def _widened(lower: float, upper: float) -> tuple[float, float]:
    """Limits with ``upper > lower``: a constant volume gets a window of width 1 around its value."""
    return (lower, upper) if upper > lower else (lower - 0.5, lower + 0.5)


def window_presets(volume: np.ndarray, sequence: str | None = None, *, step: int = SUBSAMPLE) -> dict[str, Window]:
    """The presets of ``volume`` (3D, any order), for ``sequence`` (``"FLAIR"``, ``"t1c"``...).

    Returns ``{"Auto brain": Window, "Tumour contrast": Window, "Full range": Window}``. With no
    brain voxel (an all-zero volume) every preset is the window ``(0, 1)``. ``step`` subsamples
    the voxels for the percentiles (1: exact); the full range always reads every voxel.
    """
    tumour = TUMOUR_PERCENTILES.get(sequence_name(sequence) or "", DEFAULT_TUMOUR_PERCENTILES)
    brain = brain_voxels(volume, step)
    if brain.size == 0:
        empty = Window.from_limits(0.0, 1.0)
        return dict.fromkeys(PRESET_NAMES, empty)
    lo, hi, t_lo, t_hi = (float(v) for v in np.percentile(brain, [*AUTO_PERCENTILES, *tumour]))
    finite = np.asarray(volume)[np.isfinite(volume)]
    return {
        AUTO_BRAIN: Window.from_limits(*_widened(lo, hi)),
        TUMOUR_CONTRAST: Window.from_limits(*_widened(t_lo, t_hi)),
        FULL_RANGE: Window.from_limits(*_widened(float(finite.min()), float(finite.max()))),
    }


def preset_description(name: str, sequence: str | None = None) -> str:
    """What preset ``name`` shows, for a tooltip: ``"brain percentiles 50-99.9 (FLAIR)"``."""
    if name == FULL_RANGE:
        return "the scan's lowest to highest intensity"
    seq = sequence_name(sequence)
    low, high = AUTO_PERCENTILES if name == AUTO_BRAIN else TUMOUR_PERCENTILES.get(seq or "", DEFAULT_TUMOUR_PERCENTILES)
    return f"brain voxels' {low:g}-{high:g} percentiles" + (f" ({seq})" if seq else "")


def dragged(start: Window, dx: float, dy: float, *, reference_width: float, pixels: float = 300.0) -> Window:
    """The window after a mouse drag of ``(dx, dy)`` screen pixels from ``start`` (right, down > 0).

    Horizontal changes the width multiplicatively (right: wider, flatter; left: narrower, more
    contrast; ``pixels`` to the right multiply it by e), vertical the level linearly (down:
    higher level, a darker image; up: brighter), ``reference_width`` (e.g. the "Auto brain"
    width) per ``pixels``. The width never reaches 0.
    """
    width = max(start.width * float(np.exp(dx / pixels)), reference_width * 1e-3)
    return Window(width, start.level + dy / pixels * reference_width)
