"""The Cohort browser dock widget (issue 17) in a real napari viewer under Xvfb.

A 12-case synthetic cohort of small cases (48 x 48 x 40 voxels) on disk, the shipped demo
model, real workers: open (no volume read, even for 200 cases), Next / Previous replace the
layers, Segment all with Cancel after the first case, the state in a new viewer, the
uncertainty layer, a correction accepted, and fine-tuning on it whose checkpoint becomes
the browser's model. Screenshots of the docked browser at 1920 x 1080 go to ``screenshots_dir``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Image, Labels
from napari.utils.key_bindings import KeyBinding

from napari_acs._napari._layers import from_display
from napari_acs._napari._widget_cohort import NEXT_KEY, PREVIOUS_KEY
from napari_acs.models.select import demo_checkpoint_path
from napari_acs.synthetic import make_cohort

SMALL = (48, 48, 40)
SCREEN = (1920, 1080)
N_CASES = 12
#: Generous limits for a loaded 2-core machine (never asserted as timings).
WAIT_MS = 180_000


@pytest.fixture(scope="module")
def base_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base") / "cohort"
    make_cohort(root, N_CASES, shape=SMALL, workers=1, seed=17, mgmt_csv=False)
    return root


@pytest.fixture()
def cohort(base_cohort: Path, tmp_path: Path) -> Path:
    """A fresh copy of the 12-case cohort (its review state starts empty)."""
    return Path(shutil.copytree(base_cohort, tmp_path / "cohort"))


def browser(viewer, qtbot, folder: Path | None = None):
    _, widget = viewer.window.add_plugin_dock_widget("napari-acs", "Cohort browser")
    qtbot.waitUntil(lambda: widget.choice.ready(), timeout=WAIT_MS)
    if folder is not None:
        assert widget.open_cohort(folder), widget.message.text()
    return widget


def shown_ids(viewer) -> set[str]:
    return {layer.name.split(" ")[0] for layer in viewer.layers}


def wait_shown(widget, qtbot, case_id: str) -> None:
    qtbot.waitUntil(lambda: widget.current_id == case_id and not widget.loader.busy, timeout=WAIT_MS)


def statuses(widget) -> dict[str, str]:
    return {case_id: widget.table.status(case_id) for case_id in widget.table.case_ids()}


def shoot(viewer, qtbot, widget, path: Path) -> np.ndarray:
    """The main window at 1920 x 1080 with the browser docked, saved to ``path``."""
    viewer.window.show()
    viewer.window.resize(*SCREEN)
    qtbot.waitExposed(viewer.window._qt_window)
    qtbot.wait(400)
    return viewer.screenshot(str(path), canvas_only=False)


class NiftiOpens:
    """Counts NIfTI files opened while :attr:`on` (an audit hook: Python has no way to remove one,
    so it stays installed, inert, after the test)."""

    def __init__(self) -> None:
        self.on = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.on and event == "open" and isinstance(args[0], (str, Path)) and ".nii" in str(args[0]):
            self.paths.append(str(args[0]))


# ---------------------------------------------------------------------------- opening


def test_a_cohort_of_200_cases_opens_without_reading_a_volume(make_napari_viewer, qtbot, base_cohort: Path,
                                                               tmp_path: Path) -> None:
    one = base_cohort / "BraTS2021_00000"
    root = tmp_path / "big"
    for index in range(200):  # 200 cases: the same small files linked under new BraTS ids
        case_id = f"BraTS2021_{1000 + index:05d}"
        (root / case_id).mkdir(parents=True)
        for file in one.iterdir():
            (root / case_id / file.name.replace("BraTS2021_00000", case_id)).symlink_to(file)
    viewer = make_napari_viewer()
    widget = browser(viewer, qtbot)
    opens = NiftiOpens()
    opens.on = True
    assert widget.open_cohort(root), widget.message.text()
    opens.on = False
    assert opens.paths == []  # names only: no NIfTI file was opened
    assert widget.table.rowCount() == 200 and len(viewer.layers) == 0
    assert set(statuses(widget).values()) == {"new"}
    assert "200 cases" in widget.summary.text()
    opens.on = True  # the hook does see a case being read
    widget.step(1)
    wait_shown(widget, qtbot, widget.table.case_ids()[0])
    opens.on = False
    assert any(p.endswith("_flair.nii.gz") for p in opens.paths)


def test_a_missing_folder_is_one_line_naming_it(make_napari_viewer, qtbot, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    widget = browser(viewer, qtbot)
    assert not widget.open_cohort(tmp_path / "nowhere")
    assert widget.message.level == "error" and str(tmp_path / "nowhere") in widget.message.text()
    assert "\n" not in widget.message.text()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not widget.open_cohort(empty)
    assert "no BraTS case found" in widget.message.text()


# ---------------------------------------------------------------------------- the loop


def test_next_previous_replace_layers_segment_all_cancels_and_state_persists(
    make_napari_viewer, qtbot, cohort: Path, screenshots_dir: Path
) -> None:
    viewer = make_napari_viewer()
    widget = browser(viewer, qtbot, cohort)
    ids = widget.table.case_ids()
    assert len(ids) == N_CASES and ids == sorted(ids)  # nothing scored yet: folder order
    assert widget.next_button.toolTip().endswith(f"({NEXT_KEY} in the viewer)")
    assert PREVIOUS_KEY in widget.previous_button.toolTip()

    viewer.keymap[KeyBinding.from_str(NEXT_KEY)](viewer)  # the keyboard shortcut
    wait_shown(widget, qtbot, ids[0])
    first = {layer.name for layer in viewer.layers}
    assert first == {f"{ids[0]} {s}" for s in ("T1", "T1ce", "T2", "FLAIR", "seg")}
    reference = viewer.layers[f"{ids[0]} seg"]
    assert reference.contour > 0  # the reference as outlines: never blended with a prediction
    widget.next_button.click()
    wait_shown(widget, qtbot, ids[1])
    assert shown_ids(viewer) == {ids[1]} and len(viewer.layers) == 5  # replaced, not accumulated
    viewer.keymap[KeyBinding.from_str(PREVIOUS_KEY)](viewer)
    wait_shown(widget, qtbot, ids[0])
    assert shown_ids(viewer) == {ids[0]} and len(viewer.layers) == 5

    posted = []

    def cancel_after_the_first(entry) -> None:
        posted.append(entry.case_id)
        widget.panel.cancel()

    widget.panel.runner.posted.connect(cancel_after_the_first)
    assert not widget.tta.isChecked()  # off by default
    widget.segment_all(device="cpu")
    assert widget.wait(WAIT_MS / 1000)
    assert posted and posted[0] == ids[0]
    done = statuses(widget)
    assert [i for i in ids if done[i] == "segmented"] == posted[: len(posted)] and len(posted) <= 2
    assert sum(s == "new" for s in done.values()) == N_CASES - len(posted)
    assert widget.table.case_ids()[: len(posted)] == posted  # scored first: review first
    assert "Cancelled" in widget.panel.message.text()
    # the shown case was segmented: its prediction and uncertainty replaced its layers
    wait_shown(widget, qtbot, ids[0])
    qtbot.waitUntil(lambda: widget.prediction_layer() is not None, timeout=WAIT_MS)
    assert shown_ids(viewer) == {ids[0]}
    shoot(viewer, qtbot, widget, screenshots_dir / "cohort_browser_segment_all.png")
    manifest = json.loads((cohort / ".napari-acs" / "review.json").read_text())
    assert {i for i, r in manifest["cases"].items() if r["status"] == "segmented"} == set(posted)
    viewer.close()

    again = make_napari_viewer()  # napari closed and opened again on the same folder
    widget2 = browser(again, qtbot, cohort)
    assert statuses(widget2) == done
    assert widget2.table.case_ids()[: len(posted)] == posted


def test_uncertainty_accept_a_correction_and_fine_tune_on_it(
    make_napari_viewer, qtbot, cohort: Path, screenshots_dir: Path
) -> None:
    assert demo_checkpoint_path().is_file()
    viewer = make_napari_viewer()
    widget = browser(viewer, qtbot, cohort)
    assert widget.choice.spec().kind == "demo"
    widget.segment_all(device="cpu")
    assert widget.wait(WAIT_MS / 1000)
    done = statuses(widget)
    assert set(done.values()) == {"segmented"}, done
    scores = [widget.review.entry(i).score for i in widget.table.case_ids()]
    assert scores == sorted(scores, reverse=True)  # review first: most uncertain on top
    assert all(0.0 <= s <= 1.0 for s in scores)

    widget.step(1)  # the most uncertain case
    case_id = widget.table.case_ids()[0]
    wait_shown(widget, qtbot, case_id)
    uncertainty = widget.uncertainty_layer()
    assert isinstance(uncertainty, Image) and uncertainty.visible
    assert uncertainty.blending == "additive" and uncertainty.colormap.name == "inferno"
    assert tuple(uncertainty.contrast_limits) == (0.0, 1.0)
    values = np.asarray(uncertainty.data)
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0.0
    widget.show_uncertainty.setChecked(False)  # toggled off, and on again
    assert not uncertainty.visible
    widget.show_uncertainty.setChecked(True)
    prediction = widget.prediction_layer()
    assert isinstance(prediction, Labels) and viewer.layers.selection.active is prediction
    reference = viewer.layers[f"{case_id} seg"]
    assert reference.contour > 0 and prediction.contour == 0 and prediction.opacity < reference.opacity
    names = [layer.name for layer in viewer.layers]  # bottom to top: images, uncertainty, reference, prediction
    assert names[-3:] == [f"{case_id} uncertainty", f"{case_id} seg", f"{case_id} prediction"]
    shoot(viewer, qtbot, widget, screenshots_dir / "cohort_browser.png")

    # the reader paints enhancing tumour (4) into a block of the prediction, then accepts it
    data = np.array(prediction.data)
    z = data.shape[0] // 2
    block = (slice(z - 2, z + 2), slice(18, 26), slice(18, 26))
    changed = int(np.count_nonzero(data[block] != 4))
    data[block] = 4
    prediction.data = data
    assert widget.has_unaccepted_edits()
    widget.step(1)  # moving on with edits not accepted: pointed out, nothing moves
    assert widget.current_id == case_id and widget.message.level == "warning"
    widget.accept_button.click()
    qtbot.waitUntil(lambda: not widget.saver.busy and widget.table.status(case_id) == "corrected", timeout=WAIT_MS)
    assert not widget.has_unaccepted_edits()
    record = json.loads((cohort / ".napari-acs" / "review.json").read_text())["cases"][case_id]
    assert record["status"] == "corrected" and record["corrected_voxels"] == changed
    saved = widget.review.accepted(case_id)
    np.testing.assert_array_equal(saved, from_display(data))

    # refused corrections: a one-line message, nothing written
    bad = np.array(prediction.data)
    bad[z, 0, 0] = 9
    prediction.data = bad
    widget.accept()
    qtbot.waitUntil(lambda: not widget.saver.busy, timeout=WAIT_MS)
    assert widget.message.level == "error" and case_id in widget.message.text()
    assert "\n" not in widget.message.text()
    np.testing.assert_array_equal(widget.review.accepted(case_id), from_display(data))  # unchanged
    prediction.data = data

    # fine-tune on the correction, tiny budget; the checkpoint becomes the browser's model
    widget.epochs.setValue(1)
    widget.steps.setValue(2)
    widget.patch.setValue(32)
    assert widget.init_checkpoint() == demo_checkpoint_path()
    widget.finetune(device="cpu")
    assert widget.wait(WAIT_MS / 1000)
    checkpoint = widget.monitor.checkpoint
    assert checkpoint is not None and checkpoint.is_file(), widget.train_panel.message.text()
    assert checkpoint.parent.parent == cohort / ".napari-acs" / "finetune"
    assert len(widget.monitor.loss_plot.series["loss per step"].points) == 2
    spec = widget.choice.spec()
    assert spec.kind == "checkpoint" and spec.checkpoint == checkpoint
    assert widget.redo.isChecked() and widget.monitor.use_button.isEnabled()
    shoot(viewer, qtbot, widget, screenshots_dir / "cohort_browser_finetune.png")

    # Segment all again with the new model (cancelled after the first case): recorded with it
    posted = []
    widget.panel.runner.posted.connect(lambda entry: (posted.append(entry), widget.panel.cancel()))
    widget.segment_all(device="cpu")
    assert widget.wait(WAIT_MS / 1000)
    assert posted and posted[0].record["model"] == str(checkpoint)
    assert widget.review.entry(case_id).status == "corrected"  # a correction is never undone by a new run
