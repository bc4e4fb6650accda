"""The Segment widget's case report: a file field, a Write report button, its own message line.

The report (:func:`napari_acs.report.case_report.write_report`) is drawn and written in a
worker; the GUI thread only gathers what the report shows (the case, a copy of the
prediction layer's labels with the user's edits, the reference, the model that made the
prediction) and shows the outcome. An existing file is replaced only when the user chose it
with Browse… (whose dialog asks before replacing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from napari_acs._napari._layers import layer_case
from napari_acs._napari._qt import MessageLabel, PathEdit, error_text
from napari_acs._napari._workers import TaskRunner

REPORT_FILTER = "Report (*.pdf *.png)"
DEFAULT_SUFFIX = ".pdf"


@dataclass
class ReportRequest:
    """What one report shows: canonical uint8 ``labels`` (X, Y, Z) of ``case`` (and ``reference``),
    the model that made them (a ``ModelSpec``, or ``None`` if unknown) and the sequence shown."""

    case: Any
    labels: np.ndarray
    reference: np.ndarray | None
    model: Any
    sequence: str
    folder: Path | None = None  # where the report goes by default (None: the case's folder)


def default_report_path(request: ReportRequest) -> Path:
    """``<folder>/<id>_report.pdf``: the request's folder (a prepared exam's own files, not the
    cache the prepared case was read from), else the case's folder."""
    case = request.case
    folder = request.folder or Path(next(iter(case.files.values()))).parent
    return folder / f"{case.case_id}_report{DEFAULT_SUFFIX}"


def shown_sequence(viewer: Any, case: Any) -> str:
    """The sequence the user is looking at: the active layer's if it is a visible image of
    ``case``, else the top-most visible one's, else FLAIR."""
    from napari.layers import Image

    from napari_acs.io.window import sequence_name
    from napari_acs.report.case_report import DEFAULT_SEQUENCE

    for layer in (viewer.layers.selection.active, *reversed(list(viewer.layers))):
        if isinstance(layer, Image) and layer.visible and layer_case(layer) is case:
            modality = str((layer.metadata or {}).get("modality", ""))
            if sequence_name(modality):
                return modality
    return DEFAULT_SEQUENCE


def model_card_of(spec: Any) -> Any:
    """Worker: the ``ModelCard`` of a ``ModelSpec`` (demo model, checkpoint file, or untrained preset)."""
    from napari_acs.models.select import demo_checkpoint_path
    from napari_acs.report.card import ModelCard, model_card_from_checkpoint

    if spec is None:
        return None
    if spec.kind == "preset":
        return ModelCard.untrained(spec.name, spec.conv, spec.task)
    path = demo_checkpoint_path() if spec.kind == "demo" else spec.checkpoint
    return None if path is None else model_card_from_checkpoint(path)


def write_case_report(request: ReportRequest, path: Path, overwrite: bool) -> Path:
    """Worker job: the model card, then the report drawn and written."""
    from napari_acs.report.case_report import write_report

    return write_report(request.case, request.labels, path, reference=request.reference,
                        model_card=model_card_of(request.model), sequence=request.sequence, overwrite=overwrite)


class ReportControls(QWidget):
    """Report file (empty: next to the case) and Write report; ``request()`` says what to report
    (or returns a message why there is nothing to report)."""

    def __init__(self, request: Callable[[], ReportRequest | str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._request = request
        self.path = PathEdit("save", caption="Case report (PDF or PNG)", name_filter=REPORT_FILTER,
                             placeholder="next to the case: <id>_report.pdf (or .png)")
        self._chosen: Path | None = None  # the file Browse… chose (its dialog asked before replacing)
        self.path.button.clicked.disconnect()
        self.path.button.clicked.connect(self.browse)
        self.button = QPushButton("Write report")
        self.button.setToolTip("One page: slices through the tumour with the overlay, volumes, metrics, "
                               "model card. Research use only, not for diagnosis.")
        self.message = MessageLabel()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.path, 1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.message)
        self.runner = TaskRunner(self)
        self.runner.succeeded.connect(self._written)
        self.runner.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
        self.runner.stopped.connect(lambda: self.button.setEnabled(True))
        self.button.clicked.connect(lambda: self.write())

    def browse(self) -> None:
        """Choose the report file in a dialog, which asks before replacing an existing one."""
        request = self._request()
        start = self.path.text or (str(default_report_path(request)) if not isinstance(request, str) else "")
        chosen, _ = QFileDialog.getSaveFileName(self, self.path.caption, start, REPORT_FILTER)
        if chosen:
            self._chosen = Path(chosen)
            self.path.set_text(chosen)

    def write(self, path: str | Path | None = None, *, overwrite: bool | None = None) -> bool:
        """Write the report in a worker (what the button does): to ``path``, else the field's file,
        else next to the case. False (and a message) if it could not start."""
        if self.runner.busy:
            return False
        request = self._request()
        if isinstance(request, str):
            self.message.show_message(request, "warning")
            return False
        target = Path(path) if path is not None else Path(self.path.text) if self.path.text else default_report_path(request)
        if overwrite is None:
            overwrite = self._chosen == target
        if target.exists() and not overwrite:
            self.message.show_message(f"{target} exists and was not replaced: choose another name "
                                      "(Browse… asks before replacing).", "error")
            return False
        self.button.setEnabled(False)
        self.message.show_message(f"Writing the report of {request.case.case_id}…")
        self.runner.start(lambda progress, cancel: write_case_report(request, target, overwrite))
        return True

    def _written(self, path: Path) -> None:
        self._chosen = None  # writing there again replaces a report: Browse… asks again
        self.message.show_message(f"Report written: {path}", "success")

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until the report is written (scripts, tests)."""
        return self.runner.wait(timeout)
