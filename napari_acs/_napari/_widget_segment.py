"""Segment: model choice, device, TTA, Run/Cancel with progress; labels, legend, volumes, metrics, Save.

The work (model building, sliding-window inference, volumes, Dice/HD95) runs in a
thread worker; the GUI thread only adds or updates the result layer. See
:mod:`napari_acs._napari._layers` for which case is segmented.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QLabel,
    QPushButton,
)

from napari_acs._napari._layers import (
    PREPARED_KEY,
    add_layer_in_steps,
    canonical_labels,
    case_prepared,
    current_case,
    edited_name,
    labels_digest,
    labels_layer_kwargs,
    layer_case,
    layer_prepared,
    outline,
    prediction_name,
    reference_layer,
    save_case_labels,
    to_display,
)
from napari_acs._napari._model_choice import EngineCache, ModelChoice, ModelSpec
from napari_acs._napari._qt import column, error_text, group_box
from napari_acs._napari._report import ReportControls, ReportRequest, shown_sequence
from napari_acs._napari._results import RegionLegend, ResultsTable
from napari_acs._napari._run_panel import ModelRunWidget, RunPanel, connect_case_changes
from napari_acs._napari._workers import TaskRunner
from napari_acs.inference.plausibility import worst_level

if TYPE_CHECKING:
    import napari

NIFTI_FILTER = "NIfTI (*.nii.gz *.nii)"
#: Quiet time after a label edit (paint, fill, erase, undo, redo) before volumes and metrics
#: are measured again (ms): a stroke or a run of Ctrl+Z is measured once, after its last event.
EDIT_DEBOUNCE_MS = 200
#: ``layer.metadata["napari_acs"]`` key of the digest of the labels a run put in its layer.
DIGEST_KEY = "digest"

#: What a table shows: the digests of the measured labels and reference (``None`` without one).
MeasureKey = tuple[str, str | None]


@dataclass
class SegmentationResult:
    """One run: canonical uint8 ``labels`` (X, Y, Z), region volumes (mL), metrics vs the reference."""

    case: Any
    labels: np.ndarray
    volumes_ml: dict[str, float]
    metrics: dict[str, dict[str, float]] | None
    model: str
    trained: bool
    device: str
    seconds: float
    layer: Any = None  # the prediction Labels layer, built in the worker (see _show_result)
    concerns: list = field(default_factory=list)  # a poor model, implausible volumes (plausibility.Concern)
    key: MeasureKey | None = None  # what the volumes and metrics were measured on (measure_key)


def measure(case: Any, labels: np.ndarray, reference: np.ndarray | None) -> tuple[dict, dict | None]:
    """Region volumes (mL) and, with a reference, BraTS metrics (Dice, HD95 mm...)."""
    from napari_acs.metrics import brats_metrics, volumes_ml

    volumes = volumes_ml(labels, case.spacing, case.convention)
    metrics = None if reference is None else brats_metrics(labels, reference, case.spacing, case.convention)
    return volumes, metrics


def measure_key(labels: np.ndarray, reference: np.ndarray | None) -> MeasureKey:
    """Digests of the labels and the reference a table's numbers describe."""
    return labels_digest(labels), None if reference is None else labels_digest(reference)


def remeasure_edit(case: Any, labels: np.ndarray, reference: np.ndarray | None,
                   shown: MeasureKey | None) -> tuple[Any, MeasureKey, dict, dict | None] | None:
    """Worker job: measure (edited) labels again; ``None`` when they and the reference are what
    the table shows already (``shown``: an event that changed no voxel, such as a slice change)."""
    key = measure_key(labels, reference)
    if key == shown:
        return None
    return case, key, *measure(case, labels, reference)


