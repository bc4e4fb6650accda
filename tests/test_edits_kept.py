"""Edits are never lost (issue 17): a re-run keeps an edited prediction, the volumes and Dice
table follows the layer's data (paint, fill, undo, redo), files derived from a case never
break loading it, and the reference is drawn as outlines over the filled prediction.

Real NIfTI cases, a real napari viewer under Xvfb, the real Segment widget and model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_acs._napari._layers import REFERENCE_CONTOUR, from_display, reference_layer
from napari_acs.io import BratsInputError, find_cases, load_case, save_segmentation
from napari_acs.metrics import brats_metrics, volumes_ml
from tests.nifti_cases import write_case, write_volume
from tests.test_widgets import dock, shoot

#: 2 mm voxels (8 mm^3): a few hundred painted voxels move the volumes by whole tenths of a mL.
AFFINE_2MM = np.diag([-2.0, -2.0, 2.0, 1.0])
SMALL = (32, 32, 24)


# ---------------------------------------------------------------------------- loading


def derived_names(case_id: str) -> list[str]:
    """Names a user or the plugin gives files derived from a case, saved in its folder."""
    return ["edited_seg.nii.gz", f"{case_id}_corrected_seg.nii.gz", f"{case_id}_edited-seg.nii.gz",
            f"{case_id}_uncertainty.nii.gz", f"{case_id}_probabilities.nii.gz",
            f"{case_id}_seg_napari-acs.nii.gz", f"{case_id}_prediction.nii.gz", "corrected-seg.nii"]


@pytest.mark.parametrize("convention", ["brats2021", "brats2023"])
def test_derived_files_in_the_case_folder_do_not_break_loading(tmp_path: Path, convention: str) -> None:
    case_id = "BraTS-GLI-00007-000" if convention == "brats2023" else "BraTS2021_00007"
    files = write_case(tmp_path / "case", case_id=case_id, convention=convention)
    edited = np.asarray(load_case(files["t1" if convention == "brats2021" else "t1n"]).label).copy()
    edited[edited > 0] = 1  # a correction: every tumour voxel made NCR
    original = load_case(tmp_path / "case")
    for name in derived_names(case_id):
        write_volume(tmp_path / "case" / name, original.source.to_source(edited), original.source.affine)

    case = load_case(tmp_path / "case")
    assert case.case_id == case_id and case.files == files  # the reference is the file named <id>_seg
    np.testing.assert_array_equal(case.label, original.label)
    assert find_cases(tmp_path) == [tmp_path / "case"]


def test_two_real_cases_in_one_folder_are_still_refused(tmp_path: Path) -> None:
    write_case(tmp_path, case_id="a")
    write_case(tmp_path, case_id="b", seg=False)
    (tmp_path / "edited_seg.nii.gz").write_bytes((tmp_path / "a_seg.nii.gz").read_bytes())
    with pytest.raises(BratsInputError, match=r"holds files of 2 cases \(a, b\)"):
        load_case(tmp_path)
    assert load_case(tmp_path / "a_t2.nii.gz").case_id == "a"  # one of its files opens it


def test_segmentations_alone_are_not_a_case(tmp_path: Path) -> None:
    files = write_case(tmp_path / "src")
    shutil.copy(files["seg"], tmp_path / "edited_seg.nii.gz")
    with pytest.raises(BratsInputError, match=r"missing modality t1, t1ce, t2, flair \(expected file edited_t1"):
        load_case(tmp_path)


# ---------------------------------------------------------------------------- the Segment widget


def write_tumour(path: Path, shape: tuple[int, int, int] = SMALL) -> Path:
    """A reference segmentation (BraTS 2021 labels) of nested spheres: NCR core, ET rim, ED around."""
    radius = np.sqrt(sum((g - (s - 1) / 2) ** 2 for g, s in zip(np.indices(shape, dtype=float), shape)))
    labels = np.select([radius <= 3, radius <= 5, radius <= 8], [1, 4, 2], 0).astype(np.uint8)
    return write_volume(path, labels, AFFINE_2MM)


def table_volumes(widget) -> list[str]:
    return [widget.table.value(region, "mL") for region in ("WT", "TC", "ET")]


def expected_volumes(layer, case) -> list[str]:
    """The volumes (mL) of a layer's current labels, as the table formats them."""
    volumes = volumes_ml(from_display(np.asarray(layer.data)), case.spacing, case.convention)
    return [f"{volumes[region]:.1f}" for region in ("WT", "TC", "ET")]


