"""The part every model-running dock widget shares: device, Run and Cancel, progress, message.

The panel owns the :class:`~napari_acs._napari._workers.TaskRunner`; a widget puts its
own options in the form (:meth:`RunPanel.add_option`), starts jobs with
:meth:`RunPanel.start` and listens to ``panel.runner.succeeded`` for results.
:class:`ModelRunWidget` is the base of the widgets that run a model on the current case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_acs._napari._layers import current_case
from napari_acs._napari._qt import MessageLabel, error_text
from napari_acs._napari._workers import Job, StopsJobsWhenClosed, TaskRunner

DEVICES = (("Auto (GPU if available)", "auto"), ("CPU", "cpu"), ("CUDA GPU", "cuda"))
NO_CASE = "Open a BraTS case first (Load BraTS case widget, or File ▸ Open)."


class JobProgress(QProgressBar):
    """The progress of a :class:`~napari_acs._napari._workers.TaskRunner`'s jobs: the job's
    message and percentage while it runs (0-1000), then "done" (it succeeded) or "idle"."""

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, 1000)
        self.setFormat("idle")
        runner.progressed.connect(self.show_progress)
        runner.succeeded.connect(lambda result: self.setValue(1000))
        runner.stopped.connect(lambda: self.setFormat("done" if self.value() == 1000 else "idle"))

    def show_progress(self, fraction: float, message: str) -> None:
        self.setValue(int(fraction * 1000))
        self.setFormat(f"{message} (%p%)")


class RunPanel(QWidget):
    """Device choice, optional options, Run / Cancel, a progress bar and a message line.

    Args:
        run_text: the Run button's text.
        cancelled_text: shown when a job was cancelled (say what was left unchanged);
            ``None`` leaves the message to the widget.
        cancel_text: the Cancel button's text (Fine-tune's "Stop").
        cancelling_text: shown from the click on Cancel until the job has stopped.
    """

    def __init__(self, run_text: str = "Run", cancelled_text: str | None = "Cancelled.", *,
                 cancel_text: str = "Cancel", cancelling_text: str = "Cancelling…",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device = QComboBox()
        for text, value in DEVICES:
            self.device.addItem(text, value)
        self.cancelling_text = cancelling_text
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton(cancel_text)
        self.cancel_button.setEnabled(False)
        self.runner = TaskRunner(self)
        self.progress = JobProgress(self.runner)
        self.message = MessageLabel()

        self.options = QFormLayout()
        self.options.addRow("Device", self.device)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.options)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)

        self.cancel_button.clicked.connect(self.cancel)
        self.runner.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
        if cancelled_text is not None:
            self.runner.cancelled.connect(lambda: self.message.show_message(cancelled_text, "warning"))
        self.runner.stopped.connect(lambda: self.cancel_button.setEnabled(False))

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def add_option(self, label: str | QWidget, field: QWidget | None = None) -> None:
        """A row in the options form, below Device."""
        if field is None:
            self.options.addRow(label)
        else:
            self.options.addRow(label, field)

    def set_cuda_available(self, available: bool) -> None:
        """Grey out the CUDA choice (with a tooltip saying why) when there is no GPU."""
        index = self.device.findData("cuda")
        self.device.model().item(index).setEnabled(available)
        if not available:
            self.device.setItemData(index, "no CUDA GPU found on this computer", Qt.ItemDataRole.ToolTipRole)

    def select_device(self, device: str) -> None:
        self.device.setCurrentIndex(self.device.findData(device))

    def start(self, job: Job, message: str) -> None:
        """Run ``job(progress, cancel)`` in a worker; Run is disabled until it has stopped."""
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.message.show_message(message)
        self.progress.setValue(0)
        self.runner.start(job)

    def cancel(self) -> None:
        """Stop the running job (its result, if any, is dropped)."""
        if self.runner.busy:
            self.message.show_message(self.cancelling_text)
            self.runner.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until the job has stopped (scripts and tests)."""
        return self.runner.wait(timeout)


def connect_case_changes(viewer: Any, slot: Callable[..., None]) -> None:
    """Call ``slot`` when layers are added or removed or another layer becomes active."""
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed,
                  viewer.layers.selection.events.active):
        event.connect(slot)


class ModelRunWidget(StopsJobsWhenClosed, QWidget):
    """Base of the dock widgets that run a model on the current case.

    Subclasses set ``viewer``, ``choice`` (a ``ModelChoice``) and ``panel`` (a :class:`RunPanel`).
    """

    viewer: Any
    choice: Any
    panel: RunPanel

    def cancel(self) -> None:
        """Stop the running job; its result, if any, is dropped."""
        self.panel.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until the job has stopped (scripts and tests)."""
        return self.panel.wait(timeout)

    def case_to_run(self) -> Any | None:
        """The current case once the model choices are ready, or ``None`` (and a message saying why)."""
        if not self.choice.ready():
            self.choice.backend.wait()
        case = current_case(self.viewer)
        if case is None:
            self.panel.message.show_message(NO_CASE, "warning")
        return case
