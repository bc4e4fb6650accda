"""Load BraTS case: a case folder or its files -> image + reference layers, problems as text.

Files with any names (a scanner's or PACS export) get a sequence each: the guess from the
name in a combo the user can change (:class:`~napari_acs._napari._sequence_table.SequenceTable`),
and the widget says which sequences are missing.
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
from napari_acs._napari._sequence_table import SequenceTable
from napari_acs._napari._window import install_window_drag
from napari_acs._napari._workers import StopsJobsWhenClosed, TaskRunner

if TYPE_CHECKING:
    import napari

NIFTI_FILTER = "NIfTI files (*.nii.gz *.nii)"


def _load(paths: list[str], progress: Any, cancel: Any) -> Any:
    """Worker job: read and validate the case (nibabel + numpy, no layers yet)."""
    from napari_acs.io import load_case

    progress(0.0, "reading NIfTI files")
    return load_case(paths[0] if len(paths) == 1 else paths)


def _load_assigned(files: dict, progress: Any, cancel: Any) -> Any:
    """Worker job: files with any names, each assigned a sequence by the user."""
    from napari_acs.io import load_case

    progress(0.0, "reading NIfTI files")
    return load_case(files=files)


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


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
        + (f" {_sentence(missing_warning(missing))}" if missing else "")
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
        self.open_button = QPushButton("Open case")
        self.open_button.clicked.connect(lambda: self.open_case())
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

        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(self.files_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
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
        layout.addWidget(self.default_reader)
        layout.addWidget(self.message)
        layout.addWidget(self.legend)
        layout.addStretch(1)

        install_window_drag(self.viewer)  # right-drag: window / level, as in radiology viewers
        self.runner = TaskRunner(self)
        self.runner.succeeded.connect(self._show_case)
        self.runner.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
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
            self.message.show_message("Check the sequence of each file (guessed from its name), then Open case.")
            return
        self._clear_sequences()
        self.path.set_text(";".join(files))

    def _clear_sequences(self) -> None:
        self.sequences.set_files([])
        self.sequences.hide()

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
        self._set_busy(True)
        self.message.show_message(f"Reading {paths[0] if len(paths) == 1 else f'{len(paths)} files'}…")
        self.runner.start(lambda progress, cancel: _load(paths, progress, cancel))

    def _open_assigned(self) -> None:
        """Load the files of the sequence table with the sequences chosen there."""
        from napari_acs.io import BratsInputError
        from napari_acs.io.sequences import assign_sequences

        try:
            files = assign_sequences(self.sequences.choices())
        except BratsInputError as exc:
            self.message.show_message(error_text(exc), "error")
            return
        self._set_busy(True)
        self.message.show_message(f"Reading {len(files)} files…")
        self.runner.start(lambda progress, cancel: _load_assigned(files, progress, cancel))

    def _set_busy(self, busy: bool) -> None:
        for button in (self.open_button, self.sample_button, self.files_button):
            button.setEnabled(not busy)

    def _show_case(self, case: Any) -> None:
        from napari.layers import Layer

        layers = [self.viewer.add_layer(Layer.create(*data)) for data in case_layer_data(case)]
        self.case = case
        self.viewer.reset_view()
        if case.label is not None:  # open on the axial slice with the most tumour
            seg = layers[-1]
            z = int(np.argmax((np.asarray(seg.data) > 0).sum(axis=(1, 2))))
            self.viewer.dims.set_point(0, z * seg.scale[0] + seg.translate[0])
        self.viewer.layers.selection.active = next(
            (layer for layer in layers if layer.visible and layer.metadata.get("modality")), layers[0])
        self.message.show_message(case_summary(case), "warning" if getattr(case, "missing", ()) else "success")
        self.legend.setVisible(case.label is not None)
