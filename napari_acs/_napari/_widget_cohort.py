"""Cohort browser: a folder of cases to review, least certain first; segment all, correct, accept, fine-tune.

A thin front end over :class:`napari_acs.review.ReviewCohort` (the state lives in
``<cohort>/.napari-acs/``, so closing napari and opening the folder again resumes where the
reader stopped). Opening a cohort reads file names only (no volume); a case's volumes are
read in a worker when it is shown, and its layers replace the previous case's. Per case:
the images (as Load BraTS case shows them), the prediction (or the accepted correction) as
an editable Labels layer, the voxel uncertainty as an additive ``inferno`` image in [0, 1],
and the case's reference segmentation, if any, as contours (so the two never blend).
"Segment all" and "Fine-tune on corrections" run in workers with progress and Cancel /
Stop; the fine-tuning curves are the Fine-tune widget's :class:`TrainingMonitor`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_acs._napari._layers import (
    add_layer_in_steps,
    canonical_labels,
    case_layer_data,
    case_metadata,
    labels_layer_kwargs,
    prediction_name,
    to_display,
)
from napari_acs._napari._model_choice import EngineCache, ModelChoice, ModelSpec
from napari_acs._napari._qt import MessageLabel, PathEdit, error_text, group_box, scrolling_layout
from napari_acs._napari._run_panel import RunPanel
from napari_acs._napari._widget_finetune import TrainingMonitor
from napari_acs._napari._widget_load import case_summary
from napari_acs._napari._workers import StopsJobsWhenClosed, TaskRunner

if TYPE_CHECKING:
    import napari

    from napari_acs.review import CaseEntry, ReviewCohort

REGIONS = ("WT", "TC", "ET")
#: Table columns: (header, tooltip).
COLUMNS = (
    ("Case", "case id"),
    ("Status", "new: not segmented · segmented: predicted, not reviewed · reviewed: accepted unchanged · "
               "corrected: accepted with edits"),
    *((f"{r}\nmL", f"{r} volume of the prediction (mL)") for r in REGIONS),
    ("Uncer-\ntainty", "review priority in [0, 1]: how unsure the model was (higher: look first)"),
    *((f"Dice\n{r}", f"{r} Dice of the prediction against the case's own reference") for r in REGIONS),
)
CASE, STATUS, SCORE = 0, 1, 5
STATUS_ORDER = {"new": 0, "segmented": 1, "reviewed": 2, "corrected": 3}
#: Status text colours, readable on napari's dark and light themes (Okabe-Ito).
STATUS_COLOURS = {"new": "#999999", "segmented": "#56b4e9", "reviewed": "#009e73", "corrected": "#e69f00"}
NEXT_KEY, PREVIOUS_KEY = "PageDown", "PageUp"
REFERENCE_CONTOUR = 1  # the reference drawn as outlines (px) under the filled prediction
PREDICTION_OPACITY = 0.6
#: Added over the images: low enough that the anatomy under a broadly unsure map stays readable.
UNCERTAINTY_OPACITY = 0.5
UNCERTAINTY_COLORMAP = "inferno"
NO_CHECKPOINT = ("Fine-tuning on corrections starts from a trained model: choose the demo model or a "
                 "checkpoint file (not an untrained preset).")


@dataclass
class ShownCase:
    """What the browser shows of one case (read and built in a worker)."""

    entry: CaseEntry
    case: Any
    labels: np.ndarray | None  # canonical (X, Y, Z): the accepted correction, else the prediction
    layers: list[Any]  # napari layers: images, uncertainty, reference, prediction (bottom to top)


def read_case(review: ReviewCohort, case_id: str, show_uncertainty: bool, progress: Any, cancel: Any) -> ShownCase:
    """Worker job: read the case and what the review saved for it; build its layers."""
    from napari.layers import Image, Labels, Layer

    progress(0.0, f"reading {case_id}")
    case = review.load(case_id)
    entry = review.entry(case_id)
    labels = review.accepted(case_id, case)
    if labels is None:
        labels = review.prediction(case_id, case)
    layers = []
    for data, kwargs, kind in case_layer_data(case):
        layer = Layer.create(data, kwargs, kind)
        if kind == "labels":  # the case's own reference: outlines, so that it never blends with the prediction
            layer.contour, layer.opacity = REFERENCE_CONTOUR, 1.0
        layers.append(layer)
    uncertainty = review.uncertainty(case_id, case)
    if uncertainty is not None:
        layers.insert(-1 if case.label is not None else len(layers), Image(
            to_display(uncertainty), name=f"{case_id} uncertainty", colormap=UNCERTAINTY_COLORMAP,
            blending="additive", contrast_limits=(0.0, 1.0), opacity=UNCERTAINTY_OPACITY, visible=show_uncertainty,
            metadata=case_metadata(case), scale=layers[0].scale, translate=layers[0].translate))
    if labels is not None:
        layers.append(Labels(to_display(labels.copy()), **{**labels_layer_kwargs(case, prediction_name(case)),
                                                             "opacity": PREDICTION_OPACITY}))
    return ShownCase(entry, case, labels, layers)


def segment_cohort(review: ReviewCohort, spec: ModelSpec, *, device: str, tta: bool, redo: bool,
                   engines: EngineCache, post: Any, progress: Any, cancel: Any) -> list[CaseEntry]:
    """Worker job: build (or reuse) the browser's engine and segment the cohort, posting each case's row."""
    from napari_acs.inference import Segmenter

    def build() -> tuple[Any, Any]:
        progress(0.0, "building the model")
        selected = spec.select()
        return selected, Segmenter(selected.model, device=device, tta=tta)

    selected, engine = engines.get((spec.cache_key(), device, tta), build)
    name = str(spec.checkpoint) if spec.kind == "checkpoint" else selected.description
    return review.segment_all(engine, model=name, progress=progress, cancel=cancel, redo=redo, on_case=post)


class SortItem(QTableWidgetItem):
    """A cell that sorts by its ``UserRole`` key (numbers as numbers; empty cells below the rest)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:  # noqa: D105
        return self.data(Qt.ItemDataRole.UserRole) < other.data(Qt.ItemDataRole.UserRole)


