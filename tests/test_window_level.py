"""Window / level as radiology viewers do: presets from the brain's percentiles, width / level
fields, the right-drag (in the main canvas and in the orthogonal views), sequence layers.

The presets are checked on made-up volumes with known percentiles; the widget, the drag and
the views in a real napari viewer under Xvfb.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication

from napari_acs._napari._window import layer_presets, window_level_drag
from napari_acs.io.sample import sample_case_path
from napari_acs.io.window import (
    AUTO_BRAIN,
    FULL_RANGE,
    TUMOUR_CONTRAST,
    TUMOUR_PERCENTILES,
    Window,
    dragged,
    sequence_name,
    window_presets,
)
from tests.test_widgets import dock, open_case, shoot

#: A "brain" of the values 1..1000 (each once) in a zero background: its percentiles are known.
VALUES = np.arange(1, 1001, dtype=np.float32)


def made_up_volume() -> np.ndarray:
    volume = np.zeros((20, 20, 20), dtype=np.float32)
    inside = np.zeros(volume.shape, dtype=bool)
    inside[5:15, 5:15, 5:15] = True  # 1000 voxels
    volume[inside] = np.random.default_rng(0).permutation(VALUES)
    return volume


def percentile(q: float) -> float:
    """numpy's default (linear) percentile of 1..1000: 1 + q / 100 * 999."""
    return 1.0 + q / 100.0 * 999.0


# ---------------------------------------------------------------------------- presets


@pytest.mark.parametrize("sequence", ["FLAIR", "T1", "t1c", "t2w"])
def test_presets_are_the_brain_percentiles(sequence: str) -> None:
    presets = window_presets(made_up_volume(), sequence, step=1)
    assert presets[AUTO_BRAIN].limits == pytest.approx((percentile(0.5), percentile(99.5)))
    low, high = TUMOUR_PERCENTILES[sequence_name(sequence)]
    assert presets[TUMOUR_CONTRAST].limits == pytest.approx((percentile(low), percentile(high)))
    assert presets[FULL_RANGE].limits == pytest.approx((0.0, 1000.0))  # the background included
    # the tumour window is narrower than the brain's and, on FLAIR, T1ce and T2, in its upper part
    assert presets[TUMOUR_CONTRAST].width < presets[AUTO_BRAIN].width
    if sequence_name(sequence) != "T1":
        assert presets[TUMOUR_CONTRAST].level > presets[AUTO_BRAIN].level


def test_presets_of_odd_volumes() -> None:
    empty = window_presets(np.zeros((8, 8, 8)), "FLAIR")
    assert all(w.limits == (0.0, 1.0) for w in empty.values())
    constant = np.zeros((8, 8, 8))
    constant[2:6, 2:6, 2:6] = 700.0
    assert window_presets(constant, "T2", step=1)[AUTO_BRAIN].limits == pytest.approx((699.5, 700.5))
    unknown = window_presets(made_up_volume(), "DWI", step=1)[TUMOUR_CONTRAST]
    assert unknown.limits == pytest.approx((percentile(50.0), percentile(99.9)))
    noisy = made_up_volume()
    noisy[0, 0, 0] = np.nan  # NaN and inf are not intensities
    noisy[0, 0, 1] = np.inf
    assert window_presets(noisy, "T1", step=1)[FULL_RANGE].limits == pytest.approx((0.0, 1000.0))


def test_subsampled_presets_are_close_to_exact() -> None:
    """The default (every 2nd voxel per axis) on a noisy brain of a million voxels (a BraTS brain
    has about 1.5 million): within 1% of the window width."""
    rng = np.random.default_rng(1)
    volume = np.zeros((110, 110, 110), dtype=np.float32)
    volume[5:105, 5:105, 5:105] = rng.normal(800.0, 150.0, (100, 100, 100)).clip(1.0)
    exact, fast = window_presets(volume, "FLAIR", step=1), window_presets(volume, "FLAIR")
    for name in (AUTO_BRAIN, TUMOUR_CONTRAST):
        assert np.allclose(fast[name].limits, exact[name].limits, atol=0.01 * exact[name].width)


def test_window_width_level_and_limits() -> None:
    window = Window.from_limits(100.0, 900.0)
    assert (window.width, window.level) == (800.0, 500.0)
    assert window.limits == (100.0, 900.0)
    assert sequence_name("Flair") == "FLAIR" and sequence_name("t2f") == "FLAIR" and sequence_name("t1n") == "T1"
    assert sequence_name("t1gd") == "T1ce" and sequence_name("dwi") is None and sequence_name(None) is None


def test_drag_rule_horizontal_width_vertical_level() -> None:
    start = Window(400.0, 500.0)
    assert dragged(start, 0, 0, reference_width=1000) == start
    right, left = dragged(start, 120, 0, reference_width=1000), dragged(start, -120, 0, reference_width=1000)
    assert right.width > start.width > left.width and right.level == left.level == start.level
    assert right.width == pytest.approx(400.0 * math.exp(120 / 300))
    down, up = dragged(start, 0, 60, reference_width=1000), dragged(start, 0, -60, reference_width=1000)
    assert down.width == up.width == start.width
    assert down.level == pytest.approx(500.0 + 200.0) and up.level == pytest.approx(500.0 - 200.0)
    assert dragged(start, -1e5, 0, reference_width=1000).width == pytest.approx(1.0)  # never 0


