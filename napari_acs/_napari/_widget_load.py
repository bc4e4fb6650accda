"""Load BraTS case: a case folder or its files -> image + reference layers, problems as text.

Files with any names (a scanner's or PACS export) get a sequence each: the guess from the
name in a combo the user can change (:class:`~napari_acs._napari._sequence_table.SequenceTable`),
and the widget says which sequences are missing. Such files that are not yet one BraTS-like
case (sequences on different grids, thick slices, a skull) are prepared as BraTS prepares its
cases when opened (:func:`napari_acs.prepare.prepare_exam`, which decides what is needed:
co-registration to the reference sequence, 1 mm, brain extraction), in the background with
progress and Cancel; the prepared case is cached next to the exam and reused the next time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from napari_acs._napari._io import is_default_reader, use_napari_acs_by_default
from napari_acs._napari._layers import MODALITY_NAMES, case_layer_data
from napari_acs._napari._qt import MessageLabel, PathEdit, error_text, scrolling_layout
from napari_acs._napari._results import RegionLegend
from napari_acs._napari._run_panel import JobProgress
from napari_acs._napari._sequence_table import SequenceTable
from napari_acs._napari._window import install_window_drag
from napari_acs._napari._workers import StopsJobsWhenClosed, TaskRunner
from napari_acs.io.sequences import SEQUENCE_LABELS, sentence

if TYPE_CHECKING:
    import napari

NIFTI_FILTER = "NIfTI files (*.nii.gz *.nii)"
OPEN_TEXT, OPEN_ASSIGNED_TEXT = "Open case", "Open (prepare if needed)"
ASSIGN_HINT = (
    "Check the sequence of each file (guessed from its name), then Open. Files that are not yet one "
    "BraTS-like case (sequences on different grids, thick slices, a skull) are prepared as BraTS does: "
    "co-registered to the reference sequence, resampled to 1 mm, the brain extracted (a minute or two; "
    "kept for the next time)."
)
CANCELLED = "Cancelled: nothing was opened or written."


#: A job's result: the case to show and, for a prepared case, its PreparedExam.
Opened = tuple[Any, Any | None]


def _load(paths: list[str], progress: Any, cancel: Any) -> Opened:
    """Worker job: read and validate the case (nibabel + numpy, no layers yet)."""
    from napari_acs.io import load_case

    progress(0.0, "reading NIfTI files")
    return load_case(paths[0] if len(paths) == 1 else paths), None


def _load_assigned(files: dict, reference: str, progress: Any, cancel: Any) -> Opened:
    """Worker job: files with any names, each assigned a sequence by the user. Files that
    need no preparation (one 1 mm grid, skull-stripped) are read as they are, with their
    segmentation if one is assigned; others are prepared on the ``reference`` sequence
    (the case id is its file's name), or their earlier preparation is reused."""
    from dataclasses import replace

    from napari_acs.io import load_case
    from napari_acs.io.sequences import SEG
    from napari_acs.prepare import prepare_exam

    images = {reference: files[reference], **{k: p for k, p in files.items() if k not in (reference, SEG)}}
    prepared = prepare_exam(images, reference, progress=progress, cancel=cancel)
    if not prepared.steps_done:
        return load_case(files=files), None
    if SEG in files:
        note = (f"{files[SEG].name} was not opened: a segmentation of the raw files is not carried onto "
                "the prepared grid")
        prepared = replace(prepared, warnings=(*prepared.warnings, note))
    return prepared.case, prepared


def prepared_summary(prepared: Any) -> str:
    """What was done to prepare a case (the steps, the registration figures), where it is kept."""
    done = "; ".join([*prepared.summary(), f"brain {prepared.brain_ml:.0f} mL"])
    if prepared.reused:
        text = (f"Reused the case prepared earlier from these unchanged files, kept in {prepared.folder} "
                f"(nothing prepared again): {done}.")
    else:
        text = f"Prepared as BraTS does: {done}."
        if prepared.folder is not None:
            text += f" Kept in {prepared.folder}: opening these files again reuses it."
    return " ".join([text, *(sentence(warning) for warning in prepared.warnings)])


def case_summary(case: Any) -> str:
    """One line a radiologist can check: id, sequences, grid, voxel size, what was found, what is missing."""
    from napari_acs.io.sequences import missing_warning

    missing = tuple(getattr(case, "missing", ()))
    sequences = ", ".join(n for n, m in zip(MODALITY_NAMES, case.modalities) if m not in missing)
    shape = "×".join(str(s) for s in case.shape)
    spacing = "×".join(f"{s:.2f}" for s in case.spacing)
    seg = "with its reference segmentation" if case.label is not None else "no reference segmentation"
    names = {"brats2021": "BraTS 2021", "brats2023": "BraTS 2023"}
    return (
        f"Opened {case.case_id}: {sequences} {shape} voxels of {spacing} mm, "
        f"{seg} ({names.get(case.convention, case.convention)} labels)."
        + (f" {sentence(missing_warning(missing))}" if missing else "")
    )


class LoadWidget(StopsJobsWhenClosed, QWidget):
    """Open a BraTS case (folder or files) with the plugin's reader; show what went wrong."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.case: Any | None = None
        self.path = PathEdit(
            "folder", caption="BraTS case folder", placeholder="case folder, or one of its .nii.gz files"
        )
        self.files_button = QPushButton("Files…")
        self.files_button.setToolTip("Pick the case's NIfTI files: BraTS names, or any names (then choose each "
                                     "file's sequence below)")
        self.files_button.clicked.connect(self._pick_files)
        self.open_button = QPushButton(OPEN_TEXT)
        self.open_button.clicked.connect(lambda: self.open_case())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.sample_button = QPushButton("Open sample case")
        self.sample_button.setToolTip("The synthetic BraTS-like case shipped with napari-acs")
        self.sample_button.clicked.connect(self.open_sample)
        self.sequences = SequenceTable()
        self.sequences.hide()
        self.path.changed.connect(lambda text: text and self._clear_sequences())
        self.default_reader = QCheckBox("Use napari-acs for NIfTI and BraTS folders")
        self.default_reader.setToolTip("napari opens .nii / .nii.gz files and folders named *BraTS* with "
                                       "napari-acs without asking: your napari preference (Preferences > "
                                       "Plugins), like the reader dialog's 'Remember this choice'; untick to "
                                       "be asked again")
        self.default_reader.setChecked(is_default_reader())
        self.default_reader.toggled.connect(use_napari_acs_by_default)
        self.message = MessageLabel()
        self.legend = RegionLegend()
        self.legend.hide()
        self.runner = TaskRunner(self)
        self.progress = JobProgress(self.runner)

        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(self.files_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.sample_button)
        layout = scrolling_layout(self, min_width=380)
        hint = QLabel(
            "A BraTS case folder, or its files:<br>"
            "<tt>&lt;id&gt;_t1, _t1ce, _t2, _flair</tt> [<tt>_seg</tt>] <tt>.nii.gz</tt> (BraTS 2021) or<br>"
            "<tt>&lt;id&gt;-t1n, -t1c, -t2w, -t2f</tt> [<tt>-seg</tt>] <tt>.nii.gz</tt> (BraTS 2023);<br>"
            "or files with any names (Files…): check each one's sequence"
        )
        hint.setWordWrap(True)
        layout.addWidget(hint)
        layout.addLayout(row)
        layout.addWidget(self.sequences)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.default_reader)
        layout.addWidget(self.message)
        layout.addWidget(self.legend)
        layout.addStretch(1)

        install_window_drag(self.viewer)  # right-drag: window / level, as in radiology viewers
        self.runner.succeeded.connect(lambda opened: self._show_case(*opened))
        self.runner.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
        self.runner.cancelled.connect(lambda: self.message.show_message(CANCELLED, "warning"))
        self.runner.stopped.connect(lambda: self._set_busy(False))

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "BraTS case files", "", NIFTI_FILTER)
        if files:
            self.choose_files(files)

    def choose_files(self, files: list[str]) -> None:
        """Files the user picked: a whole BraTS case's files go to the path field; files with
        other names (or an incomplete BraTS set) get a sequence each, guessed, in the table."""
        from napari_acs.io import BratsInputError, find_case_files

        try:
            find_case_files(files)
        except BratsInputError:
            self.path.set_text("")
            self.sequences.set_files(files)
            self.sequences.show()
            self.open_button.setText(OPEN_ASSIGNED_TEXT)
            self.message.show_message(ASSIGN_HINT)
            return
        self._clear_sequences()
        self.path.set_text(";".join(files))

    def _clear_sequences(self) -> None:
        self.sequences.set_files([])
        self.sequences.hide()
        self.open_button.setText(OPEN_TEXT)

    def open_sample(self) -> None:
        """Open the shipped synthetic sample case."""
        from napari_acs.io.sample import sample_case_path

        try:
            self.path.set_text(str(sample_case_path()))
        except FileNotFoundError as exc:
            self.message.show_message(error_text(exc), "error")
            return
        self.open_case()

    def open_case(self, path: str | None = None) -> None:
        """Load ``path`` (default: the path field) in a worker, then add its layers."""
        if path is not None:
            self.path.set_text(path)
        if self.sequences.paths and not self.path.text:
            self._open_assigned()
            return
        paths = [str(p) for p in self.path.paths()]
        if not paths:
            self.message.show_message("Choose a case folder, or the case's NIfTI files, first.", "warning")
            return
        self._start(lambda progress, cancel: _load(paths, progress, cancel),
                    f"Reading {paths[0] if len(paths) == 1 else f'{len(paths)} files'}…")

    def _open_assigned(self) -> None:
        """Load the files of the sequence table with the sequences chosen there."""
        from napari_acs.io import BratsInputError
        from napari_acs.io.sequences import assign_sequences

        try:
            files = assign_sequences(self.sequences.choices())
        except BratsInputError as exc:
            self.message.show_message(error_text(exc), "error")
            return
        reference = self.sequences.reference_sequence()
        self._start(lambda progress, cancel: _load_assigned(files, reference, progress, cancel),
                    f"Reading {len(files)} files (preparing them on {SEQUENCE_LABELS[reference]} if they need it)…")

    def _start(self, job: Any, message: str) -> None:
        self._set_busy(True)
        self.message.show_message(message)
        self.progress.setValue(0)
        self.runner.start(job)

    def cancel(self) -> None:
        """Stop the running load or preparation: nothing is opened or written."""
        if self.runner.busy:
            self.message.show_message("Cancelling…")
            self.runner.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until the job has stopped (scripts and tests)."""
        return self.runner.wait(timeout)

    def _set_busy(self, busy: bool) -> None:
        for button in (self.open_button, self.sample_button, self.files_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _show_case(self, case: Any, prepared: Any | None = None) -> None:
        """Add a case's layers (``prepared``: its PreparedExam, kept in the layers' metadata)."""
        from napari.layers import Layer

        layers = [self.viewer.add_layer(Layer.create(*data)) for data in case_layer_data(case, prepared)]
        self.case = case
        self.viewer.reset_view()
        if case.label is not None:  # open on the axial slice with the most tumour
            seg = layers[-1]
            z = int(np.argmax((np.asarray(seg.data) > 0).sum(axis=(1, 2))))
            self.viewer.dims.set_point(0, z * seg.scale[0] + seg.translate[0])
        self.viewer.layers.selection.active = next(
            (layer for layer in layers if layer.visible and layer.metadata.get("modality")), layers[0])
        text, concerns = case_summary(case), getattr(case, "missing", ())
        if prepared is not None:
            text, concerns = f"{text} {prepared_summary(prepared)}", (*concerns, *prepared.warnings)
        self.message.show_message(text, "warning" if concerns else "success")
        self.legend.setVisible(case.label is not None)