def _cell(text: str, key: float, tip: str = "") -> SortItem:
    item = SortItem(text)
    item.setData(Qt.ItemDataRole.UserRole, key)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tip:
        item.setToolTip(tip)
    return item


def _number(value: float | None, digits: int, index: int) -> SortItem:
    """A number cell; ties (and empty cells, below every number) keep the folder order when sorted
    from the highest value down (the review-first order)."""
    if value is None:
        return _cell("–", (-1.0, -index))
    return _cell(f"{value:.{digits}f}", (float(value), -index))


class CaseTable(QTableWidget):
    """One row per case: id, status, WT/TC/ET mL, uncertainty score, WT/TC/ET Dice; sortable by
    clicking a header; "review first" (uncertainty, highest first; not segmented last) by default."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels([header for header, _ in COLUMNS])
        for column, (_, tip) in enumerate(COLUMNS):
            self.horizontalHeaderItem(column).setToolTip(tip)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(22)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.setStyleSheet("QTableView::item { padding: 0px 3px; }")  # nine columns in a dock
        self.setMinimumHeight(220)

    def set_entries(self, entries: list[CaseEntry]) -> None:
        """All rows, then the review-first order."""
        self.setSortingEnabled(False)
        self.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            self._fill(row, entry, row)
        self.setSortingEnabled(True)
        self.sort_review_first()

    def sort_review_first(self) -> None:
        self.sortItems(SCORE, Qt.SortOrder.DescendingOrder)

    def update_entry(self, entry: CaseEntry) -> None:
        """Refresh one case's row (the table keeps its sort order)."""
        row = self.row_of(entry.case_id)
        if row is None:
            return
        sorting = self.isSortingEnabled()
        self.setSortingEnabled(False)
        self._fill(row, entry, self.item(row, CASE).data(Qt.ItemDataRole.UserRole + 1))
        self.setSortingEnabled(sorting)  # re-sorts by the header's current column

    def row_of(self, case_id: str) -> int | None:
        for row in range(self.rowCount()):
            item = self.item(row, CASE)
            if item is not None and item.text() == case_id:
                return row
        return None

    def case_ids(self) -> list[str]:
        """Case ids in the order shown."""
        return [self.item(row, CASE).text() for row in range(self.rowCount())]

    def status(self, case_id: str) -> str | None:
        row = self.row_of(case_id)
        return None if row is None else self.item(row, STATUS).text()

    def _fill(self, row: int, entry: CaseEntry, index: int) -> None:
        """Row ``row`` shows ``entry``, the ``index``-th case of the folder."""
        case = SortItem(entry.case_id)
        case.setData(Qt.ItemDataRole.UserRole, entry.case_id)
        case.setData(Qt.ItemDataRole.UserRole + 1, index)
        case.setToolTip(f"{entry.folder}" + ("" if entry.has_reference else " (no reference segmentation)"))
        self.setItem(row, CASE, case)
        status = _cell(entry.status, (STATUS_ORDER.get(entry.status, 0), -index), entry.record.get("model", ""))
        status.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        status.setForeground(QColor(STATUS_COLOURS.get(entry.status, "#999999")))
        self.setItem(row, STATUS, status)
        for offset, region in enumerate(REGIONS):
            self.setItem(row, 2 + offset, _number(entry.volumes_ml.get(region), 1, index))
            dice = (entry.dice or {}).get(region) if entry.has_reference else None
            self.setItem(row, 6 + offset, _number(dice, 2, index))
        self.setItem(row, SCORE, _number(entry.score, 3, index))


