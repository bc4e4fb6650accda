"""Orthogonal views: coronal and sagittal canvases docked beside napari's axial canvas, all linked.

Each extra view is a napari ``ViewerModel`` shown by a ``QtViewer`` (the approach of
napari's ``examples/multiple_viewer_widget.py``) holding mirrors of the main viewer's
image and labels layers: the same arrays (no copies), with their display settings
kept in step. The three views share one 3D point: a click (or, with "Follow the mouse",
the pointer) in any view moves it, which moves the slices of the other two and a
crosshair in all three. Layers carry the display order ``(Z, Y', X')`` of
:mod:`napari_acs._napari._layers`, so the main viewer is axial, and the extra views
show ``(Z, X')`` (coronal) and ``(Z, Y')`` (sagittal) with superior up.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.components import ViewerModel
from napari.layers import Image, Labels, Layer, Vectors
from napari.qt import QtViewer
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from napari_acs._napari._layers import add_layer_in_steps
from napari_acs._napari._qt import VIEWS as VIEWS_ROLE
from napari_acs._napari._qt import DockPlacer
from napari_acs._napari._window import install_window_drag, window_level_drag

if TYPE_CHECKING:
    import napari

#: Extra views: the display-axis order (last three dims) and a caption for each (short enough
#: for a 250 px column; the tooltip spells it out).
VIEWS: dict[str, tuple[tuple[int, int, int], str]] = {
    "coronal": ((1, 0, 2), "<b>Coronal</b> · S up, R on the left"),
    "sagittal": ((2, 0, 1), "<b>Sagittal</b> · S up, A on the left"),
}
CAPTION_TIPS = {
    "coronal": "Coronal: superior up, the patient's right on the left (radiological convention)",
    "sagittal": "Sagittal: superior up, anterior on the left",
}
#: Names of the display axes (Z, Y', X') on the views' sliders: the plane each slider moves.
AXIS_LABELS = ("axial", "coronal", "sagittal")
#: Layer settings copied from the main viewer to the mirrors whenever they change.
SYNCED = ("visible", "opacity", "blending", "colormap", "contrast_limits", "gamma", "interpolation2d",
          "contour", "show_selected_label", "selected_label", "scale", "translate", "rotate", "shear",
          "affine", "name")
CROSSHAIR_NAME = "crosshair"
#: Pause between two mirroring steps (ms): a zero-delay timer can run step after step in
#: one pass of the event loop, starving repaints and other timers.
PUMP_INTERVAL_MS = 50
CROSSHAIR_COLOUR = "#00d0ff"  # cyan: no tumour label uses it
CLICK_TOLERANCE_PX = 4
#: Smallest side of the coronal and sagittal canvases (px).
MIN_CANVAS_PX = 250
FOLLOW_INTERVAL_MS = 30


def weak_method(method: Callable) -> Callable:
    """A callable that calls ``method`` while its object lives (napari keeps mouse callbacks and
    lambdas strongly; the main viewer must not keep a closed widget and its canvases alive)."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        target = ref()
        return None if target is None else target(*args)

    return call


def mirrored(layer: Any) -> bool:
    """Image and Labels layers are mirrored; points, shapes and the crosshair are not."""
    return isinstance(layer, (Image, Labels))


def view_order(ndim: int, last_three: tuple[int, int, int]) -> tuple[int, ...]:
    """A dims order that permutes the last three axes as ``last_three`` (leading axes kept)."""
    lead = list(range(ndim - 3))
    return tuple(lead + [ndim - 3 + axis for axis in last_three])


def crosshair_vectors(point: np.ndarray, lower: np.ndarray, upper: np.ndarray, axes: range) -> np.ndarray:
    """Vectors ``(n, 2, ndim)`` (start, direction) of lines along ``axes`` through ``point``.

    A line along the sliced axis starts outside the slice, so each 2D view draws
    only the two lines in its plane.
    """
    lines = []
    for axis in axes:
        start = point.copy()
        start[axis] = lower[axis]
        direction = np.zeros_like(point)
        direction[axis] = upper[axis] - lower[axis]
        lines.append([start, direction])
    return np.asarray(lines, dtype=float)


