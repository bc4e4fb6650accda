"""Linked orthogonal views: real clicks on the vispy canvases under Xvfb, layer changes mirrored."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from pathlib import Path

from qtpy.QtCore import QPoint, Qt

from napari_acs._napari._widget_ortho import CROSSHAIR_NAME
from napari_acs._napari._window import window_level_drag
from napari_acs.io.sample import sample_case_path
from tests.test_widgets import WINDOW, dock, open_case, shoot

LEFT = Qt.MouseButton.LeftButton


def crosshair_point(layer) -> np.ndarray:
    """World point where a crosshair layer's lines cross (start of its in-plane lines)."""
    starts = layer.data[:, 0] * layer.scale
    # line along axis i starts at the lower bound of i and at the point on the other axes
    return np.array([starts[(i + 1) % 3][i] for i in range(3)])


def test_views_follow_clicks_and_layer_changes(make_napari_viewer, qtbot, screenshots_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(*WINDOW)
    layers = open_case(viewer, sample_case_path())
    seg = layers[-1]
    drag_callbacks = [c for c in viewer.mouse_drag_callbacks if c is not window_level_drag]
    widget = dock(viewer, "Orthogonal views")
    qtbot.waitUntil(lambda: widget.synced, timeout=60_000)
    coronal, sagittal = widget.models["coronal"], widget.models["sagittal"]
    names = [layer.name for layer in layers]
    for model in (coronal, sagittal):
        assert [layer.name for layer in model.layers] == [*names, CROSSHAIR_NAME]
        assert model.layers[seg.name].data is seg.data  # the same array, not a copy
    assert coronal.dims.order == (1, 0, 2) and sagittal.dims.order == (2, 0, 1)
    assert viewer.layers[-1].name == CROSSHAIR_NAME  # on top in the axial view too

    # a real click in the coronal canvas moves the axial slice and the sagittal slice
    before = np.array(viewer.dims.point)
    canvas = widget.qt_viewers["coronal"].canvas.native
    qtbot.mouseClick(canvas, LEFT, pos=QPoint(canvas.width() // 2 + 25, canvas.height() // 2 - 30))
    qtbot.waitUntil(lambda: not np.allclose(viewer.dims.point, before), timeout=5_000)
    point = np.array(viewer.dims.point)
    assert point[1] == pytest.approx(before[1])  # the coronal plane itself did not move
    assert point[0] != pytest.approx(before[0]) and point[2] != pytest.approx(before[2])
    assert np.allclose(coronal.cursor.position, point, atol=1.0)  # where the click was
    assert np.allclose(sagittal.dims.point, point) and np.allclose(coronal.dims.point, point)
    for view in (viewer, coronal, sagittal):
        assert np.allclose(crosshair_point(view.layers[CROSSHAIR_NAME]), point)

    # and a click in the axial canvas moves the coronal and sagittal planes
    axial = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(axial, LEFT, pos=QPoint(axial.width() // 2 - 40, axial.height() // 2 + 35))
    qtbot.waitUntil(lambda: not np.isclose(viewer.dims.point[1], point[1]), timeout=5_000)
    assert viewer.dims.point[0] == pytest.approx(point[0])
    assert np.allclose(sagittal.dims.point, viewer.dims.point)

    # with "Follow the mouse", moving the pointer is enough
    widget.follow_box.setChecked(True)
    moved = np.array(viewer.dims.point)
    qtbot.mouseMove(canvas, QPoint(canvas.width() // 2 - 50, canvas.height() // 2 + 10))
    qtbot.waitUntil(lambda: not np.allclose(viewer.dims.point, moved), timeout=5_000)
    widget.follow_box.setChecked(False)

    # layer changes follow: opacity, label edits, new and removed layers
    seg.opacity = 0.35
    assert coronal.layers[seg.name].opacity == pytest.approx(0.35)
    refreshed: list[int] = []
    sagittal.layers[seg.name].events.set_data.connect(lambda event: refreshed.append(1))
    z, y, x = np.argwhere(np.asarray(seg.data) > 0)[0]
    seg.brush_size = 5
    seg.paint((z, y, x), 1)
    assert refreshed
    extra = viewer.add_labels(np.zeros_like(np.asarray(seg.data)), name="edits", scale=seg.scale)
    qtbot.waitUntil(lambda: widget.synced, timeout=30_000)
    assert [layer.name for layer in coronal.layers][-2:] == ["edits", CROSSHAIR_NAME]
    assert viewer.layers[-1].name == CROSSHAIR_NAME
    viewer.layers.remove(extra)
    assert "edits" not in [layer.name for layer in sagittal.layers]

    # screenshot through the tumour's centre
    seg.opacity = 0.6
    centre = np.argwhere(np.asarray(seg.data) > 0).mean(axis=0) * np.asarray(seg.scale)
    widget.go_to(tuple(centre))
    viewer.layers.selection.active = seg
    shoot(viewer, qtbot, screenshots_dir / "ortho.png")

    # removing many layers at once (a batched update, as the viewer's clear on closing does) is
    # batched in the mirrors too: napari's full garbage collection after a layer leaves a canvas
    # (0.2-0.8 s each with torch loaded) runs once per canvas, not once per layer and view
    extras = [viewer.add_labels(np.zeros((4, 4, 4), np.uint8), name=f"extra {i}") for i in range(4)]
    qtbot.waitUntil(lambda: widget.synced, timeout=30_000)
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)
    with viewer.layers.batched_update():
        for layer in extras:
            viewer.layers.remove(layer)
    monkeypatch.undo()
    assert not any(layer.name.startswith("extra") for model in (coronal, sagittal) for layer in model.layers)
    assert 1 <= len(collections) <= 3, len(collections)  # one per canvas (was 1 + 2 x 4)

    # closing the dock leaves the main viewer as it was
    viewer.window.remove_dock_widget(viewer.window._wrapped_dock_widgets["Orthogonal views (napari-acs)"])
    assert CROSSHAIR_NAME not in [layer.name for layer in viewer.layers]
    # nothing of the widget is left; the right-drag window / level (a module function holding no
    # widget, shared by the plugin's widgets) stays for the axial canvas
    assert [c for c in viewer.mouse_drag_callbacks if c is not window_level_drag] == drag_callbacks
    seg.opacity = 0.5  # no error from a closed widget
