"""Load BraTS case: a case folder or its files -> image + reference layers, problems as text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_acs._napari._layers import DEFAULT_VISIBLE, MODALITY_NAMES, case_layer_data
from napari_acs._napari._qt import MessageLabel, PathEdit, error_text
from napari_acs._napari._results import RegionLegend
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


def case_summary(case: Any) -> str:
    """One line a radiologist can check: id, grid, voxel size, what was found."""
    shape = "×".join(str(s) for s in case.shape)
    spacing = "×".join(f"{s:.2f}" for s in case.spacing)
    seg = "with its reference segmentation" if case.label is not None else "no reference segmentation"
    names = {"brats2021": "BraTS 2021", "brats2023": "BraTS 2023"}
    return (
        f"Opened {case.case_id}: T1, T1ce, T2, FLAIR {shape} voxels of {spacing} mm, "
        f"{seg} ({names.get(case.convention, case.convention)} labels)."
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
        self.files_button.setToolTip("Pick the case's NIfTI files (T1, T1ce, T2, FLAIR, optional seg)")
        self.files_button.clicked.connect(self._pick_files)
        self.open_button = QPushButton("Open case")
        self.open_button.clicked.connect(lambda: self.open_case())
        self.sample_button = QPushButton("Open sample case")
        self.sample_button.setToolTip("The synthetic BraTS-like case shipped with napari-acs")
        self.sample_button.clicked.connect(self.open_sample)
        self.message = MessageLabel()
        self.legend = RegionLegend()
        self.legend.hide()

        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(self.files_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.sample_button)
        layout = QVBoxLayout(self)
        hint = QLabel(
            "A BraTS case folder, or its files:<br>"
            "<tt>&lt;id&gt;_t1, _t1ce, _t2, _flair</tt> [<tt>_seg</tt>] <tt>.nii.gz</tt> (BraTS 2021) or<br>"
            "<tt>&lt;id&gt;-t1n, -t1c, -t2w, -t2f</tt> [<tt>-seg</tt>] <tt>.nii.gz</tt> (BraTS 2023)"
        )
        hint.setWordWrap(True)
        layout.addWidget(hint)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        layout.addWidget(self.legend)
        layout.addStretch(1)
        self.setMinimumWidth(380)

        install_window_drag(self.viewer)  # right-drag: window / level, as in radiology viewers
        self.runner = TaskRunner(self)
        self.runner.succeeded.connect(self._show_case)
        self.runner.failed.connect(lambda exc: self.message.show_message(error_text(exc), "error"))
        self.runner.stopped.connect(lambda: self._set_busy(False))

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "BraTS case files", "", NIFTI_FILTER)
        if files:
            self.path.set_text(";".join(files))

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
        paths = [str(p) for p in self.path.paths()]
        if not paths:
            self.message.show_message("Choose a case folder, or the case's NIfTI files, first.", "warning")
            return
        self._set_busy(True)
        self.message.show_message(f"Reading {paths[0] if len(paths) == 1 else f'{len(paths)} files'}…")
        self.runner.start(lambda progress, cancel: _load(paths, progress, cancel))

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
        self.viewer.layers.selection.active = layers[MODALITY_NAMES.index(DEFAULT_VISIBLE)]
        self.message.show_message(case_summary(case), "success")
        self.legend.setVisible(case.label is not None)
