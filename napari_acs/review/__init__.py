"""Reviewing a cohort: cases, predictions, uncertainty, accepted corrections (:class:`ReviewCohort`),
and fine-tuning on the corrections. Names are imported on first use (no torch at import)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_acs import _on_first_use

_EXPORTS = {
    "CaseEntry": "napari_acs.review.cohort",
    "ReviewCohort": "napari_acs.review.cohort",
    "Manifest": "napari_acs.review.manifest",
    "ManifestError": "napari_acs.review.manifest",
    "STATUSES": "napari_acs.review.manifest",
    "finetune_on_corrections": "napari_acs.review.finetune",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from napari_acs.review.cohort import CaseEntry, ReviewCohort
    from napari_acs.review.finetune import finetune_on_corrections
    from napari_acs.review.manifest import STATUSES, Manifest, ManifestError

__getattr__ = _on_first_use(__name__, _EXPORTS)