# ---------------------------------------------------------------------------- napari


def sample_layers(viewer):
    layers = open_case(viewer, sample_case_path())
    return {layer.metadata.get("modality", "seg"): layer for layer in layers}


def test_sequence_layers_named_and_flair_shown_in_its_auto_window(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    layers = sample_layers(viewer)
    case = layers["FLAIR"].metadata["napari_acs"]["case"]
    assert [layers[name].name for name in ("T1", "T1ce", "T2", "FLAIR")] == [
        f"{case.case_id} {name}" for name in ("T1", "T1ce", "T2", "FLAIR")]
    assert [name for name in ("T1", "T1ce", "T2", "FLAIR") if layers[name].visible] == ["FLAIR"]
    for index, name in enumerate(("T1", "T1ce", "T2", "FLAIR")):
        expected = window_presets(case.image[index], name)
        presets = layer_presets(layers[name])
        assert layers[name].contrast_limits == pytest.approx(expected[AUTO_BRAIN].limits)
        assert presets[TUMOUR_CONTRAST].limits == pytest.approx(expected[TUMOUR_CONTRAST].limits)


def test_window_widget_presets_fields_and_sequences(make_napari_viewer, qtbot, screenshots_dir: Path) -> None:
    viewer = make_napari_viewer(show=True)
    layers = sample_layers(viewer)
    flair, t1ce = layers["FLAIR"], layers["T1ce"]
    widget = dock(viewer, "Window / level")
    # the shown image, not the seg (== : the widget sees napari's proxies of the layers)
    assert widget.layer == flair and "FLAIR" in widget.target_label.text()
    presets = layer_presets(flair)

    qtbot.mouseClick(widget.preset_buttons[TUMOUR_CONTRAST], Qt.MouseButton.LeftButton)
    assert flair.contrast_limits == pytest.approx(presets[TUMOUR_CONTRAST].limits)
    assert widget.width_field.value() == pytest.approx(presets[TUMOUR_CONTRAST].width, abs=0.01)
    assert widget.level_field.value() == pytest.approx(presets[TUMOUR_CONTRAST].level, abs=0.01)
    assert "50-99.9 percentiles (FLAIR)" in widget.preset_buttons[TUMOUR_CONTRAST].toolTip()

    # typing a width (Enter) keeps the level; the fields follow napari's own contrast slider
    level = widget.level_field.value()
    edit = widget.width_field.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, "300")
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert flair.contrast_limits == pytest.approx((level - 150.0, level + 150.0), abs=0.02)
    flair.contrast_limits = (100.0, 900.0)
    assert (widget.width_field.value(), widget.level_field.value()) == pytest.approx((800.0, 500.0))
    qtbot.mouseClick(widget.preset_buttons[AUTO_BRAIN], Qt.MouseButton.LeftButton)
    assert flair.contrast_limits == pytest.approx(presets[AUTO_BRAIN].limits)

    # one click shows another sequence (the others hidden) and makes it the one windowed
    qtbot.mouseClick(widget.sequence_buttons["T1ce"], Qt.MouseButton.LeftButton)
    assert t1ce.visible and not flair.visible and viewer.layers.selection.active is t1ce
    assert widget.layer == t1ce and widget.sequence_buttons["T1ce"].isChecked()
    qtbot.mouseClick(widget.preset_buttons[TUMOUR_CONTRAST], Qt.MouseButton.LeftButton)
    assert t1ce.contrast_limits == pytest.approx(layer_presets(t1ce)[TUMOUR_CONTRAST].limits)
    assert flair.contrast_limits == pytest.approx(presets[AUTO_BRAIN].limits)  # each keeps its own

    seg = layers["seg"]
    viewer.dims.set_point(0, int(np.argmax((np.asarray(seg.data) > 0).sum(axis=(1, 2)))) * seg.scale[0])
    seg.visible = False
    shoot(viewer, qtbot, screenshots_dir / "window_level_t1ce_tumour.png")
    seg.visible = True


def fake_event(kind: str, button: int, pos: tuple[float, float]):
    """A mouse event as napari's canvas hands it to drag callbacks: vispy's attributes (``pos`` in
    canvas pixels, x right, y down) and napari's (``position``, ``modifiers``...), in a wrapt proxy
    as the canvas wraps its events (napari's callback runners swap the proxied event of a drag
    in progress, ``__wrapped__``, for each new one). napari's own tests drive callbacks this way."""
    import wrapt

    event = SimpleNamespace(type=kind, button=button, buttons=[button], pos=np.array(pos, dtype=float),
                            position=(0.0, 0.0, 0.0), modifiers=[], is_dragging=kind == "mouse_move",
                            handled=False, dims_displayed=[1, 2], view_direction=None, up_direction=None)
    return wrapt.ObjectProxy(event)