def test_rerun_keeps_edits_and_the_table_follows_every_edit(
    make_napari_viewer, qtbot, tmp_path: Path, screenshots_dir: Path
) -> None:
    folder = tmp_path / "case01"
    files = write_case(folder, affine=AFFINE_2MM, shape=SMALL)
    write_tumour(files["seg"])
    viewer = make_napari_viewer()
    *_, reference = viewer.open(str(folder), plugin="napari-acs")
    case = reference.metadata["napari_acs"]["case"]
    assert reference.contour == 0  # filled while it is shown alone
    widget = dock(viewer, "Segment")
    widget.choice.backend.wait(120)
    widget.run(device="cpu")
    assert widget.wait(120), widget.message.text()
    layer = viewer.layers["case01 prediction"]
    # under the filled prediction the reference is outlines: they never blend where they overlap
    assert layer.contour == 0 and layer.opacity < 1.0
    assert reference.contour == REFERENCE_CONTOUR >= 1 and reference.opacity == 1.0
    run_volumes = expected_volumes(layer, case)
    assert table_volumes(widget) == run_volumes

    # paint (a block of 6 x 6 x 6 voxels of ED: 1.7 mL), then undo and redo: the table follows
    block = tuple(np.indices((6, 6, 6)).reshape(3, -1) + np.array([[8], [12], [12]]))
    layer.data_setitem(block, 2)
    painted = expected_volumes(layer, case)
    assert painted != run_volumes
    qtbot.waitUntil(lambda: table_volumes(widget) == painted, timeout=10_000)
    layer.undo()
    qtbot.waitUntil(lambda: table_volumes(widget) == run_volumes, timeout=10_000)
    layer.redo()
    qtbot.waitUntil(lambda: table_volumes(widget) == painted, timeout=10_000)
    layer.brush_size = 9  # and napari's brush
    layer.paint((14, 4, 4), 4)
    brushed = expected_volumes(layer, case)
    assert brushed != painted
    qtbot.waitUntil(lambda: table_volumes(widget) == brushed, timeout=10_000)
    # an edit of the reference moves the Dice
    before = widget.table.value("WT", "Dice")
    reference.data_setitem(block, 0)
    dice = brats_metrics(from_display(np.asarray(layer.data)), from_display(np.asarray(reference.data)),
                         case.spacing, case.convention)["WT"]["dice"]
    assert f"{dice:.3f}" != before
    qtbot.waitUntil(lambda: widget.table.value("WT", "Dice") == f"{dice:.3f}", timeout=10_000)
    edited = np.array(layer.data, copy=True)

    # Run again: the edited layer is kept (renamed) and the new labels go to a new layer
    widget.run(device="cpu")
    assert widget.wait(120), widget.message.text()
    kept = viewer.layers["case01 prediction (edited)"]
    assert kept is layer
    np.testing.assert_array_equal(np.asarray(kept.data), edited)
    assert "kept in the layer 'case01 prediction (edited)'" in widget.message.text()
    new = viewer.layers["case01 prediction"]
    np.testing.assert_array_equal(from_display(np.asarray(new.data)), widget.result.labels)
    assert table_volumes(widget) == run_volumes  # the new run's numbers (the same model: the same labels)
    assert reference_layer(viewer, case).name == "case01 seg"  # never the kept edits
    assert "case01 seg" in widget.case_label.text()

    # a run over an unedited prediction (an undo back to the run's labels is no edit) replaces it
    new.data_setitem(block, 1)
    new.undo()
    widget.run(device="cpu")
    assert widget.wait(120), widget.message.text()
    assert sorted(lay.name for lay in viewer.layers if "prediction" in lay.name) == \
        ["case01 prediction", "case01 prediction (edited)"]
    assert "kept" not in widget.message.text()

    # what the plugin and the user save beside the case never stops it from opening
    assert widget.save(widget.default_save_path()) == folder / "case01_prediction.nii.gz"
    save_segmentation(from_display(np.asarray(kept.data)), case, folder / "case01_corrected_seg.nii.gz")
    save_segmentation(from_display(np.asarray(kept.data)), case, folder / "edited_seg.nii.gz")
    assert load_case(folder).files == case.files

    # the screenshot: the edited labels (filled) over the reference (outlines)
    viewer.layers.selection.active = kept
    new.visible = False
    viewer.dims.set_point(0, 10 * kept.scale[0] + kept.translate[0])
    shoot(viewer, qtbot, screenshots_dir / "edits_kept.png")