class CohortBrowserWidget(StopsJobsWhenClosed, QWidget):
    """Dock widget: review a cohort folder case by case, least certain first."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.review: ReviewCohort | None = None
        self.shown: ShownCase | None = None
        self._layer_ids: set[int] = set()  # the layers this browser added (removed when moving on)
        self._baseline: np.ndarray | None = None  # the labels as shown, to tell edits
        self._wanted: str | None = None  # the case being read
        self._warned_edits: str | None = None  # a case whose unaccepted edits were pointed out once
        self._engines = EngineCache()

        self.folder = PathEdit("folder", caption="Cohort folder (one folder per case)",
                               placeholder="folder of BraTS case folders (nested folders too)")
        self.folder.changed.connect(lambda text: text and self.open_cohort())
        self.summary = QLabel("Open a cohort folder: its cases are listed, least certain first.")
        self.summary.setWordWrap(True)
        self.table = CaseTable()
        self.table.cellActivated.connect(lambda row, column: self.show_case(self.table.item(row, CASE).text()))
        self.table.cellDoubleClicked.connect(lambda row, column: self.show_case(self.table.item(row, CASE).text()))
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.setToolTip(f"Show the case above in the table ({PREVIOUS_KEY} in the viewer)")
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip(f"Show the case below in the table ({NEXT_KEY} in the viewer)")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Store the prediction layer, with your edits, as this case's training label "
                                      "(the case's own reference is never changed)")
        self.show_uncertainty = QCheckBox("Uncertainty map")
        self.show_uncertainty.setToolTip("Show each case's voxel uncertainty (inferno, 0-1, added over the images)")
        self.show_uncertainty.setChecked(True)
        self.message = MessageLabel()
        self.loader = TaskRunner(self)
        self.saver = TaskRunner(self)

        # segment all: the model choice and run panel of the Segment widget
        self.choice = ModelChoice("segmentation")
        self.panel = RunPanel("Segment all", "Cancelled: the cases done so far are kept.")
        self.device = self.panel.device
        self.tta = QCheckBox("TTA (8 flips, better uncertainty, 8× slower)")
        self.redo = QCheckBox("Redo the cases already segmented")
        self.redo.setToolTip("Segment every case again (after fine-tuning: re-rank the cohort with the new model); "
                             "accepted corrections are kept")
        self.panel.add_option(self.tta)
        self.panel.add_option(self.redo)
        self.segment_button = self.panel.run_button
        self.segment_button.setEnabled(False)

        # fine-tune on corrections: the Fine-tune widget's curves and log
        self.include_references = QCheckBox("Also cases with a reference")
        self.include_references.setToolTip("Besides the accepted cases, train on the cases that came with a "
                                           "reference segmentation")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(1)
        self.steps = QSpinBox()
        self.steps.setRange(1, 100000)
        self.steps.setValue(20)
        self.patch = QSpinBox()
        self.patch.setRange(0, 512)
        self.patch.setSingleStep(32)
        self.patch.setSpecialValueText("the model's")
        self.patch.setSuffix(" voxels (cube)")
        self.train_panel = RunPanel("Fine-tune on corrections", None, cancel_text="Stop",
                                    cancelling_text="Stopping after the current step…")
        self.train_panel.options.setRowVisible(self.train_panel.device, False)  # Segment all's device
        self.train_button = self.train_panel.run_button
        self.train_button.setToolTip("Fine-tune the model in use on the accepted cases; its checkpoint then "
                                     "becomes the browser's model")
        self.train_button.setEnabled(False)
        self.train_panel.cancel_button.setToolTip("Stops after the current step and saves the model")
        self.monitor = TrainingMonitor(self.viewer, self.train_panel.message)
        self.monitor.val_plot.hide()  # every accepted case is trained on: no validation split
        for label, field in (("Train on", self.include_references), ("Epochs", self.epochs),
                             ("Steps per epoch", self.steps), ("Patch size", self.patch)):
            self.train_panel.add_option(label, field)

        self._lay_out()
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.accept_button.clicked.connect(lambda: self.accept())
        self.show_uncertainty.toggled.connect(self._toggle_uncertainty)
        self.loader.succeeded.connect(self._show)
        self.loader.failed.connect(self._read_failed)
        self.loader.stopped.connect(self._next_pending)
        self.saver.succeeded.connect(self._accepted)
        self.saver.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
        self.saver.stopped.connect(self._update_buttons)
        self.segment_button.clicked.connect(lambda: self.segment_all())
        self.panel.runner.posted.connect(self._case_segmented)
        self.panel.runner.stopped.connect(self._segment_all_stopped)
        self.panel.runner.succeeded.connect(lambda done: self.panel.message.show_message(
            f"{len(done)} case(s) segmented; the table is in review-first order (most uncertain on top).",
            "success"))
        self.train_button.clicked.connect(lambda: self.finetune())
        self.train_panel.runner.posted.connect(self.monitor.on_event)
        self.train_panel.runner.cancelled.connect(self.monitor.cancelled)
        self.train_panel.runner.stopped.connect(self._update_buttons)
        self.monitor.checkpoint_ready.connect(self._new_model)
        self.choice.backend.succeeded.connect(lambda info: (self.panel.set_cuda_available(info.cuda),
                                                            self._update_buttons()))
        self._bind_keys()
        self._update_buttons()

    def _lay_out(self) -> None:
        steps = QHBoxLayout()
        for button in (self.previous_button, self.next_button, self.accept_button):
            steps.addWidget(button)
        steps.addWidget(self.show_uncertainty)
        segment_tab = QWidget()
        segment_layout = QVBoxLayout(segment_tab)
        segment_layout.addWidget(self.choice)
        segment_layout.addWidget(self.panel)
        segment_layout.addStretch(1)
        train_tab = QWidget()
        train_layout = QVBoxLayout(train_tab)
        train_layout.addWidget(self.train_panel)
        train_layout.addWidget(self.monitor, 1)
        self.tabs = QTabWidget()
        self.tabs.addTab(segment_tab, "Model · Segment all")
        self.tabs.addTab(train_tab, "Fine-tune on corrections")
        cohort = QFormLayout()
        cohort.addRow("Cohort", self.folder)
        layout = scrolling_layout(self, min_width=400)  # as wide as the tool docks: the table scrolls sideways itself
        layout.addLayout(cohort)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 3)
        layout.addLayout(steps)
        layout.addWidget(self.message)
        layout.addWidget(group_box("Model and training", self.tabs), 2)

    def _bind_keys(self) -> None:
        """Next / Previous from the viewer's keyboard (napari's public ``bind_key``; unused keys)."""
        me = weakref.ref(self)

        def step(direction: int) -> Any:
            def action(viewer: Any = None) -> None:
                widget = me()
                if widget is not None:
                    widget.step(direction)
            return action

        self.viewer.bind_key(NEXT_KEY, step(1), overwrite=True)
        self.viewer.bind_key(PREVIOUS_KEY, step(-1), overwrite=True)

    # ------------------------------------------------------------------ cohort
    def open_cohort(self, folder: str | Path | None = None) -> bool:
        """List the cases of ``folder`` (default: the path field); no volume is read."""
        from napari_acs.review import ReviewCohort

        if folder is not None:
            self.folder.edit.setText(str(folder))
        paths = self.folder.paths()
        if not paths:
            self.message.show_message("Choose a cohort folder first.", "warning")
            return False
        try:
            review = ReviewCohort(paths[0])
            entries = review.entries()
        except (OSError, ValueError) as exc:  # no case there, an unreadable manifest
            self.message.show_message(error_text(exc), "error")
            return False
        self._remove_shown()
        self.review, self.shown, self._baseline = review, None, None
        self.table.set_entries(entries)
        self._summarise(entries)
        self.message.show_message(f"{len(entries)} cases. Press Next ({NEXT_KEY}) or double-click a row to show "
                                  "one; Segment all predicts them in the background.")
        self._update_buttons()
        return True

    def _summarise(self, entries: list[CaseEntry] | None = None) -> None:
        if self.review is None:
            return
        entries = entries if entries is not None else self.review.entries()
        counts = {status: sum(e.status == status for e in entries) for status in STATUS_ORDER}
        references = sum(e.has_reference for e in entries)
        self.summary.setText(f"<b>{self.review.folder.name}</b>: {len(entries)} cases · "
                             + " · ".join(f"{n} {status}" for status, n in counts.items())
                             + f" · {references} with a reference")

    def _update_buttons(self, *_: Any) -> None:
        opened = self.review is not None
        working = self.panel.busy or self.train_panel.busy
        self.previous_button.setEnabled(opened)
        self.next_button.setEnabled(opened)
        self.accept_button.setEnabled(self.prediction_layer() is not None and not self.saver.busy)
        self.segment_button.setEnabled(opened and self.choice.ready() and not working)
        self.train_button.setEnabled(opened and self.choice.ready() and not working)

    # ------------------------------------------------------------------ moving through the cases
    @property
    def current_id(self) -> str | None:
        return self.shown.entry.case_id if self.shown is not None else None

    def step(self, direction: int) -> None:
        """Show the next (``1``) or previous (``-1``) case in the table's order."""
        if self.review is None:
            return
        ids = self.table.case_ids()
        here = self._wanted or self.current_id
        if here in ids:
            index = ids.index(here) + direction
        else:
            index = 0 if direction > 0 else len(ids) - 1
        if not 0 <= index < len(ids):
            self.message.show_message("That was the " + ("last" if direction > 0 else "first") + " case.", "info")
            return
        self.show_case(ids[index])

    def show_case(self, case_id: str) -> None:
        """Read ``case_id`` in a worker; its layers then replace the shown case's. Edits that were not
        accepted are pointed out once (moving on again discards them)."""
        if self.review is None or case_id == self.current_id and self._wanted is None:
            return
        if self.has_unaccepted_edits() and self._warned_edits != self.current_id:
            self._warned_edits = self.current_id
            self.message.show_message(f"{self.current_id} has edits that are not accepted: Accept them, or move on "
                                      "again to discard them.", "warning")
            return
        self._wanted = case_id
        self.table.selectRow(self.table.row_of(case_id))
        if self.loader.busy:
            self.loader.cancel("another case was chosen")  # _next_pending reads the wanted one
            return
        self._read(case_id)

    def _read(self, case_id: str) -> None:
        review, uncertainty = self.review, self.show_uncertainty.isChecked()
        self.message.show_message(f"Reading {case_id}…")
        self.loader.start(lambda progress, cancel: read_case(review, case_id, uncertainty, progress, cancel))

    def _read_failed(self, exc: BaseException) -> None:
        self._wanted = None  # not read again by itself
        self.message.show_message(error_text(exc), "error")

    def _next_pending(self) -> None:
        if self._wanted is not None and (self.shown is None or self._wanted != self.current_id):
            self._read(self._wanted)

    def _show(self, shown: ShownCase) -> None:
        if shown.entry.case_id != self._wanted:
            return  # another case was chosen meanwhile: _next_pending reads it
        self._wanted = None
        self._remove_shown()
        for layer in shown.layers:
            add_layer_in_steps(self.viewer, layer, paint_tools=layer.name == prediction_name(shown.case))
            self._layer_ids.add(id(layer))
        self.shown, self._warned_edits = shown, None
        self._baseline = None if shown.labels is None else shown.labels.copy()
        self.viewer.reset_view()
        tumour = shown.labels if shown.labels is not None else shown.case.label
        if tumour is not None and np.any(tumour):  # the axial slice with the most tumour
            top = shown.layers[-1]
            z = int(np.argmax((to_display(tumour) > 0).sum(axis=(1, 2))))
            self.viewer.dims.set_point(0, z * top.scale[0] + top.translate[0])
        prediction = self.prediction_layer()
        self.viewer.layers.selection.active = prediction or next(
            (layer for layer in shown.layers if layer.visible), shown.layers[0])
        self.table.selectRow(self.table.row_of(shown.entry.case_id))
        entry = shown.entry
        what = {"new": "not segmented yet (Segment all)", "segmented": "prediction, not reviewed",
                "reviewed": "accepted unchanged", "corrected": "accepted with corrections"}[entry.status]
        score = "" if entry.score is None else f", uncertainty {entry.score:.3f}"
        self.message.show_message(f"{case_summary(shown.case)} Status: {what}{score}.",
                                  "success" if prediction is not None else "info")
        self._update_buttons()

    def _remove_shown(self) -> None:
        with self.viewer.layers.batched_update():  # one redraw (and one napari gc.collect) per canvas
            for layer in list(self.viewer.layers):
                if id(getattr(layer, "__wrapped__", layer)) in self._layer_ids:
                    self.viewer.layers.remove(layer)
        self._layer_ids.clear()

    def shown_layers(self) -> list[Any]:
        """The layers this browser shows now (bottom to top)."""
        return [layer for layer in self.viewer.layers if id(getattr(layer, "__wrapped__", layer)) in self._layer_ids]

    def prediction_layer(self) -> Any | None:
        """The shown case's editable prediction Labels layer, if it is still in the viewer."""
        if self.shown is None:
            return None
        name = prediction_name(self.shown.case)
        return next((layer for layer in self.shown_layers() if layer.name == name), None)

    def uncertainty_layer(self) -> Any | None:
        if self.shown is None:
            return None
        name = f"{self.shown.entry.case_id} uncertainty"
        return next((layer for layer in self.shown_layers() if layer.name == name), None)

    def has_unaccepted_edits(self) -> bool:
        layer = self.prediction_layer()
        return layer is not None and self._baseline is not None and \
            not np.array_equal(canonical_labels(layer), self._baseline)

    def _toggle_uncertainty(self, shown: bool) -> None:
        layer = self.uncertainty_layer()
        if layer is not None:
            layer.visible = shown

    # ------------------------------------------------------------------ accept
    def accept(self) -> None:
        """Store the prediction layer's labels (with the reader's edits) as the case's training label."""
        layer = self.prediction_layer()
        if layer is None or self.review is None:
            self.message.show_message("Nothing to accept: show a segmented case first (Segment all).", "warning")
            return
        if self.saver.busy:
            return
        review, case, labels = self.review, self.shown.case, canonical_labels(layer)
        self.message.show_message(f"Saving {case.case_id}'s labels…")
        self.accept_button.setEnabled(False)
        self.saver.start(lambda progress, cancel: (review.accept(case.case_id, labels, case=case), labels))

    def _accepted(self, result: tuple[CaseEntry, np.ndarray]) -> None:
        entry, labels = result
        if self.current_id == entry.case_id:
            self._baseline = labels
            self.shown.entry = entry
        self.table.update_entry(entry)
        self._summarise()
        voxels = entry.record.get("corrected_voxels", 0)
        self.message.show_message(f"Accepted {entry.case_id} as {entry.status}"
                                  + (f" ({voxels} voxels changed)" if entry.status == "corrected" else "")
                                  + ": it is a training case for Fine-tune on corrections.", "success")

    # ------------------------------------------------------------------ segment all
    def segment_all(self, device: str | None = None) -> None:
        """Segment the cohort in a worker (what the Segment all button does); rows update after each case."""
        if self.review is None or self.panel.busy or self.train_panel.busy:
            return
        if device is not None:
            self.panel.select_device(device)
        if not self.choice.ready():
            self.choice.backend.wait()
        review, spec, engines = self.review, self.choice.spec(), self._engines
        dev, tta, redo, post = self.device.currentData(), self.tta.isChecked(), self.redo.isChecked(), \
            self.panel.runner.post
        self.tabs.setCurrentIndex(0)
        self.panel.start(lambda progress, cancel: segment_cohort(
            review, spec, device=dev, tta=tta, redo=redo, engines=engines, post=post, progress=progress,
            cancel=cancel), "Segmenting the cohort…" + (" (again, every case)" if redo else ""))
        self._update_buttons()

    def cancel(self) -> None:
        """Stop Segment all (the cases done are kept) or fine-tuning (the model so far is saved)."""
        self.panel.cancel()
        self.train_panel.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until Segment all, fine-tuning and reading have stopped (scripts and tests)."""
        return all(runner.wait(timeout) for runner in (self.panel.runner, self.train_panel.runner,
                                                        self.loader, self.saver))

    def _case_segmented(self, entry: CaseEntry) -> None:
        self.table.update_entry(entry)
        self._summarise()
        if entry.case_id == self.current_id and not self.has_unaccepted_edits():
            self._wanted = entry.case_id  # show its new prediction
            if not self.loader.busy:
                self._read(entry.case_id)

    def _segment_all_stopped(self) -> None:
        if self.review is not None:
            self.table.set_entries(self.review.entries())  # back to review first, with the new scores
            self._summarise()
            if self.current_id is not None:
                self.table.selectRow(self.table.row_of(self.current_id))
        self._update_buttons()

    # ------------------------------------------------------------------ fine-tune on corrections
    def init_checkpoint(self) -> Path | None:
        """The checkpoint of the model in use (the demo model's file, or the chosen one)."""
        if not self.choice.ready():
            self.choice.backend.wait()
        spec = self.choice.spec()
        if spec.kind == "demo":
            return self.choice.info.demo
        return spec.checkpoint if spec.kind == "checkpoint" else None

    def finetune(self, device: str | None = None) -> None:
        """Fine-tune the model in use on the accepted cases in a worker (what the button does)."""
        from napari_acs.review import finetune_on_corrections

        if self.review is None or self.panel.busy or self.train_panel.busy:
            return
        if device is not None:
            self.panel.select_device(device)
        init = self.init_checkpoint()
        if init is None:
            self.train_panel.message.show_message(NO_CHECKPOINT, "error")
            return
        review, post = self.review, self.train_panel.runner.post
        settings = {"include_references": self.include_references.isChecked(), "epochs": self.epochs.value(),
                    "steps_per_epoch": self.steps.value(), "patch_size": self.patch.value() or None,
                    "device": self.device.currentData()}
        self.tabs.setCurrentIndex(1)
        self.monitor.reset("segmentation", f"fine-tuning {init.name} on the accepted cases of {review.folder}")
        self.train_panel.start(lambda progress, cancel: finetune_on_corrections(
            review, init, progress=progress, cancel=cancel, on_event=post, **settings),
            f"Fine-tuning {init.name} on the corrections…")
        self._update_buttons()

    def _new_model(self, checkpoint: Path) -> None:
        """A fine-tuning run ended with a checkpoint: it becomes the browser's model; Segment all re-ranks."""
        self.choice.choose_checkpoint(checkpoint)
        self.redo.setChecked(True)
        self.train_panel.message.show_message(
            f"{checkpoint.parent.name}/{checkpoint.name} is now the model: Segment all (every case again) "
            "re-ranks the cohort with it; Use in Segment offers it there.", "success")