def drag(viewer, button: int, start: tuple[float, float], end: tuple[float, float]) -> list:
    """Press, two moves and a release through napari's public callback runners, as the canvas calls them."""
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    middle = tuple((a + b) / 2 for a, b in zip(start, end))
    events = [fake_event("mouse_press", button, start), fake_event("mouse_move", button, middle),
              fake_event("mouse_move", button, end), fake_event("mouse_release", button, end)]
    mouse_press_callbacks(viewer, events[0])
    mouse_move_callbacks(viewer, events[1])
    mouse_move_callbacks(viewer, events[2])
    mouse_release_callbacks(viewer, events[3])
    return events


def test_right_drag_changes_width_and_level(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    layers = sample_layers(viewer)
    flair, seg = layers["FLAIR"], layers["seg"]
    dock(viewer, "Window / level")
    assert viewer.mouse_drag_callbacks.count(window_level_drag) == 1
    dock(viewer, "Load BraTS case")  # it installs the drag too: still once
    assert viewer.mouse_drag_callbacks.count(window_level_drag) == 1
    start = Window.from_limits(*flair.contrast_limits)
    reference = layer_presets(flair)[AUTO_BRAIN].width

    events = drag(viewer, 2, (200, 200), (260, 170))  # right 60 px, up 30 px
    now = Window.from_limits(*flair.contrast_limits)
    assert now.width == pytest.approx(start.width * math.exp(60 / 300))  # wider
    assert now.level == pytest.approx(start.level - 30 / 300 * reference)  # brighter
    assert all(e.handled for e in events[1:3])  # the moves are not also the camera's zoom

    flair.contrast_limits = start.limits
    drag(viewer, 1, (200, 200), (260, 170))  # the left button pans, as always
    assert flair.contrast_limits == pytest.approx(start.limits)
    viewer.layers.selection.active = seg
    seg.mode = "paint"  # napari's right-drag sizes the brush there: left alone
    drag(viewer, 2, (200, 200), (260, 170))
    assert flair.contrast_limits == pytest.approx(start.limits)
    seg.mode = "pan_zoom"  # a labels layer selected but not painting: the shown image is windowed
    drag(viewer, 2, (200, 200), (140, 260))  # left 60 px, down 60 px
    now = Window.from_limits(*flair.contrast_limits)
    assert now.width == pytest.approx(start.width * math.exp(-60 / 300))
    assert now.level == pytest.approx(start.level + 60 / 300 * reference)


def send_mouse(widget, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton, buttons: Qt.MouseButton) -> None:
    """A real Qt mouse event on ``widget`` (QTest's mouseMove carries no button, so moves are sent so)."""
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def test_right_drag_in_an_orthogonal_view_windows_all_views(
    make_napari_viewer, qtbot, screenshots_dir: Path
) -> None:
    viewer = make_napari_viewer(show=True)
    layers = sample_layers(viewer)
    flair = layers["FLAIR"]
    ortho = dock(viewer, "Orthogonal views")
    qtbot.waitUntil(lambda: ortho.synced, timeout=60_000)
    widget = dock(viewer, "Window / level")
    mirrors = [model.layers[flair.name] for model in ortho.models.values()]
    assert all(m.contrast_limits == pytest.approx(flair.contrast_limits) for m in mirrors)

    # a preset in the widget reaches the mirrors
    qtbot.mouseClick(widget.preset_buttons[TUMOUR_CONTRAST], Qt.MouseButton.LeftButton)
    assert all(m.contrast_limits == pytest.approx(layer_presets(flair)[TUMOUR_CONTRAST].limits) for m in mirrors)

    # a real right-drag on the coronal canvas (Qt events through vispy and napari): the main
    # viewer's FLAIR gets the new window, both mirrors follow, the coronal camera does not zoom
    coronal = ortho.models["coronal"]
    camera = coronal.scene.camera if hasattr(coronal, "scene") else coronal.camera  # napari >= 0.9: scene
    zoom = camera.zoom
    start = Window.from_limits(*flair.contrast_limits)
    canvas = ortho.qt_viewers["coronal"].canvas.native
    qtbot.waitExposed(canvas)
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    right, none = Qt.MouseButton.RightButton, Qt.MouseButton.NoButton
    send_mouse(canvas, QEvent.Type.MouseButtonPress, centre, right, right)
    for step in range(1, 6):
        send_mouse(canvas, QEvent.Type.MouseMove, centre + QPoint(12 * step, -8 * step), none, right)
        qtbot.wait(10)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, centre + QPoint(60, -40), right, none)
    now = Window.from_limits(*flair.contrast_limits)
    assert now.width == pytest.approx(start.width * math.exp(60 / 300), rel=0.02)
    assert now.level < start.level
    assert all(m.contrast_limits == pytest.approx(flair.contrast_limits) for m in mirrors)
    assert camera.zoom == pytest.approx(zoom)
    assert widget.width_field.value() == pytest.approx(now.width, abs=0.01)
    shoot(viewer, qtbot, screenshots_dir / "window_level_ortho.png")
