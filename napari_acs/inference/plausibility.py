"""Warnings a reader must see: a poorly scored model, an implausible segmentation.

One place decides them for the Segment widget and ``napari-acs segment``:

- :func:`model_concerns` reads a checkpoint's metadata (``meta`` of
  :func:`napari_acs.models.checkpoint.load_checkpoint`, ``model.checkpoint_meta``): the Dice
  recorded on held-out cases (``heldout_dice``, the demo model's card) or at the training run's
  validation (``metrics["val_dice_*"]``, written by fine-tuning), or a classifier's AUC;
- :func:`sequence_concerns` says which sequences a case lacks (zero-filled channels);
- :func:`volume_concerns` checks the volumes (mL) of a result: a whole tumour above
  :data:`MAX_WHOLE_TUMOUR_ML` or filling more than :data:`MAX_BRAIN_FRACTION` of the brain
  (a model that paints the brain, not a tumour).

Numbers only (no torch, Qt or napari): the caller shows the texts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from napari_acs.io.normalize import brain_mask
from napari_acs.io.sequences import missing_warning, sentence

Level = Literal["warning", "error"]

#: Mean recorded Dice (WT, TC, ET) below which a segmentation model is called poor (warning).
POOR_DICE = 0.5
#: Mean recorded Dice below which the model has not learnt to segment (error).
FAILED_DICE = 0.2
#: Validation AUC below which an MGMT classifier is no better than chance (warning).
POOR_AUC = 0.6
#: Whole-tumour volume (mL) above which a result is implausible: the largest gliomas of the
#: BraTS cohorts are about 300-400 mL of whole tumour; an adult brain is 1100-1500 mL.
MAX_WHOLE_TUMOUR_ML = 500.0
#: Fraction of the brain (voxels non-zero in any sequence) above which "tumour" is implausible.
MAX_BRAIN_FRACTION = 0.5
REGIONS = ("WT", "TC", "ET")


@dataclass(frozen=True)
class Concern:
    """One thing the reader must know: ``level`` ("warning" orange, "error" red) and a sentence."""

    level: Level
    text: str


def worst_level(concerns: Sequence[Concern]) -> Level | None:
    """``"error"`` if any concern is an error, else ``"warning"``, ``None`` without concerns."""
    if not concerns:
        return None
    return "error" if any(c.level == "error" for c in concerns) else "warning"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def recorded_dice(meta: Mapping[str, Any] | None) -> tuple[float, str] | None:
    """The model's recorded mean Dice and where it comes from, or ``None`` if none is recorded.

    Held-out Dice (``meta["heldout_dice"]``, per region) wins over the training run's
    validation Dice (``meta["metrics"]["val_dice_mean"]``, else the mean of ``val_dice_WT/TC/ET``).
    """
    meta = meta or {}
    heldout = meta.get("heldout_dice")
    if isinstance(heldout, Mapping):
        values = [v for r in REGIONS if (v := _number(heldout.get(r))) is not None]
        if values:
            return float(np.mean(values)), "held-out"
    metrics = meta.get("metrics")
    if isinstance(metrics, Mapping):
        mean = _number(metrics.get("val_dice_mean"))
        if mean is None:
            values = [v for r in REGIONS if (v := _number(metrics.get(f"val_dice_{r}"))) is not None]
            mean = float(np.mean(values)) if values else None
        if mean is not None:
            return mean, "validation"
    return None


def model_concerns(meta: Mapping[str, Any] | None, task: str = "segmentation") -> list[Concern]:
    """What a checkpoint's recorded scores say about it (``meta``: the checkpoint's ``meta``).

    Segmentation: mean Dice below :data:`FAILED_DICE` is an error, below :data:`POOR_DICE` a
    warning, none recorded a warning (quality unknown). Classification: validation AUC below
    :data:`POOR_AUC` a warning. ``meta=None`` (an untrained preset, warned about elsewhere): none.
    """
    if meta is None:
        return []
    if task == "classification":
        auc = _number((meta.get("metrics") or {}).get("val_auc")) if isinstance(meta.get("metrics"), Mapping) else None
        if auc is not None and auc < POOR_AUC:
            return [Concern("warning", f"Poor model: its recorded validation AUC is {auc:.3f} "
                                       f"(below {POOR_AUC:g}; 0.5 is chance): do not trust its probabilities.")]
        return []
    recorded = recorded_dice(meta)
    if recorded is None:
        return [Concern("warning", "No validation Dice is recorded for this model: its quality is unknown; "
                                   "check its results against a reference before trusting them.")]
    dice, source = recorded
    if dice < FAILED_DICE:
        return [Concern("error", f"Poor model: its recorded {source} Dice is {dice:.3f} (mean of WT, TC, ET; "
                                 f"below {FAILED_DICE:g}): it has not learnt to segment, its labels are not tumour.")]
    if dice < POOR_DICE:
        return [Concern("warning", f"Weak model: its recorded {source} Dice is {dice:.3f} (mean of WT, TC, ET; "
                                   f"below {POOR_DICE:g}): check every result against the images.")]
    return []


def brain_volume_ml(image: np.ndarray, spacing: Sequence[float]) -> float:
    """Brain volume (mL): voxels of ``image`` (C, X, Y, Z) non-zero in any channel, ``spacing`` mm."""
    return float(brain_mask(image).sum()) * float(np.prod(spacing)) / 1000.0


def sequence_concerns(missing: Sequence[str]) -> list[Concern]:
    """A warning naming the sequences a case lacks (``case.missing``), none when it has all four."""
    if not missing:
        return []
    return [Concern("warning", sentence(missing_warning(missing)))]


def volume_concerns(volumes_ml: Mapping[str, float], brain_ml: float | None = None) -> list[Concern]:
    """Whether a result's volumes (mL per region, ``"WT"`` used) are plausible for a glioma.

    A whole tumour above :data:`MAX_WHOLE_TUMOUR_ML`, or above :data:`MAX_BRAIN_FRACTION` of
    ``brain_ml`` (when given), is an error: the model painted the brain, not a tumour.
    """
    wt = _number(volumes_ml.get("WT"))
    if wt is None:
        return []
    concerns = []
    fraction = wt / brain_ml if brain_ml and brain_ml > 0 else None
    if fraction is not None and fraction > MAX_BRAIN_FRACTION:
        concerns.append(Concern("error", f"Implausible result: the whole tumour ({wt:.0f} mL) fills {fraction:.0%} "
                                         f"of the brain ({brain_ml:.0f} mL); this is not a tumour segmentation."))
    elif wt > MAX_WHOLE_TUMOUR_ML:
        concerns.append(Concern("error", f"Implausible result: a whole tumour of {wt:.0f} mL (gliomas are rarely "
                                         f"above {MAX_WHOLE_TUMOUR_ML:.0f} mL); check the model and the images."))
    return concerns
