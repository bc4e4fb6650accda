"""The window fits the screen with every napari-acs dock open (issue 18, point 5).

A real viewer under Xvfb at 1920 x 1080 and at 1366 x 768, a real (small) BraTS case, and
every dock of the plugin opened the way the Plugins menu does: the window keeps its size,
the tool docks share one tabbed column and scroll, the linked views have a column of their
own, and the axial, coronal and sagittal canvases all stay at least 250 px on each side.
Screenshots of the whole window go to the ``screenshots_dir`` fixture's folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication, QMainWindow, QScrollArea

from tests.nifti_cases import write_case
from tests.test_widgets import dock, open_case

#: Screens tried (px): the usual desktop and the smallest common laptop screen.
SCREENS = ((1920, 1080), (1366, 768))
#: Every dock of the plugin (napari.yaml display names); the views last or first.
TOOLS = ("Load BraTS case", "Segment", "Classify MGMT", "Fine-tune", "Cohort browser", "Compare models",
         "Window / level")
VIEWS = "Orthogonal views"
MIN_CANVAS = 250


def open_every_dock(viewer, views_first: bool) -> dict[str, tuple]:
    """Open every napari-acs dock through napari's plugin API; name -> (dock, widget)."""
    names = (VIEWS, *TOOLS) if views_first else (*TOOLS, VIEWS)
    opened = {}
    for name in names:
        opened[name] = (viewer.window.add_plugin_dock_widget("napari-acs", name))
    return opened


def canvas_sizes(viewer, views) -> dict[str, tuple[int, int]]:
    """Width and height (px) of the axial (main), coronal and sagittal canvases."""
    canvases = {"axial": viewer.window._qt_viewer.canvas.native,
                **{name: qt_viewer.canvas.native for name, qt_viewer in views.qt_viewers.items()}}
    return {name: (canvas.width(), canvas.height()) for name, canvas in canvases.items() if canvas.isVisible()}


def assert_reachable(dock_widget, window: QMainWindow) -> None:
    """The dock is shown (its tab raised), no taller than the window, and all of its content
    can be scrolled into view: each part of it, scrolled to, is drawn whole (or fills the view)."""
    dock_widget.raise_()
    area = dock_widget.widget().findChild(QScrollArea)
    assert area is not None, f"{dock_widget.name} does not scroll"
    assert dock_widget.height() <= window.height()
    content = area.widget()
    assert content.height() >= content.minimumSizeHint().height()  # not squeezed: scrolled
    for part in content.children():
        if not (hasattr(part, "isVisibleTo") and part.isVisibleTo(content)):
            continue
        area.ensureWidgetVisible(part, 0, 0)
        QApplication.processEvents()  # layout after the scroll bar came or went
        area.ensureWidgetVisible(part, 0, 0)
        shown = part.visibleRegion().boundingRect()
        assert shown.height() >= min(part.height(), area.viewport().height()), (dock_widget.name, part)


@pytest.mark.parametrize("size", SCREENS, ids=[f"{w}x{h}" for w, h in SCREENS])
def test_every_dock_fits_with_usable_canvases(make_napari_viewer, qtbot, tmp_path: Path,
                                              screenshots_dir: Path, size: tuple[int, int]) -> None:
    width, height = size
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(width, height)
    write_case(tmp_path, shape=(40, 48, 36))
    layers = open_case(viewer, tmp_path)
    opened = open_every_dock(viewer, views_first=width < 1920)  # both orders of opening
    views = opened[VIEWS][1]
    qtbot.waitUntil(lambda: views.synced, timeout=30_000)
    window = viewer.window._qt_window

    # the window did not grow past the screen, and nothing asks it to
    assert viewer.window.geometry()[2:] == (width, height)
    assert window.minimumSizeHint().width() <= width and window.minimumSizeHint().height() <= height

    # the tool docks share one tabbed column; the linked views have their own, nearer the axial canvas
    tool_docks = [opened[name][0] for name in TOOLS]
    assert set(window.tabifiedDockWidgets(tool_docks[0])) == set(tool_docks[1:])
    views_dock = opened[VIEWS][0]
    assert window.tabifiedDockWidgets(views_dock) == []
    tool_docks[0].raise_()
    qtbot.waitUntil(lambda: tool_docks[0].isVisible() and tool_docks[0].geometry().left() > 0)
    assert views_dock.geometry().right() < tool_docks[0].geometry().left()
    assert viewer.window._qt_viewer.geometry().right() < views_dock.geometry().left()

    for tool in reversed(tool_docks):  # ends with Load raised
        assert_reachable(tool, window)
    segment = opened["Segment"]
    assert_reachable(segment[0], window)
    table = segment[1].table  # the results table's last row (ET) can be scrolled into view
    area = segment[0].widget().findChild(QScrollArea)
    area.ensureWidgetVisible(table, 0, 0)
    last_row = table.visualRect(table.model().index(table.rowCount() - 1, 0))
    assert table.viewport().visibleRegion().contains(last_row.center())

    # every canvas usable
    sizes = canvas_sizes(viewer, views)
    assert set(sizes) == {"axial", "coronal", "sagittal"}
    for name, (w, h) in sizes.items():
        assert w >= MIN_CANVAS and h >= MIN_CANVAS, (name, w, h)

    # a screenshot through the tumour, the Segment dock shown
    seg = layers[-1]
    centre = np.argwhere(np.asarray(seg.data) > 0).mean(axis=0) * np.asarray(seg.scale)
    views.go_to(tuple(centre))
    area.verticalScrollBar().setValue(0)
    qtbot.wait(200)
    viewer.screenshot(str(screenshots_dir / f"window_{width}x{height}.png"), canvas_only=False)
    print(f"canvases at {width}x{height}: {sizes}")
