"""Figures and reports drawn with matplotlib (``Figure`` + the Agg canvas, never ``pyplot``).

- :mod:`napari_acs.report.figures`: an Agg figure and its atomic save as PNG or PDF (used by
  the training curves too);
- :mod:`napari_acs.report.card`: a checkpoint's model card as the report shows it;
- :mod:`napari_acs.report.case_report`: the one-page case report (:func:`write_report`);
- :mod:`napari_acs.report.cli`: ``napari-acs report``.

No Qt or napari here. Importing this package imports neither matplotlib nor torch: the names
below are loaded on first use.
"""

from __future__ import annotations

from napari_acs import _on_first_use

_NAMES = {
    "ModelCard": "napari_acs.report.card",
    "model_card_from_checkpoint": "napari_acs.report.card",
    "build_report": "napari_acs.report.case_report",
    "write_report": "napari_acs.report.case_report",
    "ReportError": "napari_acs.report.figures",
}

__all__ = sorted(_NAMES)

__getattr__ = _on_first_use(__name__, _NAMES)
