"""The Load widget prepares a raw exam as BraTS does, for the Segment widget (issue 21 point 3).

A raw-exam-like input (:func:`test_prepare.write_raw_exam`: a synthetic head with skull, each
sequence moved by its own rigid motion onto its own grid, FLAIR in 5 mm slices, plain file
names) is assigned its sequences in the Load widget, as a user does (``choose_files``, the
sequence table), prepared in the background with progress (registration, 1 mm, deepbet),
shown on its 1 mm grid without the skull, segmented by the Segment widget with the shipped
demo model and saved on the reference file's grid. On the way: a FLAIR of another exam is
refused in the message line naming the file and the step, Cancel writes nothing and leaves
the widget usable, and opening the files again reuses the cached preparation. Real NIfTI
files, a real napari viewer under Xvfb, real deepbet and the real demo model.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from napari_acs._napari._layers import canonical_labels, display_translate, layer_case, layer_prepared
from napari_acs._napari._qt import dock_of
from napari_acs._napari._report import default_report_path
from test_prepare import _copy, write_raw_exam
from test_widgets import dock, shoot

NAMES = ["post_gd.nii.gz", "T1_MPRAGE.nii.gz", "AX_FLAIR_5mm.nii.gz"]  # write_raw_exam's files


def _progress_of(widget) -> list[tuple[float, str]]:
    """Every (fraction, message) the Load widget's jobs report from now on."""
    seen: list[tuple[float, str]] = []
    widget.runner.progressed.connect(lambda fraction, message: seen.append((fraction, message)))
    return seen


