"""Brain extraction of a 1 mm head scan (deepbet), and whether a scan is skull-stripped already.

deepbet 1.0.2 (MIT, Fisch et al. 2024, https://github.com/wwu-mmll/deepbet) ships its two
TorchScript networks in its wheel: a coarse one finds the brain's bounding box at
128^3, a fine one segments that box resampled to 256^3; the largest connected component is
kept and its holes filled. It was trained on T1-weighted heads, so the T1-like sequence of
an exam is the one to give it (T1, else T1c, T2, FLAIR).
"""

from __future__ import annotations

import functools

import numpy as np

#: Fewest mL a brain extraction may find in a head scan (a whole adult brain is 1000-1800 mL;
#: an exam covering a slab of it, e.g. 25 slices, still holds several hundred).
MIN_BRAIN_ML = 150.0
#: Least fraction of a brain mask's voxels with signal (above a tenth of the bright end): a
#: brain's tissue is bright, its CSF darker but not as dark as air.
MIN_SIGNAL_FRACTION = 0.5
#: Least correlation of neighbouring voxels inside the mask: anatomy is smooth, noise is not.
MIN_NEIGHBOUR_CORRELATION = 0.3
#: A skull-stripped volume: at least this fraction of its voxels exactly zero...
STRIPPED_ZERO_FRACTION = 0.3
#: ...and at most this many mL non-zero (a head with scalp and skull holds 3-5 L).
STRIPPED_MAX_ML = 2200.0


class BrainNotFound(ValueError):
    """Brain extraction found no brain (or too little of one); ``str()`` says how much."""


def looks_skull_stripped(volume: np.ndarray, voxel_ml: float) -> bool:
    """Whether ``volume`` (X, Y, Z) looks skull-stripped: mostly exact zeros around a non-zero
    part no larger than a brain (:data:`STRIPPED_ZERO_FRACTION`, :data:`STRIPPED_MAX_ML`)."""
    nonzero = int(np.count_nonzero(volume))
    zero_fraction = 1.0 - nonzero / volume.size
    return zero_fraction >= STRIPPED_ZERO_FRACTION and nonzero * voxel_ml <= STRIPPED_MAX_ML


@functools.lru_cache(maxsize=2)
def _extractor(cpu_only: bool):  # noqa: ANN202 (deepbet.BrainExtraction, imported lazily)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        from deepbet import BrainExtraction

        return BrainExtraction(no_gpu=cpu_only)


def extract_brain(volume: np.ndarray, voxel_ml: float, *, device: str = "cpu") -> np.ndarray:
    """Bool brain mask (X, Y, Z) of a head scan ``volume`` (X, Y, Z) on a 1 mm RAS+ grid.

    ``device``: ``"cpu"``, or ``"auto"`` (deepbet's own choice: CUDA or MPS when present).
    Raises :class:`BrainNotFound` when the mask is empty or smaller than :data:`MIN_BRAIN_ML`.
    """
    import torch

    extractor = _extractor(device == "cpu")
    x = np.nan_to_num(np.asarray(volume, dtype=np.float32))
    try:
        with torch.inference_mode():
            probability = extractor.run_model(x.copy())
        mask = extractor.postprocess(probability > 0.5)
    except (AssertionError, ValueError):  # deepbet's "Not enough foreground" / an empty mask
        raise BrainNotFound("found no brain (an empty mask): not a head scan?") from None
    mask = np.asarray(mask, dtype=bool)
    check_brain(x, mask, voxel_ml)
    return mask


def check_brain(volume: np.ndarray, mask: np.ndarray, voxel_ml: float) -> None:
    """Raise :class:`BrainNotFound` unless ``mask`` (X, Y, Z) looks like a brain in ``volume``:
    at least :data:`MIN_BRAIN_ML`, mostly voxels with signal (:data:`MIN_SIGNAL_FRACTION`: a
    small object in air is not a brain, whatever mask a network draws around it), and smooth
    (:data:`MIN_NEIGHBOUR_CORRELATION`: noise is not a brain)."""
    found_ml = float(mask.sum()) * voxel_ml
    if found_ml < MIN_BRAIN_ML:
        raise BrainNotFound(f"found {found_ml:.3g} mL of brain (a head scan holds at least {MIN_BRAIN_ML:g} mL): "
                            "not a head scan?")
    inside = volume[mask]
    bright = float(np.percentile(inside, 99.5))
    signal = float(np.mean(inside > 0.1 * bright)) if bright > 0 else 0.0
    if signal < MIN_SIGNAL_FRACTION:
        raise BrainNotFound(f"only {100 * signal:.0f}% of the {found_ml:.0f} mL found has signal: not a head scan?")
    pairs = mask[1:] & mask[:-1]
    correlation = float(np.corrcoef(volume[1:][pairs], volume[:-1][pairs])[0, 1]) if pairs.sum() > 2 else 0.0
    if not correlation >= MIN_NEIGHBOUR_CORRELATION:  # NaN (a constant brain) fails too
        raise BrainNotFound(f"the {found_ml:.0f} mL found is noise, not anatomy (neighbouring voxels correlate "
                            f"{correlation:.2f}): not a head scan?")