def run_segmentation(
    case: Any, spec: ModelSpec, *, device: str, tta: bool, reference: np.ndarray | None,
    engines: EngineCache, progress: Any, cancel: Any,
) -> SegmentationResult:
    """Worker job: build (or reuse) the widget's engine, segment the case, measure the result."""
    from napari_acs.inference import Segmenter
    from napari_acs.inference.plausibility import brain_volume_ml, model_concerns, sequence_concerns, volume_concerns
    from napari_acs.progress import check_cancel

    def build() -> tuple[Any, Any]:
        progress(0.0, "building the model")
        selected = spec.select()
        return selected, Segmenter(selected.model, device=device, tta=tta)

    start = time.perf_counter()
    selected, engine = engines.get((spec.cache_key(), device, tta), build)
    check_cancel(cancel, "segmentation")
    resolved = str(engine.device)
    labels = engine.segment(case, progress=progress, cancel=cancel)
    progress(1.0, "measuring volumes" + (" and metrics" if reference is not None else ""))
    volumes, metrics = measure(case, labels, reference)
    concerns = [*model_concerns(getattr(selected.model, "checkpoint_meta", None)),
                *sequence_concerns(getattr(case, "missing", ())),
                *volume_concerns(volumes, brain_volume_ml(case.image, case.spacing))]
    # built here, off the GUI thread (a layer object touches no Qt until it is added)
    layer = Labels(to_display(labels), **labels_layer_kwargs(case, prediction_name(case)))
    return SegmentationResult(case, labels, volumes, metrics, selected.description, selected.trained,
                              resolved, time.perf_counter() - start, layer, concerns, measure_key(labels, reference))


def is_edited(layer: Any) -> bool:
    """Whether a prediction layer's labels differ from those its run put there (an undo back to
    them is no edit). A layer without a run's digest (made elsewhere) counts as edited: it is kept."""
    put = (layer.metadata.get("napari_acs") or {}).get(DIGEST_KEY)
    return put is None or put != labels_digest(canonical_labels(layer))


