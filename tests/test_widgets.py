"""The dock widgets in a real napari viewer under Xvfb: Load, Segment, Classify MGMT, Fine-tune.

Real NIfTI cases (synthetic, small), real timm models, real thread workers. Screenshots
of the main window with each widget in use go to the ``screenshots_dir`` fixture's folder
(docs/screenshots/ with ``make screenshots``).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer

from napari_acs._napari._layers import from_display
from napari_acs.io import load_case
from napari_acs.io.labels import SUB_REGION_COLOURS
from napari_acs.io.sample import sample_case_path
from napari_acs.synthetic import make_cohort
from tests.nifti_cases import write_case

SMALL = (48, 48, 40)
WINDOW = (1500, 940)
#: Longest event-loop stall accepted while segmentation or training runs (s): lenient, so that a
#: slow or loaded machine passes (the issue's 200 ms goal is measured apart, on a quiet machine).
#: Measured with the window hidden: under Xvfb every repaint of a shown window is composited by
#: Mesa's software OpenGL (50-200 ms at this size on 2 busy cores), a cost of the test machine.
MAX_STALL_S = 1.0
#: ... and at most this share of the run itself, whatever the machine's speed: work done on the
#: GUI thread would stall it for most of the run.
MAX_STALL_SHARE = 0.5


# ---------------------------------------------------------------------------- helpers


def dock(viewer, name: str):
    """Open a napari-acs widget the way the Plugins menu does (with napari's viewer proxy)."""
    return viewer.window.add_plugin_dock_widget("napari-acs", name)[1]


def shoot(viewer, qtbot, path: Path) -> np.ndarray:
    """Show the window at a fixed size and save it to ``path`` (a PNG)."""
    viewer.window.show()
    viewer.window.resize(*WINDOW)
    qtbot.waitExposed(viewer.window._qt_window)
    viewer.reset_view()
    qtbot.wait(300)
    return viewer.screenshot(str(path), canvas_only=False)


def go_to_tumour(viewer, seg_layer) -> None:
    """Axial slice through the largest tumour cross-section."""
    z = int(np.argmax((np.asarray(seg_layer.data) > 0).sum(axis=(1, 2))))
    viewer.dims.set_point(0, z * seg_layer.scale[0])


class Heartbeat:
    """A 20 ms QTimer recording when it fires: gaps show how long the event loop stalled."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.ticks.append(time.perf_counter())

    def max_gap(self, before: float = float("inf"), after: float = float("-inf")) -> float:
        """Longest interval between ticks, among those that ended before ``before`` and after ``after``."""
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:]) if after < b < before]
        return max(gaps, default=0.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[Path]:
    """Three small synthetic BraTS cases (48 x 48 x 40 voxels) and their train_labels.csv."""
    return make_cohort(tmp_path_factory.mktemp("cohort"), 3, shape=SMALL, workers=1)


def open_case(viewer, folder: Path):
    """Open a case with the plugin's reader; returns its layers (T1, T1ce, T2, FLAIR, seg)."""
    return viewer.open(str(folder), plugin="napari-acs")


# ---------------------------------------------------------------------------- Load BraTS case


def test_load_widget_opens_a_case_and_explains_bad_input(
    make_napari_viewer, qtbot, tmp_path: Path, screenshots_dir: Path
) -> None:
    viewer = make_napari_viewer()
    widget = dock(viewer, "Load BraTS case")

    widget.open_sample()
    widget.runner.wait(60)
    case_id = load_case(sample_case_path()).case_id
    assert widget.message.level == "success" and case_id in widget.message.text()
    names = [f"{case_id} {m}" for m in ("T1", "T1ce", "T2", "FLAIR", "seg")]
    assert [layer.name for layer in viewer.layers] == names
    assert not widget.legend.isHidden()
    seg = viewer.layers[f"{case_id} seg"]
    assert (seg.data[int(round(viewer.dims.point[0] / seg.scale[0]))] > 0).any()  # opened on the tumour
    assert viewer.layers.selection.active.name == f"{case_id} FLAIR"
    shoot(viewer, qtbot, screenshots_dir / "load.png")
    rgb = viewer.screenshot(canvas_only=True)[..., :3].astype(int)
    assert ((rgb.max(axis=-1) - rgb.min(axis=-1)) > 60).sum() > 1000  # the coloured reference is drawn

    empty = tmp_path / "empty"
    empty.mkdir()
    widget.open_case(str(empty))
    widget.runner.wait(30)
    assert widget.message.level == "error"
    assert str(empty) in widget.message.text() and "not a BraTS case folder" in widget.message.text()

    files = write_case(tmp_path / "case01")
    files["t2"].unlink()
    widget.open_case(str(tmp_path / "case01"))
    widget.runner.wait(30)
    assert widget.message.level == "error" and "missing modality t2" in widget.message.text()

    (tmp_path / "case01" / "case01_t2.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    widget.open_case(str(tmp_path / "case01"))
    widget.runner.wait(30)
    assert "case01_t2.nii.gz" in widget.message.text() and "gzip" in widget.message.text()
    assert [layer.name for layer in viewer.layers] == names  # nothing partial was added

    files = write_case(tmp_path / "case02", case_id="case02", seg=False)
    widget.open_case(";".join(str(path) for path in files.values()))  # what "Files…" fills in
    widget.runner.wait(30)
    assert widget.message.level == "success" and "no reference segmentation" in widget.message.text()
    assert [layer.name for layer in viewer.layers][5:] == [f"case02 {m}" for m in ("T1", "T1ce", "T2", "FLAIR")]
    assert widget.legend.isHidden()


# ---------------------------------------------------------------------------- Segment


def test_segment_adds_coloured_labels_volumes_metrics_and_saves(
    make_napari_viewer, qtbot, cohort: list[Path], tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    *images, reference = open_case(viewer, cohort[0])
    widget = dock(viewer, "Segment")
    widget.choice.backend.wait(120)
    from napari_acs.models.select import demo_checkpoint_path

    spec = widget.choice.spec()
    if demo_checkpoint_path().is_file():  # the shipped demo model is the default
        assert spec.kind == "demo"
    else:
        assert (spec.kind, spec.name) == ("preset", "tf_efficientnet_lite0")
    if spec.kind == "preset":  # untrained: said plainly
        assert not widget.choice.warning.isHidden() and "Untrained" in widget.choice.warning.text()

    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.wait(180)
    assert widget.message.level in ("success", "warning"), widget.message.text()
    case = reference.metadata["napari_acs"]["case"]
    layer = viewer.layers[f"{case.case_id} prediction"]
    labels = from_display(np.asarray(layer.data))
    assert labels.shape == case.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    assert tuple(layer.colormap.map(2)) == pytest.approx(SUB_REGION_COLOURS["ED"])
    assert layer.metadata["napari_acs"]["case"] is case  # saved on the source grid by the writer too

    from napari_acs.metrics import brats_metrics, volumes_ml

    volumes = volumes_ml(labels, case.spacing, case.convention)
    metrics = brats_metrics(labels, case.label, case.spacing, case.convention)
    for region in ("WT", "TC", "ET"):
        assert widget.table.value(region, "mL") == f"{volumes[region]:.1f}"
        assert widget.table.value(region, "Dice") == f"{metrics[region]['dice']:.3f}"
        assert widget.table.value(region, "HD95 mm") == f"{metrics[region]['hd95']:.1f}"
        assert widget.table.value(region, "Ref. mL") == f"{metrics[region]['volume_ml_ref']:.1f}"
        assert widget.table.value(region, "Lesion Dice") == f"{metrics[region]['lesion_dice']:.3f}"
        assert widget.table.value(region, "Lesion HD95 mm") == f"{metrics[region]['lesion_hd95']:.1f}"
        cell = widget.table.item(("WT", "TC", "ET").index(region), 4)
        assert f"{metrics[region]['lesion_fp']} false positive" in cell.toolTip()

    # an edit with napari's tools updates the volumes
    data = np.asarray(layer.data)
    z, y, x = np.argwhere(data > 0)[0] if (data > 0).any() else (20, 24, 24)
    layer.brush_size = 9
    layer.paint((z, y, x), 0 if data[z, y, x] else 2)
    before = volumes["WT"]
    edited = volumes_ml(from_display(np.asarray(layer.data)), case.spacing, case.convention)
    assert edited["WT"] != before
    qtbot.waitUntil(lambda: widget.table.value("WT", "mL") == f"{edited['WT']:.1f}", timeout=10_000)

    # Save: NIfTI on the source grid; an existing file is never replaced silently
    out = tmp_path / "pred.nii.gz"
    assert widget.save(out) == out
    source = nib.load(case.files["seg"])
    written = nib.load(out)
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    assert np.array_equal(np.asarray(written.dataobj), case.source.to_source(from_display(np.asarray(layer.data))))
    stamp = out.stat().st_mtime_ns
    assert widget.save(out) is None
    assert widget.message.level == "error" and "exists" in widget.message.text()
    assert out.stat().st_mtime_ns == stamp


def test_cancel_stops_segmentation_inside_the_whole_brain_window(make_napari_viewer, qtbot) -> None:
    """Cancel during the sample case's only window ends the run before that window is done
    (the backend checks before every layer: test_inference counts the layers)."""
    viewer = make_napari_viewer()
    open_case(viewer, sample_case_path())
    widget = dock(viewer, "Segment")
    widget.choice.backend.wait(120)
    progress: list[tuple[float, str]] = []
    widget.runner.progressed.connect(lambda fraction, message: progress.append((fraction, message)))
    widget.run(device="cpu")

    def in_window() -> bool:  # the forward pass has begun
        return any(m == "window 1/1" and 0 < f < 1 for f, m in progress)

    qtbot.waitUntil(in_window, timeout=120_000)
    assert widget.runner.busy
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    assert widget.wait(120)  # generous: only "does not hang"; promptness is the window left unfinished
    assert max(f for f, m in progress if m.startswith("window")) < 1.0, progress[-3:]
    assert not any(m.startswith(("segmented", "measuring")) for _, m in progress)
    assert widget.message.level == "warning" and "Cancelled" in widget.message.text()
    assert not any(layer.name.endswith("prediction") for layer in viewer.layers)
    assert widget.run_button.isEnabled()


def test_bad_checkpoint_is_explained_in_the_widget(make_napari_viewer, qtbot, cohort: list[Path], tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    open_case(viewer, cohort[1])
    widget = dock(viewer, "Segment")
    widget.choice.backend.wait(120)
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    widget.choice.choose_checkpoint(bad)
    qtbot.waitUntil(lambda: widget.choice.warning.level == "error", timeout=30_000)
    assert str(bad) in widget.choice.warning.text()
    widget.run(device="cpu")
    assert widget.wait(60)
    assert widget.message.level == "error" and str(bad) in widget.message.text()


def test_segment_needs_a_case(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    widget.run()
    assert widget.message.level == "warning" and "Open a BraTS case" in widget.message.text()
    assert not widget.run_button.isEnabled()


@pytest.mark.slow
def test_run_segments_the_sample_case_without_freezing_the_gui(make_napari_viewer, qtbot, screenshots_dir: Path) -> None:
    """The full sample case (240 x 240 x 155) with the demo model if shipped, else an untrained one."""
    from napari_acs.models.checkpoint import load_checkpoint
    from napari_acs.models.select import demo_checkpoint_path

    viewer = make_napari_viewer()  # hidden while measuring: see MAX_STALL_S
    *_, reference = open_case(viewer, sample_case_path())
    widget = dock(viewer, "Segment")
    ortho = dock(viewer, "Orthogonal views")  # the result is mirrored there too
    qtbot.waitUntil(lambda: ortho.synced, timeout=60_000)
    widget.choice.backend.wait(120)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    shown: list[float] = []
    widget.runner.succeeded.connect(lambda result: shown.append(time.perf_counter()))  # after the layer is added
    gc.collect()  # not the collection of earlier tests' viewers (measured up to 400 ms) during the run
    beat = Heartbeat()
    beat.start()
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.wait(600)
    qtbot.waitUntil(lambda: ortho.synced, timeout=10_000)  # mirrored in the coronal and sagittal views
    qtbot.wait(300)  # the layer's deferred set-up steps (selection, paint-tool overlays)
    beat.stop()

    result = widget.result
    assert result is not None and shown, widget.message.text()
    compute_gap, display_gap = beat.max_gap(before=shown[0]), beat.max_gap(after=shown[0])
    print(f"\nheartbeat: longest stall while segmenting {compute_gap * 1000:.0f} ms; "
          f"while adding and mirroring the result layer {display_gap * 1000:.0f} ms; run {result.seconds:.1f} s")
    assert compute_gap < min(MAX_STALL_S, MAX_STALL_SHARE * result.seconds)
    assert display_gap < MAX_STALL_S
    prediction = viewer.layers[f"{result.case.case_id} prediction"]
    assert [m.name for m in ortho.models["coronal"].layers].count(prediction.name) == 1
    layer = viewer.layers[f"{result.case.case_id} prediction"]
    assert np.array_equal(from_display(np.asarray(layer.data)), result.labels)
    assert result.metrics is not None and set(result.volumes_ml) == {"WT", "TC", "ET"}
    if demo_checkpoint_path().is_file():
        card = load_checkpoint(demo_checkpoint_path())[1]["meta"]
        assert result.trained
        assert result.metrics["WT"]["dice"] >= card["heldout_dice"]["WT"] - 0.05
    viewer.layers.selection.active = layer
    reference.visible = False  # the prediction alone; the reference is a click away
    viewer.window.remove_dock_widget(ortho)  # the screenshot shows the Segment widget at full height
    go_to_tumour(viewer, reference)
    shoot(viewer, qtbot, screenshots_dir / "segment.png")


def test_headless_script_segments_and_reads_results(make_napari_viewer, cohort: list[Path]) -> None:
    """The README snippet: napari.Viewer(show=False), open, add the widget, run, read."""
    viewer = make_napari_viewer(show=False)  # what napari.Viewer(show=False) makes, cleaned up after
    viewer.open(str(cohort[2]), plugin="napari-acs")
    _, widget = viewer.window.add_plugin_dock_widget("napari-acs", "Segment")
    widget.run(device="cpu")
    assert widget.wait()
    volumes, metrics = widget.result.volumes_ml, widget.result.metrics
    labels = viewer.layers[f"{widget.result.case.case_id} prediction"].data
    assert set(volumes) == {"WT", "TC", "ET"} and 0 <= metrics["WT"]["dice"] <= 1
    assert labels.shape == viewer.layers[0].data.shape


# ---------------------------------------------------------------------------- Classify MGMT


@pytest.fixture(scope="module")
def classification_checkpoint(tmp_path_factory) -> Path:
    """A real (untrained) ACS classification checkpoint with the metadata fine-tuning writes."""
    from napari_acs.models.checkpoint import save_checkpoint
    from napari_acs.models.factory import create_model

    model = create_model("tf_efficientnet_lite0", task="classification")
    path = tmp_path_factory.mktemp("mgmt") / "mgmt.safetensors"
    return save_checkpoint(model, path, task="classification", input_size=[64, 64, 64],
                           model_card="Untrained test model: its probabilities mean nothing.")


def test_classify_mgmt_probability_and_label(
    make_napari_viewer, qtbot, classification_checkpoint: Path, screenshots_dir: Path
) -> None:
    from napari_acs.inference import classify
    from napari_acs.models.checkpoint import load_model

    viewer = make_napari_viewer()
    *_, reference = open_case(viewer, sample_case_path())
    widget = dock(viewer, "Classify MGMT")
    widget.choice.backend.wait(120)
    widget.run()
    assert widget.message.level == "warning" and "checkpoint" in widget.message.text()
    widget.choice.choose_checkpoint(classification_checkpoint)
    qtbot.waitUntil(lambda: "Untrained test model" in widget.choice.card.toPlainText(), timeout=30_000)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.wait(120)
    result = widget.result
    case = reference.metadata["napari_acs"]["case"]
    expected = classify(case, load_model(classification_checkpoint), device="cpu")
    assert result.probability == pytest.approx(expected, abs=1e-5)
    assert result.label == ("methylated" if result.probability >= 0.5 else "unmethylated")
    assert f"{result.probability:.2f}" in widget.answer.text() and result.label in widget.answer.text()
    go_to_tumour(viewer, reference)
    shoot(viewer, qtbot, screenshots_dir / "classify.png")


def test_classify_refuses_a_segmentation_checkpoint(make_napari_viewer, tmp_path: Path, cohort: list[Path]) -> None:
    from napari_acs.models.checkpoint import save_checkpoint
    from napari_acs.models.factory import create_model

    path = save_checkpoint(create_model("mobilenetv2_100", pretrained=False), tmp_path / "seg.safetensors")
    viewer = make_napari_viewer()
    open_case(viewer, cohort[0])
    widget = dock(viewer, "Classify MGMT")
    widget.choice.backend.wait(120)
    widget.choice.choose_checkpoint(path)
    widget.run()
    assert widget.wait(120)
    assert widget.message.level == "error" and "classification checkpoint" in widget.message.text()


# ---------------------------------------------------------------------------- Fine-tune


def test_finetune_draws_curves_stops_with_a_checkpoint_for_segment(
    make_napari_viewer, qtbot, cohort: list[Path], tmp_path: Path, screenshots_dir: Path
) -> None:
    viewer = make_napari_viewer()  # hidden while measuring: see MAX_STALL_S
    *_, reference = open_case(viewer, cohort[0])
    widget = dock(viewer, "Fine-tune")
    widget.backend.wait(120)
    widget.cohort.set_text(str(cohort[0].parent))
    widget.out_dir.set_text(str(tmp_path / "run"))
    widget.epochs.setValue(5)
    widget.patch.setValue(32)
    widget.steps.setValue(2)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    epochs: list[dict] = []
    widget.runner.posted.connect(lambda event: epochs.append(event) if event["event"] == "epoch" else None)
    beat = Heartbeat()
    beat.start()
    qtbot.mouseClick(widget.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(epochs) >= 2, timeout=300_000)
    qtbot.mouseClick(widget.stop_button, Qt.MouseButton.LeftButton)
    assert widget.wait(120)
    beat.stop()
    print(f"\nheartbeat: longest stall while fine-tuning {beat.max_gap() * 1000:.0f} ms")
    assert beat.max_gap() < min(MAX_STALL_S, MAX_STALL_SHARE * (beat.ticks[-1] - beat.ticks[0]))

    assert widget.checkpoint is not None and widget.checkpoint.is_file()
    assert widget.checkpoint.parent == tmp_path / "run"
    assert len(widget.loss_plot.series["train loss"].points) == len(epochs) >= 2
    assert len(widget.loss_plot.series["loss per step"].points) >= 4
    assert len(widget.val_plot.series["Dice mean"].points) == len(epochs)
    assert "stopped" in widget.log.toPlainText() and widget.use_button.isEnabled()
    go_to_tumour(viewer, reference)
    shoot(viewer, qtbot, screenshots_dir / "finetune.png")

    segment = widget.use_checkpoint()  # one click: the Segment widget gets the checkpoint
    qtbot.waitUntil(lambda: segment.choice.ready(), timeout=60_000)
    assert segment.choice.spec().kind == "checkpoint" and segment.choice.spec().checkpoint == widget.checkpoint
    qtbot.waitUntil(lambda: "Fine-tuned for" in segment.choice.card.toPlainText(), timeout=30_000)


def test_finetune_form_problems_are_shown(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    widget = dock(viewer, "Fine-tune")
    widget.backend.wait(120)
    widget.start()
    assert widget.message.level == "error" and "cohort" in widget.message.text()
    widget.cohort.set_text(str(tmp_path))
    widget.out_dir.set_text(str(tmp_path / "run"))
    widget.start()
    assert widget.wait(60)
    assert widget.message.level == "error" and str(tmp_path) in widget.message.text()
    assert "no BraTS case found" in widget.message.text()
