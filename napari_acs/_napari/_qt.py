"""Qt pieces the dock widgets share: a message line, a path picker, layout helpers (a dock that
scrolls and finds its place in the window), error text, and a small live line plot
(matplotlib's Qt canvas)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qtpy.QtCore import QEvent, QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

Level = Literal["info", "success", "warning", "error"]
_STYLES: dict[str, str] = {
    "info": "",
    "success": "background-color: #1f4d2b; color: #e8ffe8; border-radius: 3px; padding: 4px;",
    "warning": "background-color: #6b4e00; color: #fff4d0; border-radius: 3px; padding: 4px;",
    "error": "background-color: #7a1f1f; color: #ffecec; border-radius: 3px; padding: 4px;",
}


def error_text(exc: BaseException) -> str:
    """A readable message for the user: napari-acs errors already name the file and the problem."""
    text = str(exc) or type(exc).__name__
    ours = type(exc).__module__.startswith("napari_acs") or isinstance(exc, (OSError, ValueError))
    return text if ours else f"{type(exc).__name__}: {text}"


def group_box(title: str, *widgets: QWidget) -> QGroupBox:
    """A titled frame holding ``widgets`` one below the other."""
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    for widget in widgets:
        layout.addWidget(widget)
    return box


def column(owner: QWidget, *widgets: QWidget, min_width: int) -> None:
    """Lay ``widgets`` out top to bottom in ``owner`` (a dock widget, scrolling), spare height below."""
    layout = scrolling_layout(owner, min_width=min_width)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)


class MessageLabel(QLabel):
    """A wrapped, selectable line of text coloured by level; empty and hidden when cleared."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.level: Level = "info"
        self.hide()

    def show_message(self, text: str, level: Level = "info") -> None:
        self.level = level
        self.setStyleSheet(_STYLES[level])
        self.setText(text)
        self.setVisible(bool(text))

    def clear_message(self) -> None:
        self.show_message("")


class PathEdit(QWidget):
    """A line edit with a Browse button for a folder, a file, several files or a file to save.

    ``text`` is what the user typed or picked (several files are joined by ``;``).
    """

    changed = Signal(str)

    def __init__(
        self,
        mode: Literal["folder", "file", "files", "save"],
        *,
        caption: str,
        name_filter: str = "",
        placeholder: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.mode, self.caption, self.name_filter = mode, caption, name_filter
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(lambda: self.changed.emit(self.text))
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(self.browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    @property
    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)
        self.changed.emit(self.text)

    def paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.text.split(";") if p.strip()]

    def browse(self) -> None:
        start = str(self.paths()[0].parent) if self.paths() else ""
        if self.mode == "folder":
            chosen = QFileDialog.getExistingDirectory(self, self.caption, self.text or start)
        elif self.mode == "files":
            chosen = ";".join(QFileDialog.getOpenFileNames(self, self.caption, start, self.name_filter)[0])
        elif self.mode == "save":
            chosen = QFileDialog.getSaveFileName(self, self.caption, self.text, self.name_filter)[0]
        else:
            chosen = QFileDialog.getOpenFileName(self, self.caption, start, self.name_filter)[0]
        if chosen:
            self.set_text(chosen)


# --------------------------------------------------------------------------- docks that fit

#: Narrowest a scrolling dock gets (px): its content keeps its own width and scrolls sideways.
DOCK_MIN_WIDTH = 300
#: Width asked for the tool docks' tab group (px): their content's width, at most this much
#: (wider content scrolls), so that the canvases keep their share of a 1366 px screen.
TOOL_GROUP_MAX_WIDTH = 424
SCROLL_BAR_ROOM = 24
#: Qt property of a tool dock's widget: the width its content is laid out for (px).
CONTENT_WIDTH = "napari_acs_width"
#: Role of a napari-acs dock (a Qt property of its widget): tool panels share one tabbed
#: group; the linked views take a column of their own beside it.
DOCK_ROLE = "napari_acs_dock"
TOOL, VIEWS = "tool", "views"