class SegmentWidget(ModelRunWidget):
    """Dock widget: segment the current case (see :func:`~napari_acs._napari._layers.current_case`)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: SegmentationResult | None = None
        self._table_case: Any | None = None  # the case the table describes
        self._table_key: MeasureKey | None = None  # ... and the labels and reference it was measured on
        self._engines = EngineCache()  # this widget's own engine

        self.case_label = QLabel()
        self.case_label.setWordWrap(True)
        self.choice = ModelChoice("segmentation")
        self.choice.backend.succeeded.connect(self._backend_ready)
        self.panel = RunPanel("Run", "Cancelled: no segmentation was added.")
        self.tta = QCheckBox("Test-time augmentation (8 flips, 8× slower)")
        self.panel.add_option(self.tta)
        self.device, self.run_button, self.cancel_button = self.panel.device, self.panel.run_button, self.panel.cancel_button
        self.message = self.panel.message
        self.runner = self.panel.runner
        self.run_button.setEnabled(False)
        self.legend = RegionLegend()
        self.table = ResultsTable()
        self.save_button = QPushButton("Save segmentation…")
        self.save_button.setToolTip("NIfTI on the source scan's grid, affine and orientation")
        self.save_button.setEnabled(False)
        self.report = ReportControls(self.report_request)
        self._run_model: tuple[Any, Any] | None = None
        self._result_model: tuple[Any, Any] | None = None  # (case, ModelSpec) of the last result

        column(self, self.case_label, group_box("Model", self.choice), self.panel,
               group_box("Result", self.legend, self.table, self.save_button, self.report), min_width=400)

        self.run_button.clicked.connect(lambda: self.run())
        self.save_button.clicked.connect(self._save_dialog)
        self.runner.succeeded.connect(self._show_result)
        self.runner.succeeded.connect(lambda result: setattr(self, "_result_model", self._run_model))
        self.runner.stopped.connect(self._update_case)
        self._measurer = TaskRunner(self)
        self._measurer.succeeded.connect(self._show_measures)
        self._edits = QTimer(self)
        self._edits.setSingleShot(True)
        self._edits.setInterval(EDIT_DEBOUNCE_MS)
        self._edits.timeout.connect(self.remeasure)
        connect_case_changes(self.viewer, self._update_case)
        self._update_case()

    # ------------------------------------------------------------------ state
    def _backend_ready(self, info: Any) -> None:
        self.panel.set_cuda_available(info.cuda)
        self._update_case()

    def _update_case(self, event: Any = None) -> None:
        case = current_case(self.viewer)
        ref = None if case is None else reference_layer(self.viewer, case)
        if case is None:
            self.case_label.setText("<b>No case open.</b> Use <i>Load BraTS case</i> or File ▸ Open.")
        else:
            shape = "×".join(map(str, case.shape))
            self.case_label.setText(
                f"<b>Case {case.case_id}</b> ({shape} voxels)<br>reference: "
                + (f"<i>{ref.name}</i> (Dice/HD95 shown)" if ref is not None else "none (volumes only)")
            )
        self.run_button.setEnabled(case is not None and self.choice.ready() and not self.runner.busy)
        layer = self.prediction_layer()
        self.save_button.setEnabled(layer is not None)
        if layer is not None:
            self._follow(layer, ref)  # the volumes follow the prediction's edits, Dice the reference's too
        if case is not self._table_case:  # another case became current: its own numbers, if any
            self._table_case, self._table_key = case, None
            self.table.show_results({}, None)
            self.remeasure()

    def prediction_layer(self) -> Any | None:
        """The current case's prediction Labels layer, if it exists."""
        case = current_case(self.viewer)
        if case is None:
            return None
        name = prediction_name(case)
        return next((layer for layer in self.viewer.layers if layer.name == name), None)

    # ------------------------------------------------------------------ run
    def run(self, device: str | None = None) -> None:
        """Segment the current case in a worker (what the Run button does)."""
        if device is not None:
            self.panel.select_device(device)
        case = self.case_to_run()
        if case is None:
            return
        if self.runner.busy:
            return
        ref = reference_layer(self.viewer, case)
        reference = canonical_labels(ref) if ref is not None else None
        spec, dev, tta, engines = self.choice.spec(), self.device.currentData(), self.tta.isChecked(), self._engines
        self._run_model = (case, spec)  # the report's model card, once this run has succeeded
        self.panel.start(lambda progress, cancel: run_segmentation(
            case, spec, device=dev, tta=tta, reference=reference, engines=engines, progress=progress, cancel=cancel),
            f"Segmenting {case.case_id}…")

    def _show_result(self, result: SegmentationResult) -> None:
        self.result = result
        self._table_case, self._table_key = result.case, result.key
        case, name = result.case, prediction_name(result.case)
        data = to_display(result.labels)
        existing = next((layer for layer in self.viewer.layers if layer.name == name), None)
        kept = None
        if existing is not None and is_edited(existing):  # the user's corrections are never replaced
            existing.name = edited_name(case)
            kept, existing = existing.name, None
        if existing is not None and existing.data.shape == data.shape:
            existing.data = data  # a re-run over unedited labels swaps the data: no new layer to set up
            layer = existing
        else:
            if existing is not None:
                self.viewer.layers.remove(existing)
            layer = result.layer or Labels(data, **labels_layer_kwargs(case, name))
            add_layer_in_steps(self.viewer, layer)
        self._follow(layer)
        layer.metadata["napari_acs"].update({"model": result.model, DIGEST_KEY: result.key[0],
                                             PREPARED_KEY: case_prepared(self.viewer, case)})
        if (ref := reference_layer(self.viewer, case)) is not None and not ref.contour:
            outline(ref)  # the reference as outlines under the filled prediction
        self.table.show_results(result.volumes_ml, result.metrics)
        text = f"Segmented {case.case_id} in {result.seconds:.1f} s on {result.device}"
        concerns = " ".join(c.text for c in result.concerns)
        if kept is not None:
            concerns = f"Your edited labels are kept in the layer '{kept}'. {concerns}".rstrip()
        if not result.trained:
            self.message.show_message(
                f"{text} with an UNTRAINED model: these labels are meaningless. {concerns}".rstrip(), "warning")
        elif result.concerns:  # never the green success line for a poor model or an implausible result
            self.message.show_message(f"{text} with {result.model}. {concerns}", worst_level(result.concerns))
        else:
            self.message.show_message(f"{text} with {result.model}. {concerns}".rstrip(), "success")

    # ------------------------------------------------------------------ edits
    def _follow(self, *layers: Any) -> None:
        """Measure again after each change of these Labels layers (``None`` skipped): ``paint``
        (brush, fill, eraser, polygon), ``data`` (data replaced) and ``set_data`` (a redraw, which
        undo and redo only emit; slice changes too, which :func:`remeasure_edit` finds unchanged).
        napari ignores a repeated connection and holds the callback weakly."""
        for layer in (layer for layer in layers if layer is not None):
            for emitter in (layer.events.paint, layer.events.data, layer.events.set_data):
                emitter.connect(self._on_edit)

    def _on_edit(self, event: Any = None) -> None:
        self._edits.start()

    def remeasure(self) -> None:
        """Measure the (edited) prediction layer again, in a worker."""
        layer = self.prediction_layer()
        if layer is None:
            return
        if self._measurer.busy:  # measure again once this one is done
            self._edits.start()
            return
        case = layer_case(layer)
        ref = reference_layer(self.viewer, case)
        labels = canonical_labels(layer)
        reference = canonical_labels(ref) if ref is not None else None
        shown = self._table_key if case is self._table_case else None
        self._measurer.start(lambda progress, cancel: remeasure_edit(case, labels, reference, shown))

    def _show_measures(self, measures: tuple[Any, MeasureKey, dict, dict | None] | None) -> None:
        if measures is None:  # nothing changed
            return
        case, key, volumes, metrics = measures
        if case is self._table_case:  # not a case the user has left meanwhile
            self._table_key = key
            self.table.show_results(volumes, metrics)

    # ------------------------------------------------------------------ save
    def default_save_path(self) -> Path | None:
        """``<case folder>/<id>_prediction.nii.gz`` (a name the case reader ignores); for a
        prepared case, the folder of the reference file it was prepared on."""
        case = current_case(self.viewer)
        if case is None:
            return None
        prepared = case_prepared(self.viewer, case)
        source = prepared.inputs[prepared.reference] if prepared is not None else next(iter(case.files.values()))
        return Path(source).parent / f"{case.case_id}_prediction.nii.gz"

    def _save_dialog(self) -> None:
        start = str(self.default_save_path() or "")
        path, _ = QFileDialog.getSaveFileName(self, "Save segmentation (NIfTI, source grid)", start, NIFTI_FILTER)
        if path:  # the dialog has asked before replacing an existing file
            self.save(path, overwrite=True)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write the prediction layer (with any edits) on the source grid (a prepared case's: its
        reference file's); an existing file is an error unless ``overwrite``. Returns the path
        written, or ``None`` (message shown)."""
        layer = self.prediction_layer()
        if layer is None:
            self.message.show_message("Nothing to save: run a segmentation first.", "warning")
            return None
        if Path(path).exists() and not overwrite:
            self.message.show_message(
                f"{path} exists and was not replaced: choose another name (Save… asks before replacing).", "error")
            return None
        prepared = layer_prepared(layer)
        try:
            written = save_case_labels(canonical_labels(layer), layer_case(layer), path, prepared=prepared,
                                       overwrite=overwrite)
        except Exception as exc:  # shown to the user: any failure to write is reported, not raised
            self.message.show_message(error_text(exc), "error")
            return None
        where = "" if prepared is None else (
            f" on the grid of {prepared.inputs[prepared.reference].name}, the exam's reference sequence")
        self.message.show_message(f"Saved {written}{where}", "success")
        return written

    # ------------------------------------------------------------------ report
    def report_request(self) -> ReportRequest | str:
        """What the report of the current case shows: its prediction layer (with edits), its
        reference, the model of the run that made the prediction, the sequence on screen."""
        layer = self.prediction_layer()
        if layer is None:
            return "Nothing to report: run a segmentation first."
        case = layer_case(layer)
        ref = reference_layer(self.viewer, case)
        model = self._result_model[1] if self._result_model and self._result_model[0] is case else None
        prepared = layer_prepared(layer)
        folder = None if prepared is None else prepared.inputs[prepared.reference].parent
        return ReportRequest(case, canonical_labels(layer), canonical_labels(ref) if ref is not None else None,
                             model, shown_sequence(self.viewer, case), folder)