def test_load_widget_prepares_a_raw_exam_that_segment_segments(
    make_napari_viewer, qtbot, tmp_path: Path, screenshots_dir: Path
) -> None:
    folder = tmp_path / "exam"
    folder.mkdir()
    files = write_raw_exam(folder)["files"]  # {"t1c": post_gd, "t1n": T1_MPRAGE, "t2f": AX_FLAIR_5mm}
    prepared_dir = folder / ".napari-acs" / "prepared" / "post_gd"
    viewer = make_napari_viewer()
    load = dock(viewer, "Load BraTS case")
    # Opened at once, as a user would: its model backend loads (imports torch) while the exam is
    # prepared. (Not while scipy runs on another thread: scipy's array-API check reads a half-imported torch.)
    segment = dock(viewer, "Segment")
    progress = _progress_of(load)

    # A FLAIR of another exam (600 mm away): refused in the message line, naming file and step.
    other = _copy(files["t2f"], tmp_path, "flair_other_exam.nii.gz", shift_mm=600.0)
    load.choose_files([str(files["t1c"]), str(other)])
    load.open_case()
    assert load.wait(60)
    assert load.message.level == "error"
    assert load.message.text().startswith(f"{other}: field of view: does not overlap the reference t1c")
    assert not (folder / ".napari-acs").exists() and len(viewer.layers) == 0

    # The user picks the exam's files; the table shows each one's guessed sequence. The T1 is
    # left out (one registration less: a shorter test), the reference stays T1ce.
    load.choose_files([str(files["t1n"]), str(files["t2f"]), str(files["t1c"])])
    table = load.sequences
    assert not table.isHidden() and load.path.text == ""
    assert [combo.currentText() for combo in table.combos] == ["T1 (t1n)", "FLAIR (t2f)", "T1ce (t1c)"]
    assert table.reference_sequence() == "t1c"  # the default of napari-acs prepare --reference
    assert [table.reference.itemData(i) for i in range(table.reference.count())] == ["t1c", "t1n", "t2f"]
    table.set_role(0, None)
    assert [table.reference.itemData(i) for i in range(table.reference.count())] == ["t1c", "t2f"]
    assert load.open_button.text() == "Open (prepare if needed)" and "prepared as BraTS does" in load.message.text()

    # Cancel during registration: nothing written, nothing added, the widget usable again.
    progress.clear()
    load.open_case()
    assert load.cancel_button.isEnabled() and not load.open_button.isEnabled()
    qtbot.waitUntil(lambda: any(m.startswith("registering") for _, m in progress), timeout=60_000)
    load.cancel_button.click()
    assert load.wait(120)
    assert load.message.level == "warning" and load.message.text() == "Cancelled: nothing was opened or written."
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES) and len(viewer.layers) == 0
    assert load.open_button.isEnabled() and not load.cancel_button.isEnabled()

    # Open: prepared in the background, the progress bar up to completion.
    progress.clear()
    load.open_case()
    assert load.wait(600)
    fractions = [fraction for fraction, _ in progress]
    messages = [message for _, message in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert load.progress.value() == 1000 and load.progress.format() == "done"
    assert any(m.startswith("registering t2f to t1c: level 3/3") for m in messages)
    assert "extracting the brain (deepbet on t1c)" in messages and messages[-1] == "prepared post_gd"
    text = load.message.text()
    print(text)
    assert load.message.level == "warning"  # no T1, T2: zero-filled channels, and the message says so
    assert text.startswith("Opened post_gd: T1ce, FLAIR ") and "Missing T1, T2" in text
    for said in ("Prepared as BraTS does: registration: done; resampling: done; brain extraction: done",
                 "t2f -> t1c: rotation ", "mutual information ",
                 f"Kept in {prepared_dir}: opening these files again reuses it."):
        assert said in text
    assert [layer.name for layer in viewer.layers] == ["post_gd T1ce", "post_gd FLAIR"]
    image = viewer.layers["post_gd FLAIR"]
    prepared, case = layer_prepared(image), layer_case(image)
    assert prepared is not None and case is prepared.case and prepared.folder == prepared_dir
    for layer in viewer.layers:  # the 1 mm grid over the reference's field of view
        assert tuple(layer.scale) == (1.0, 1.0, 1.0) and layer.data.shape == case.shape[::-1]
        assert np.allclose(layer.translate, display_translate(case.affine, case.shape))
    assert not case.image[:, ~prepared.mask].any() and 1000 < prepared.brain_ml < 2200  # no skull

    # Segment runs on the prepared case like on any case; the prediction is saved on post_gd's grid.
    segment.choice.backend.wait(120)
    assert segment.choice.spec().kind == "demo"
    segment.run(device="cpu")
    assert segment.wait(600)
    assert segment.message.level == "warning", segment.message.text()  # not the green success line:
    assert "Missing T1, T2: their input channels are zero-filled" in segment.message.text()  # says what is missing
    prediction = segment.prediction_layer()
    assert prediction is not None and prediction.name == "post_gd prediction"
    labels = canonical_labels(prediction)
    tumour = labels > 0
    print(f"tumour {tumour.sum()} voxels ({100 * (tumour & prepared.mask).sum() / tumour.sum():.1f}% in the brain)")
    assert tumour.sum() > 5000 and (tumour & prepared.mask).sum() >= 0.99 * tumour.sum()
    z = int(np.argmax(tumour.sum(axis=(0, 1))))  # the axial slice with the most tumour
    viewer.dims.set_point(0, z * prediction.scale[0] + prediction.translate[0])
    shoot(viewer, qtbot, screenshots_dir / "prepare_segment.png")
    dock_of(load)[0].raise_()  # the Load widget's tab, its message
    qtbot.wait(200)
    viewer.screenshot(str(screenshots_dir / "prepare_load.png"), canvas_only=False)

    assert segment.default_save_path() == folder / "post_gd_prediction.nii.gz"
    case_id = layer_case(prediction).case_id  # the report, too, goes beside the exam, not into the cache
    assert default_report_path(segment.report_request()) == folder / f"{case_id}_report.pdf"
    saved = segment.save(tmp_path / "post_gd_prediction.nii.gz")
    assert saved is not None and "on the grid of post_gd.nii.gz" in segment.message.text()
    written, reference = nib.load(saved), nib.load(files["t1c"])
    assert written.shape == reference.shape and np.allclose(written.affine, reference.affine)
    on_reference = np.asarray(written.dataobj)
    ml_1mm = tumour.sum() / 1000.0
    ml_reference = (on_reference > 0).sum() * np.prod(reference.header.get_zooms()) / 1000.0
    assert abs(ml_reference - ml_1mm) < 0.1 * ml_1mm  # the same tumour on the reference grid
    viewer.layers.selection.active = prediction  # File > Save Selected Layers: the plugin's writer does the same
    via_writer = tmp_path / "saved_from_file_menu.nii.gz"
    viewer.layers.save(str(via_writer), selected=True, plugin="napari-acs")
    assert (np.asarray(nib.load(via_writer).dataobj) == on_reference).all()

    # Opening the same files again reuses the prepared case: nothing read or registered.
    progress.clear()
    load.open_case()
    assert load.wait(60)
    assert [message for _, message in progress] == [f"reusing the prepared case in {prepared_dir}"]
    assert "Reused the case prepared earlier from these unchanged files" in load.message.text()
    assert layer_prepared(viewer.layers[-1]).reused
