"""Fine-tune: a cohort, a preset, ACS or 3D -> live loss/validation curves, log, Stop, checkpoint.

Calls :func:`napari_acs.training.finetune` in a worker; its ``on_event`` dicts
(start / step / epoch / warning / end) are posted to the GUI thread, where they
draw the curves and the log. Stop sets the cancel event: the run saves the
current model to ``last.safetensors`` and its ``end`` event offers it, in one
click, to the Segment (or Classify MGMT) widget. The curves, the log and that offer are a
:class:`TrainingMonitor`, which the Cohort browser's "Fine-tune on corrections" shows too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_acs._napari._model_choice import BackendInfo, load_backend
from napari_acs._napari._qt import CurvePlot, MessageLabel, PathEdit, error_text, scrolling_layout
from napari_acs._napari._run_panel import RunPanel
from napari_acs._napari._workers import StopsJobsWhenClosed, TaskRunner

if TYPE_CHECKING:
    import napari

TASKS = (("Segmentation (NCR, ED, ET)", "segmentation"), ("MGMT classification", "classification"))
EXISTING = (("Keep it (refuse to start)", "refuse"), ("Resume it", "resume"), ("Replace it", "overwrite"))
#: Validation columns drawn per task (history.csv names) and their names on the plot.
VALIDATION = {
    "segmentation": {"val_dice_WT": "Dice WT", "val_dice_TC": "Dice TC", "val_dice_ET": "Dice ET",
                     "val_dice_mean": "Dice mean"},
    "classification": {"val_auc": "AUC", "val_accuracy": "accuracy", "val_balanced_accuracy": "balanced accuracy"},
}
TARGET_WIDGET = {"segmentation": "Segment", "classification": "Classify MGMT"}


def run_finetune(settings: dict[str, Any], post: Any, progress: Any, cancel: Any) -> Any:
    """Worker job: build the config (its checks raise ValueError) and train."""
    from napari_acs.training import FinetuneConfig, finetune

    config = FinetuneConfig(**settings)
    return finetune(config, progress=progress, cancel=cancel, on_event=post)


class TrainingMonitor(QWidget):
    """A run's live curves (loss, validation) and log from :func:`napari_acs.training.finetune`'s
    ``on_event`` dicts (:meth:`on_event`), and "Use in Segment" for the checkpoint it ends with.

    ``checkpoint_ready(Path)`` is emitted when a run ends (finished or stopped) with a checkpoint:
    the best validated one, else the last.
    """

    checkpoint_ready = Signal(object)

    def __init__(self, viewer: Any, message: MessageLabel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.message = viewer, message
        self.checkpoint: Path | None = None
        self.run_task = "segmentation"
        self.loss_plot = CurvePlot("Training loss (thin: per step)")
        self.val_plot = CurvePlot("Validation")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setFixedHeight(90)
        self.use_button = QPushButton("Use in Segment")
        self.use_button.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.val_plot, 1)
        layout.addWidget(self.log)
        layout.addWidget(self.use_button)
        self.use_button.clicked.connect(self.use_checkpoint)

    def set_task(self, task: str) -> None:
        self.use_button.setText(f"Use in {TARGET_WIDGET[task]}")

    def reset(self, task: str, first_line: str) -> None:
        """A new run of ``task`` starts: empty curves and log, no checkpoint yet."""
        self.checkpoint = None
        self.run_task = task
        self.set_task(task)
        self.use_button.setEnabled(False)
        self.loss_plot.clear()
        self.val_plot.clear()
        self.log.clear()
        self.log_line(first_line)

    def cancelled(self) -> None:
        """The run was stopped (its ``end`` event, if any, has already been shown)."""
        self.log_line("stopped by the user")
        if self.checkpoint is None:
            self.message.show_message("Stopped before the first training step: no checkpoint was written.", "warning")

    def log_line(self, line: str) -> None:
        self.log.appendPlainText(line)

    def on_event(self, event: dict[str, Any]) -> None:
        """Draw one ``on_event`` dict (start / step / epoch / warning / end)."""
        kind = event.get("event")
        if kind == "start":
            self.loss_plot.x_max = self.val_plot.x_max = event["epochs"]
            self.log_line(f"{len(event['train_ids'])} training and {len(event['val_ids'])} validation cases, "
                          f"{event['steps_per_epoch']} steps per epoch, epochs {event['start_epoch']}-{event['epochs']}")
        elif kind == "step":
            x = event["epoch"] - 1 + event["step"] / event["steps"]
            self.loss_plot.add_point("loss per step", x, event["loss"], markers=False)
        elif kind == "epoch":
            self._epoch_done(event)
        elif kind == "warning":
            self.log_line(f"warning: {event['message']}")
        elif kind == "end":
            self._run_ended(event)

    def _epoch_done(self, row: dict[str, Any]) -> None:
        epoch = row["epoch"]
        self.loss_plot.add_point("train loss", epoch, row["train_loss"])
        if "val_loss" in row:
            self.loss_plot.add_point("validation loss", epoch, row["val_loss"])
        shown = [f"loss {row['train_loss']:.4f}"]
        for column, name in VALIDATION[self.run_task].items():
            if row.get(column) is not None:
                self.val_plot.add_point(name, epoch, row[column])
                shown.append(f"{name} {row[column]:.3f}")
        self.log_line(f"epoch {epoch}: " + ", ".join(shown) + (" (best so far)" if row.get("is_best") else ""))

    def _run_ended(self, event: dict[str, Any]) -> None:
        best, last = event.get("best_checkpoint"), event.get("last_checkpoint")
        chosen = best if best not in (None, "None") else last  # the best validated model, else the latest
        if chosen in (None, "None"):
            self.message.show_message("The run ended before any checkpoint was written.", "warning")
            return
        self.checkpoint = Path(chosen)
        what = "stopped" if event.get("cancelled") else "finished"
        self.log_line(f"{what} after {event['epochs_completed']} epoch(s); checkpoint {self.checkpoint}")
        self.message.show_message(f"Run {what}: {self.checkpoint.name} is ready.", "success")
        self.use_button.setEnabled(True)
        self.checkpoint_ready.emit(self.checkpoint)

    def use_checkpoint(self) -> Any:
        """Open (or show) the Segment / Classify MGMT widget with this run's checkpoint chosen."""
        if self.checkpoint is None:
            return None
        _, widget = self.viewer.window.add_plugin_dock_widget("napari-acs", TARGET_WIDGET[self.run_task])
        widget.choice.choose_checkpoint(self.checkpoint)
        return widget


