"""Classify MGMT: probability and label of MGMT promoter methylation for the current case."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QLabel, QProgressBar

from napari_acs._napari._layers import current_case
from napari_acs._napari._model_choice import EngineCache, ModelChoice, ModelSpec
from napari_acs._napari._qt import column, group_box
from napari_acs._napari._run_panel import ModelRunWidget, RunPanel, connect_case_changes

if TYPE_CHECKING:
    import napari

THRESHOLD = 0.5
POSITIVE, NEGATIVE = "methylated", "unmethylated"
DISCLAIMER = "Research use only, not for diagnosis."


@dataclass
class MGMTResult:
    """``probability`` (0-1) that the MGMT promoter is methylated, and the thresholded ``label``."""

    case_id: str
    probability: float
    label: str
    model: str
    seconds: float


def run_classification(case: Any, spec: ModelSpec, *, device: str, engines: EngineCache, progress: Any,
                       cancel: Any) -> MGMTResult:
    """Worker job: load the classification checkpoint into the widget's engine (or reuse it), classify."""
    from napari_acs.inference import Classifier

    def build() -> tuple[Any, Any]:
        progress(0.1, "loading the model")
        selected = spec.select()
        task = getattr(selected.model, "create_kwargs", {}).get("task")
        if task != "classification":
            raise ValueError(f"{spec.checkpoint}: a {task} model; Classify MGMT needs a classification checkpoint")
        return selected, Classifier(selected.model, device=device)

    start = time.perf_counter()
    selected, engine = engines.get((spec.cache_key(), device), build)
    progress(0.4, "classifying")
    p = engine.classify(case, cancel=cancel)
    return MGMTResult(case.case_id, p, POSITIVE if p >= THRESHOLD else NEGATIVE, selected.description,
                      time.perf_counter() - start)


class ClassifyWidget(ModelRunWidget):
    """Dock widget: MGMT methylation probability of the current case from a classification checkpoint."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: MGMTResult | None = None
        self._engines = EngineCache()  # this widget's own engine
        self.case_label = QLabel()
        self.choice = ModelChoice("classification", presets=False)
        self.panel = RunPanel("Classify")
        self.device, self.run_button, self.cancel_button = self.panel.device, self.panel.run_button, self.panel.cancel_button
        self.message = self.panel.message
        self.runner = self.panel.runner
        self.answer = QLabel("–")
        self.answer.setWordWrap(True)
        self.answer.setStyleSheet("font-size: 15px;")
        self.probability = QProgressBar()
        self.probability.setRange(0, 1000)
        self.probability.setFormat("P(methylated) –")

        note = QLabel(f"Label at p ≥ {THRESHOLD}. {DISCLAIMER}")
        note.setWordWrap(True)
        column(self, self.case_label, group_box("Classification model", self.choice), self.panel,
               group_box("MGMT promoter", self.answer, self.probability, note), min_width=380)

        self.run_button.clicked.connect(lambda: self.run())
        self.runner.succeeded.connect(self._show_result)
        self.runner.stopped.connect(lambda: self.run_button.setEnabled(True))
        connect_case_changes(self.viewer, self._update_case)
        self._update_case()

    def _update_case(self, event: Any = None) -> None:
        case = current_case(self.viewer)
        self.case_label.setText("<b>No case open.</b>" if case is None else f"<b>Case {case.case_id}</b>")

    def run(self) -> None:
        """Classify the current case in a worker (what the Classify button does)."""
        if self.runner.busy:
            return
        case = self.case_to_run()
        if case is None:
            return
        spec = self.choice.spec()
        if spec.checkpoint is None:
            self.message.show_message("Choose a classification checkpoint (.safetensors) first.", "warning")
            return
        device, engines = self.device.currentData(), self._engines
        self.panel.start(lambda progress, cancel: run_classification(
            case, spec, device=device, engines=engines, progress=progress, cancel=cancel), f"Classifying {case.case_id}…")

    def _show_result(self, result: MGMTResult) -> None:
        self.result = result
        self.answer.setText(f"<b>{result.case_id}: {result.label}</b> (probability {result.probability:.2f})")
        self.probability.setValue(int(result.probability * 1000))
        self.probability.setFormat(f"P(methylated) = {result.probability:.2f}")
        self.message.show_message(f"Classified in {result.seconds:.1f} s with {result.model}.", "success")