def scrolling_layout(owner: QWidget, *, min_width: int) -> QVBoxLayout:
    """Give ``owner`` (a tool dock widget) a scroll area and return the layout to fill.

    The content keeps ``min_width`` (px) and its natural height; a smaller dock scrolls
    instead of growing napari's window or squeezing its canvases. The dock also joins
    the other napari-acs tool docks as a tab (:class:`DockPlacer`).
    """
    content = QWidget()
    content.setMinimumWidth(min_width)
    area = QScrollArea(owner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(content)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    owner.setMinimumWidth(min(min_width, DOCK_MIN_WIDTH))
    owner.setProperty(CONTENT_WIDTH, min_width)
    DockPlacer(owner, TOOL)
    return QVBoxLayout(content)


def dock_of(widget: QWidget) -> tuple[QDockWidget, QMainWindow] | None:
    """The dock holding ``widget`` and the main window holding that dock (None if not docked)."""
    dock = widget.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    window = dock.parentWidget() if dock is not None else None
    return (dock, window) if isinstance(window, QMainWindow) and not dock.isFloating() else None


def docks_in(window: QMainWindow, area: Qt.DockWidgetArea, leave_out: QDockWidget | None) -> list[QDockWidget]:
    """The docks open in ``area`` of ``window`` (shown or behind a tab), in the order added."""
    shown = [d for d in window.findChildren(QDockWidget) if d.isVisible() and not d.isFloating()]
    open_ = set(shown).union(*(window.tabifiedDockWidgets(d) for d in shown))
    return [d for d in window.findChildren(QDockWidget)
            if d in open_ and d is not leave_out and window.dockWidgetArea(d) == area]


def _role(dock: QDockWidget) -> str | None:
    inner = dock.widget()
    return None if inner is None else inner.property(DOCK_ROLE)


class DockPlacer(QObject):
    """When its widget is first shown in a napari dock, arrange napari-acs docks so that they fit.

    napari's Plugins menu stacks each new dock below the others in the right-hand area, which
    squeezes every one of them (and the linked views' canvases) or grows the window past the
    screen. So, in the dock's area (Qt's own ``QMainWindow`` calls; napari's window keeps track
    of its docks as before): a tool dock joins an earlier tool dock as a tab; the linked views
    (role ``views``) take their own column, beside the tab group and nearer the axial canvas.
    ``placed`` is emitted once that is done (a widget can then claim its full minimum size,
    which in a stack with the others would have grown the window).
    """

    placed = Signal()

    def __init__(self, owner: QWidget, role: str) -> None:
        super().__init__(owner)
        owner.setProperty(DOCK_ROLE, role)
        owner.installEventFilter(self)
        self._placed = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Show and not self._placed:
            self._placed = True
            # at once when napari has added the dock to its window (before the window grows to
            # hold one more dock in a stack), else at the next turn of the event loop
            if not self.place():
                QTimer.singleShot(0, self.place)
        return False

    def place(self) -> bool:
        """Arrange the dock among the others in its area; False while it is in no main window."""
        found = dock_of(self.parent())
        if found is None or found[1].dockWidgetArea(found[0]) == Qt.DockWidgetArea.NoDockWidgetArea:
            return False
        dock, window = found
        area = window.dockWidgetArea(dock)
        others = docks_in(window, area, leave_out=dock)
        tools = [d for d in others if _role(d) == TOOL]
        views = [d for d in others if _role(d) == VIEWS]
        side = area in SIDES
        if _role(dock) == TOOL and tools:
            window.tabifyDockWidget(tools[-1], dock)
        elif _role(dock) == TOOL and views and side:
            split_beside(window, area, views[-1], dock)
        elif _role(dock) == VIEWS and tools and side:
            current = [d for d in tools if d.isVisible()]
            split_beside(window, area, dock, tools[0])
            for before, tool in zip(tools, tools[1:]):  # each tab after the one before it
                window.tabifyDockWidget(before, tool)
            for tool in current:
                tool.raise_()
        dock.raise_()
        if side:
            share_width(window, area, [d for d in (*tools, dock) if _role(d) == TOOL],
                        [d for d in (*views, dock) if _role(d) == VIEWS])
        self.placed.emit()
        return True


SIDES = {Qt.DockWidgetArea.LeftDockWidgetArea: Qt.DockWidgetArea.RightDockWidgetArea,
         Qt.DockWidgetArea.RightDockWidgetArea: Qt.DockWidgetArea.LeftDockWidgetArea}
#: Room taken by the splitter handles between the columns of docks and the canvas (px).
SEPARATORS_PX = 30


def split_beside(window: QMainWindow, area: Qt.DockWidgetArea, views: QDockWidget, tool: QDockWidget) -> None:
    """Put ``views`` and ``tool`` side by side in ``area``, the views nearer the central canvas."""
    pair = (views, tool) if area == Qt.DockWidgetArea.RightDockWidgetArea else (tool, views)
    window.splitDockWidget(*pair, Qt.Orientation.Horizontal)


def share_width(window: QMainWindow, area: Qt.DockWidgetArea, tools: list[QDockWidget],
                views: list[QDockWidget]) -> None:
    """Widths of the columns in ``area``: the tool group as wide as its content (at most
    ``TOOL_GROUP_MAX_WIDTH``), the rest shared evenly by the linked views and the axial canvas."""
    if not tools:
        return
    content = max(d.widget().property(CONTENT_WIDTH) or DOCK_MIN_WIDTH for d in tools)
    tools_width = min(content + SCROLL_BAR_ROOM, TOOL_GROUP_MAX_WIDTH)
    if not views:
        window.resizeDocks(tools[:1], [tools_width], Qt.Orientation.Horizontal)
        return
    opposite = max((d.width() for d in docks_in(window, SIDES[area], leave_out=None)), default=0)
    views_width = (window.width() - opposite - SEPARATORS_PX - tools_width) // 2
    window.resizeDocks([tools[0], views[0]], [tools_width, views_width], Qt.Orientation.Horizontal)


# --------------------------------------------------------------------------- live curves

#: Okabe-Ito colours (colour-blind safe; the training PNGs use the same palette), by series.
COLOURS = ("#56b4e9", "#e69f00", "#009e73", "#cc79a7", "#f0e442", "#d55e00")
WAITING = "waiting for the first values…"


@dataclass
class Series:
    """One named line: ``points`` (x, y); ``markers`` draws dots (per-epoch values)."""

    colour: str
    markers: bool = True
    points: list[tuple[float, float]] = field(default_factory=list)
    line: Any = None  # its matplotlib Line2D


class CurvePlot(QWidget):
    """Lines of named series against epochs, drawn by matplotlib in the widget's palette; redrawn
    (at the next idle moment of the event loop) as points arrive."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.title = title
        self.series: dict[str, Series] = {}
        self.x_max = 1.0  # the x axis reaches at least this far (the planned number of epochs)
        self.figure = Figure(figsize=(4, 2))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.axes = self.figure.add_subplot()
        self.axes.set_title(title, fontsize=9, loc="left")
        self.axes.set_xlabel("epoch", fontsize=8)
        self.axes.tick_params(labelsize=8)
        self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        self._waiting = self.axes.text(0.5, 0.5, WAITING, transform=self.axes.transAxes, ha="center", va="center")
        self.figure.set_layout_engine("tight")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._colours()
        self._rescale()

    def _colours(self) -> None:
        """The figure in the widget's palette (napari's theme): base background, text-coloured ink."""
        palette = self.palette()
        base, text = palette.base().color().name(), palette.text().color().name()
        self.figure.set_facecolor(base)
        self.axes.set_facecolor(base)
        self.axes.title.set_color(text)
        self.axes.xaxis.label.set_color(text)
        self.axes.tick_params(colors=text)
        for spine in self.axes.spines.values():
            spine.set_color(text)
        self.axes.grid(True, color=text, alpha=0.2)
        self._waiting.set_color(text)
        self._legend()
        self.canvas.draw_idle()

    def _legend(self) -> None:
        if not self.series:
            return
        palette = self.palette()
        text = palette.text().color().name()
        legend = self.axes.legend(loc="best", fontsize=8, facecolor=palette.base().color().name(),
                                  edgecolor=text, labelcolor=text, framealpha=0.8)
        legend.set_visible(any(s.points for s in self.series.values()))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt name)
        """Follow a change of theme (napari's light / dark)."""
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange) and hasattr(self, "_waiting"):
            self._colours()

    def showEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self._colours()  # the palette napari's style sheet gave the docked widget

    def clear(self) -> None:
        for series in self.series.values():
            series.line.remove()
        self.series.clear()
        legend = self.axes.get_legend()
        if legend is not None:
            legend.remove()
        self._rescale()

    def add_point(self, name: str, x: float, y: float, *, markers: bool = True) -> None:
        """Append ``(x, y)`` to series ``name`` (created with the next colour); non-finite y is skipped."""
        if not math.isfinite(y):
            return
        if name not in self.series:
            colour = COLOURS[len(self.series) % len(COLOURS)]
            line, = self.axes.plot([], [], color=colour, label=name, linewidth=2 if markers else 1,
                                   marker="o" if markers else None, markersize=4)
            self.series[name] = Series(colour, markers, line=line)
        series = self.series[name]
        series.points.append((float(x), float(y)))
        series.line.set_data(*zip(*series.points))
        if len(series.points) == 1:
            self._legend()  # a new name in the legend
        self._rescale()

    def _rescale(self) -> None:
        """Axes over every point (x from 0 to at least ``x_max``), then a redraw when Qt is idle."""
        points = [p for s in self.series.values() for p in s.points]
        self._waiting.set_visible(not points)
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            self.axes.set_xlim(min(0.0, min(xs)), max(self.x_max, max(xs), 1.0))
            low, high = min(ys), max(ys)
            pad = (high - low) * 0.08 or abs(high) * 0.08 or 0.1
            self.axes.set_ylim(low - pad, high + pad)
        self.canvas.draw_idle()
