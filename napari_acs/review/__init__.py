"""Reviewing a cohort: cases, predictions, uncertainty, accepted corrections (:class:`ReviewCohort`),
and fine-tuning on the corrections. Names are imported on first use (no torch at import)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'napari_acs.review' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