class OrthoViewsWidget(QWidget):
    """Dock widget: coronal + sagittal views linked to the main (axial) viewer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.models = {name: ViewerModel(title=name) for name in VIEWS}
        self.qt_viewers = {name: QtViewer(model) for name, model in self.models.items()}
        self._mirrors: dict[int, dict[str, Layer]] = {}
        self._links: dict[int, list[tuple[Any, Any]]] = {}
        self._pending: deque[Any] = deque()
        self._finishing: deque[Callable[[], None]] = deque()
        self._syncing = False
        self._crosshairs: dict[str, Vectors] = {}
        self._torn_down = False
        self._docked = False
        self._batch: ExitStack | None = None  # the mirrors' batched updates while the main list's runs

        self.crosshair_box = QCheckBox("Crosshair")
        self.crosshair_box.setChecked(True)
        self.crosshair_box.toggled.connect(self._update_crosshairs)
        self.follow_box = QCheckBox("Follow the mouse")
        self.follow_box.setToolTip("Move the crosshair with the pointer, not only on a click")
        controls = QHBoxLayout()
        controls.addWidget(self.crosshair_box)
        controls.addWidget(self.follow_box)
        controls.addStretch(1)
        hint = QLabel("Click any view to show that point in all three.")
        hint.setWordWrap(True)
        splitter = QSplitter(Qt.Orientation.Vertical)
        for name, (_, caption) in VIEWS.items():
            pane = QWidget()
            pane_layout = QVBoxLayout(pane)
            pane_layout.setContentsMargins(0, 0, 0, 0)
            label = QLabel(caption)
            label.setToolTip(CAPTION_TIPS[name])
            pane_layout.addWidget(label)
            pane_layout.addWidget(self.qt_viewers[name], 1)
            splitter.addWidget(pane)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(hint)
        layout.addWidget(splitter, 1)
        # a column of its own beside the napari-acs tool docks; then canvases of a usable size
        DockPlacer(self, VIEWS_ROLE).placed.connect(self._claim_canvas_size)

        self._pump_timer = QTimer(self)
        self._pump_timer.setInterval(PUMP_INTERVAL_MS)
        self._pump_timer.timeout.connect(self._pump)
        self._follow_timer = QTimer(self)
        self._follow_timer.setSingleShot(True)
        self._follow_timer.setInterval(FOLLOW_INTERVAL_MS)
        self._follow_timer.timeout.connect(self._follow)
        self._follow_position: tuple | None = None

        main = self.viewer
        main.layers.events.inserted.connect(self._on_inserted)
        main.layers.events.removed.connect(self._on_removed)
        main.layers.events.moved.connect(self._reorder)
        main.layers.events.begin_batch.connect(self._begin_batch)
        main.layers.events.end_batch.connect(self._end_batch)
        main.dims.events.point.connect(self._from_main)
        main.dims.events.order.connect(self._set_orders)
        self._mouse = (weak_method(self._on_drag), weak_method(self._on_move))
        for viewer in (main, *self.models.values()):
            viewer.mouse_drag_callbacks.append(self._mouse[0])
            viewer.mouse_move_callbacks.append(self._mouse[1])
        # a right-drag in any view changes the main viewer's image window; the mirrors follow it
        install_window_drag(main)
        self._window_drag = weak_method(self._on_window_drag)
        for model in self.models.values():
            model.mouse_drag_callbacks.append(self._window_drag)
            model.dims.events.point.connect(self._from_view)
            camera = model.scene.camera if hasattr(model, "scene") else model.camera  # napari >= 0.9
            camera.orientation2d = ("up", "right")
        for layer in main.layers:
            self._queue(layer)

    def _claim_canvas_size(self) -> None:
        """Canvases at least ``MIN_CANVAS_PX`` on each side (usable at 1366 x 768, every dock open)."""
        for qt_viewer in self.qt_viewers.values():
            qt_viewer.canvas.native.setMinimumSize(MIN_CANVAS_PX, MIN_CANVAS_PX)

    @property
    def synced(self) -> bool:
        """Every image and labels layer of the main viewer is mirrored in both views."""
        return not self._pending and not self._pump_timer.isActive()

    # ------------------------------------------------------------------ mirrors
    def _on_inserted(self, event: Any) -> None:
        self._queue(event.value)
        if "axial" in self._crosshairs and event.value is not self._crosshairs["axial"]:
            QTimer.singleShot(0, self._raise_main_crosshair)

    def _queue(self, layer: Any) -> None:
        """Mirror ``layer`` soon: one view per event-loop turn keeps the GUI responsive."""
        if mirrored(layer):
            self._pending.extend((layer, name) for name in self.models)
            self._pump_timer.start()

    def _pump(self) -> None:
        """One step per event-loop turn: a mirror, then each of the finishing updates."""
        if not self._pending:
            if not self._finishing:
                self._finishing.extend((self._reorder, self._set_orders, self._from_main))
            self._finishing.popleft()()
            if not self._finishing:
                self._pump_timer.stop()
            return
        self._finishing.clear()  # new mirrors first; the finishing steps run after them
        layer, name = self._pending.popleft()
        if layer not in self.viewer.layers:
            return
        mirrors = self._mirrors.setdefault(layer.unique_id, {})
        if not mirrors:
            self._connect(layer)
        copy = Layer.create(*layer.as_layer_data_tuple())
        mirrors[name] = copy
        model = self.models[name]
        first = len(model.layers) == 0
        self._syncing = True  # the model's dims change while the layer goes in: not a user move
        try:
            add_layer_in_steps(model, copy, paint_tools=False)  # display-only mirrors
        finally:
            self._syncing = False
        if first:
            model.reset_view()

    def _connect(self, layer: Any) -> None:
        copy_property, copy_data, refresh = (weak_method(m) for m in (self._copy_property, self._copy_data,
                                                                      self._refresh))
        links = [(getattr(layer.events, prop), lambda event, prop=prop: copy_property(layer, prop))
                 for prop in SYNCED if hasattr(layer.events, prop)]
        links.append((layer.events.data, lambda event: copy_data(layer)))
        if isinstance(layer, Labels):  # edits change the shared array in place
            links.append((layer.events.paint, lambda event: refresh(layer)))
        for emitter, callback in links:
            emitter.connect(callback)
        self._links[layer.unique_id] = links

    def _disconnect(self, layer_id: str) -> None:
        for emitter, callback in self._links.pop(layer_id, []):
            emitter.disconnect(callback)

    def _copy_property(self, layer: Any, prop: str) -> None:
        for mirror in self._mirrors.get(layer.unique_id, {}).values():
            setattr(mirror, prop, getattr(layer, prop))

    def _copy_data(self, layer: Any) -> None:
        for mirror in self._mirrors.get(layer.unique_id, {}).values():
            mirror.data = layer.data

    def _refresh(self, layer: Any) -> None:
        for mirror in self._mirrors.get(layer.unique_id, {}).values():
            mirror.refresh()

    def _on_removed(self, event: Any) -> None:
        if event.value is self._crosshairs.get("axial"):  # the user deleted it: hide them all
            del self._crosshairs["axial"]
            self.crosshair_box.setChecked(False)
            return
        self._disconnect(event.value.unique_id)
        for name, mirror in self._mirrors.pop(event.value.unique_id, {}).items():
            self.models[name].layers.remove(mirror)
        self._pending = deque(item for item in self._pending if item[0].unique_id != event.value.unique_id)

    def _begin_batch(self, event: Any = None) -> None:
        """While the main viewer changes many layers at once (``LayerList.batched_update``, e.g.
        ``clear`` when the viewer closes), the mirrors batch theirs too: each canvas then redraws
        once, and napari's full garbage collection per removed layer (``VispyCanvas``, a Windows
        OpenGL fix) runs once per canvas instead of once per layer and view."""
        if self._batch is None:
            self._batch = ExitStack()
            for model in self.models.values():
                self._batch.enter_context(model.layers.batched_update())

    def _end_batch(self, event: Any = None) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.close()

    def _reorder(self, event: Any = None) -> None:
        """Mirrors in the main viewer's order, the crosshair on top."""
        for name, model in self.models.items():
            wanted = [m[name] for layer in self.viewer.layers
                      if name in (m := self._mirrors.get(layer.unique_id, {}))]
            if name in self._crosshairs:
                wanted.append(self._crosshairs[name])
            for index, layer in enumerate(wanted):
                current = model.layers.index(layer)
                if current != index:
                    model.layers.move(current, index)

    # ------------------------------------------------------------------ linked point
    def _set_orders(self, event: Any = None) -> None:
        ndim = self.viewer.dims.ndim
        for name, model in self.models.items():
            if model.dims.ndim == ndim and ndim >= 3:  # assigned only when changed: each costs a redraw
                order = view_order(ndim, VIEWS[name][0])
                labels = (*model.dims.axis_labels[:-3], *AXIS_LABELS)
                if tuple(model.dims.order) != order:
                    model.dims.order = order
                if tuple(model.dims.axis_labels) != labels:
                    model.dims.axis_labels = labels

    def _from_main(self, event: Any = None) -> None:
        self._share_point(self.viewer.dims.point)

    def _from_view(self, event: Any) -> None:
        self._share_point(event.source.point)

    def _share_point(self, point: tuple) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            for dims in (self.viewer.dims, *(m.dims for m in self.models.values())):
                if dims.ndim == len(point) and tuple(dims.point) != tuple(point):
                    dims.point = tuple(point)
        finally:
            self._syncing = False
        self._update_crosshairs()

    def go_to(self, position: tuple) -> None:
        """Move the shared point (world coordinates, mm) to ``position``."""
        dims = self.viewer.dims
        if len(position) != dims.ndim:
            return
        lower = np.array([r.start for r in dims.range])
        upper = np.array([r.stop for r in dims.range])
        self._share_point(tuple(np.clip(np.asarray(position, dtype=float), lower, upper)))

    def _on_drag(self, viewer: Any, event: Any):
        """A click without a drag moves the point; a drag still pans; painting is left alone."""
        active = viewer.layers.selection.active
        if event.button != 1 or (active is not None and getattr(active, "mode", "pan_zoom") != "pan_zoom"):
            return
        start = np.asarray(event.pos, dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        if np.hypot(*(np.asarray(event.pos, dtype=float) - start)) <= CLICK_TOLERANCE_PX:
            self.go_to(tuple(event.position))

    def _on_window_drag(self, view: Any, event: Any):
        """Right-drag in a coronal or sagittal view: the window of the main viewer's image."""
        return window_level_drag(view, event, target_viewer=self.viewer)

    def _on_move(self, viewer: Any, event: Any) -> None:
        if self.follow_box.isChecked():
            self._follow_position = tuple(event.position)
            if not self._follow_timer.isActive():
                self._follow_timer.start()

    def _follow(self) -> None:
        if self._follow_position is not None:
            self.go_to(self._follow_position)

    # ------------------------------------------------------------------ crosshair
    def _views(self) -> dict[str, Any]:
        return {"axial": self.viewer, **self.models}

    def _update_crosshairs(self, *args: Any) -> None:
        """Lines through the shared point in every view (the main viewer's on top of its layers)."""
        show = self.crosshair_box.isChecked() and self.viewer.dims.ndim >= 3 and any(self._mirrors.values())
        for name, view in self._views().items():
            layer = self._crosshairs.get(name)
            dims = view.dims
            if dims.ndim != self.viewer.dims.ndim or (layer is None and not show):
                continue
            if layer is not None and not show:
                layer.visible = False
                continue
            step = np.array([r.step for r in dims.range])
            lower = np.array([r.start for r in dims.range]) / step
            upper = np.array([r.stop for r in dims.range]) / step
            data = crosshair_vectors(np.array(dims.point) / step, lower, upper, range(dims.ndim - 3, dims.ndim))
            if layer is None:
                self._crosshairs[name] = self._add_crosshair(view, data, step)
            else:
                layer.scale = step
                layer.data = data
                layer.visible = True

    def _add_crosshair(self, view: Any, data: np.ndarray, step: np.ndarray) -> Vectors:
        layer = Vectors(data, name=CROSSHAIR_NAME, edge_color=CROSSHAIR_COLOUR, edge_width=0.6,
                        vector_style="line", scale=step, opacity=0.8)
        active = view.layers.selection.active
        view.layers.append(layer)
        view.layers.selection.active = active  # keep the user's layer (and its controls) selected
        return layer

    def _raise_main_crosshair(self) -> None:
        """Keep the main viewer's crosshair above layers added after it."""
        layer = self._crosshairs.get("axial")
        layers = self.viewer.layers
        if layer is not None and layer in layers and layers.index(layer) != len(layers) - 1:
            layers.move(layers.index(layer), len(layers))

    def teardown(self) -> None:
        """Disconnect from the main viewer, remove its crosshair and close the extra canvases
        (when the dock is closed: napari then takes the widget out of its dock)."""
        if self._torn_down:
            return
        self._torn_down = True
        self._pump_timer.stop()
        main = self.viewer
        for emitter, callback in ((main.layers.events.inserted, self._on_inserted),
                                  (main.layers.events.removed, self._on_removed),
                                  (main.layers.events.moved, self._reorder),
                                  (main.layers.events.begin_batch, self._begin_batch),
                                  (main.layers.events.end_batch, self._end_batch),
                                  (main.dims.events.point, self._from_main),
                                  (main.dims.events.order, self._set_orders)):
            emitter.disconnect(callback)
        self._end_batch()
        for callbacks, callback in zip((main.mouse_drag_callbacks, main.mouse_move_callbacks), self._mouse):
            if callback in callbacks:
                callbacks.remove(callback)
        for layer_id in list(self._links):
            self._disconnect(layer_id)
        crosshair = self._crosshairs.pop("axial", None)
        if crosshair is not None and crosshair in main.layers:
            main.layers.remove(crosshair)
        for qt_viewer in self.qt_viewers.values():
            qt_viewer.close()

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:  # napari's remove_dock_widget (the dock's "x") unparents the widget
                self.teardown()
        return super().event(event)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.teardown()
        super().closeEvent(event)