class FinetuneWidget(StopsJobsWhenClosed, QWidget):
    """Dock widget: fine-tune a preset on a BraTS cohort and watch it learn."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.task = QComboBox()
        for text, value in TASKS:
            self.task.addItem(text, value)
        self.cohort = PathEdit("folder", caption="Cohort folder (one folder per case)",
                               placeholder="folder of BraTS case folders")
        self.labels_csv = PathEdit("file", caption="MGMT labels CSV", name_filter="CSV (*.csv)",
                                   placeholder="BraTS21ID,MGMT_value (default: <cohort>/train_labels.csv)")
        self.preset = QComboBox()
        self.preset.addItem("Loading…")
        self.conv = QComboBox()
        self.conv.addItem("ACS (ImageNet 2D kernels)", "acs")
        self.conv.addItem("3D (native kernels, from scratch)", "3d")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.lr = QLineEdit("1e-3")
        self.lr.setValidator(QDoubleValidator(1e-8, 10.0, 8))
        self.patch = QSpinBox()
        self.patch.setRange(0, 512)
        self.patch.setSingleStep(32)
        self.patch.setSpecialValueText("preset default")
        self.patch.setSuffix(" voxels (cube)")
        self.steps = QSpinBox()
        self.steps.setRange(0, 100000)
        self.steps.setSpecialValueText("default")
        self.out_dir = PathEdit("folder", caption="Output folder", placeholder="checkpoints, history.csv, config.json")
        self.existing = QComboBox()
        for text, value in EXISTING:
            self.existing.addItem(text, value)
        self.panel = RunPanel("Start", None, cancel_text="Stop", cancelling_text="Stopping after the current step…")
        self.device, self.runner, self.message = self.panel.device, self.panel.runner, self.panel.message
        self.start_button, self.stop_button = self.panel.run_button, self.panel.cancel_button
        self.start_button.setEnabled(False)
        self.stop_button.setToolTip("Stops after the current step and saves the model (last.safetensors)")
        self.monitor = TrainingMonitor(self.viewer, self.message)
        self.loss_plot, self.val_plot = self.monitor.loss_plot, self.monitor.val_plot
        self.log, self.use_button = self.monitor.log, self.monitor.use_button

        rows = (("Task", self.task), ("Cohort", self.cohort), ("Labels CSV", self.labels_csv),
                ("Preset", self.preset), ("Convolutions", self.conv), ("Epochs", self.epochs),
                ("Learning rate", self.lr), ("Patch size", self.patch), ("Steps per epoch", self.steps),
                ("Output folder", self.out_dir), ("Run already in folder", self.existing))
        self._form = self.panel.options  # one form: these rows, then the panel's Device
        for row, (label, field) in enumerate(rows):
            self._form.insertRow(row, label, field)
        layout = scrolling_layout(self, min_width=400)
        layout.addWidget(self.panel)
        layout.addWidget(self.monitor, 1)

        self.task.currentIndexChanged.connect(self._task_changed)
        self.start_button.clicked.connect(lambda: self.start())
        self.runner.posted.connect(self.monitor.on_event)
        self.runner.cancelled.connect(self.monitor.cancelled)
        self.runner.stopped.connect(self._idle)
        self.backend = TaskRunner(self)
        self.backend.succeeded.connect(self._backend_ready)
        self.backend.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
        self.backend.start(load_backend)
        self._task_changed()

    # ------------------------------------------------------------------ form
    def _backend_ready(self, info: BackendInfo) -> None:
        self.preset.clear()
        for name, description in info.presets:
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.preset.setCurrentIndex(self.preset.findData(info.default))
        self.panel.set_cuda_available(info.cuda)
        self.start_button.setEnabled(True)

    def _task_changed(self) -> None:
        task = self.task.currentData()
        self._form.setRowVisible(self.labels_csv, task == "classification")
        self.monitor.set_task(task)

    def settings(self) -> dict[str, Any]:
        """The form as :class:`~napari_acs.training.FinetuneConfig` keyword arguments."""
        cohort, out_dir, csv = self.cohort.paths(), self.out_dir.paths(), self.labels_csv.paths()
        if not cohort:
            raise ValueError("choose the cohort folder (one sub-folder per BraTS case)")
        if not out_dir:
            raise ValueError("choose an output folder for the checkpoints")
        try:
            lr = float(self.lr.text())
        except ValueError:
            raise ValueError(f"learning rate {self.lr.text()!r} is not a number (e.g. 1e-3)") from None
        existing = self.existing.currentData()
        task = self.task.currentData()
        return {
            "cohort": cohort[0], "out_dir": out_dir[0], "task": task,
            "labels_csv": csv[0] if csv and task == "classification" else None,
            "model": self.preset.currentData(), "conv": self.conv.currentData(),
            "epochs": self.epochs.value(), "lr": lr,
            "patch_size": self.patch.value() or None, "steps_per_epoch": self.steps.value() or None,
            "resume": existing == "resume", "overwrite": existing == "overwrite",
            "device": self.device.currentData(),
        }

    # ------------------------------------------------------------------ run
    def start(self) -> None:
        """Start fine-tuning in a worker (what the Start button does)."""
        if self.runner.busy:
            return
        if self.backend.busy:
            self.backend.wait()
        try:
            settings = self.settings()
        except ValueError as exc:
            self.message.show_message(error_text(exc), "error")
            return
        what = f"{settings['model']} ({settings['conv'].upper()}) for {settings['task']} on {settings['cohort']}"
        self.monitor.reset(settings["task"], f"fine-tuning {what}")
        post = self.runner.post
        self.panel.start(lambda progress, cancel: run_finetune(settings, post, progress, cancel), f"Fine-tuning {what}…")

    def stop(self) -> None:
        """Stop after the current step; the run saves the model it has (last.safetensors)."""
        self.panel.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until the run has stopped (scripts and tests)."""
        return self.panel.wait(timeout)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint of the last run (None before it has written one)."""
        return self.monitor.checkpoint

    @property
    def run_task(self) -> str:
        return self.monitor.run_task

    def _idle(self) -> None:
        self.start_button.setEnabled(True)
        self.panel.progress.setFormat("idle" if self.checkpoint is None else "done")

    def use_checkpoint(self) -> Any:
        """Open (or show) the Segment / Classify MGMT widget with this run's checkpoint chosen."""
        return self.monitor.use_checkpoint()
