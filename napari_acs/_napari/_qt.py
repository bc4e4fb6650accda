"""Qt pieces the dock widgets share: a message line, a path picker, layout helpers, error
text, and a small live line plot (napari ships no plotting library)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
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
    """Lay ``widgets`` out top to bottom in ``owner`` (a dock widget), spare height below."""
    layout = QVBoxLayout(owner)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    owner.setMinimumWidth(min_width)


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


# --------------------------------------------------------------------------- live curves

#: Okabe-Ito colours (colour-blind safe), as in napari_acs.training.plots.
COLOURS = ("#56b4e9", "#e69f00", "#009e73", "#cc79a7", "#f0e442", "#d55e00")
MARGIN = {"left": 46, "right": 10, "top": 22, "bottom": 26}


@dataclass
class Series:
    """One named line: ``points`` (x, y); ``markers`` draws dots (per-epoch values)."""

    colour: str
    markers: bool = True
    points: list[tuple[float, float]] = field(default_factory=list)


class CurvePlot(QWidget):
    """Lines of named series against epochs; redrawn as points arrive."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.series: dict[str, Series] = {}
        self.x_max = 1.0  # the x axis reaches at least this far (the planned number of epochs)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def add_point(self, name: str, x: float, y: float, *, markers: bool = True) -> None:
        """Append ``(x, y)`` to series ``name`` (created with the next colour); non-finite y is skipped."""
        if not math.isfinite(y):
            return
        if name not in self.series:
            self.series[name] = Series(COLOURS[len(self.series) % len(COLOURS)], markers)
        self.series[name].points.append((float(x), float(y)))
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().text().color()
        painter.fillRect(self.rect(), self.palette().base())
        painter.setPen(text)
        painter.drawText(QPointF(MARGIN["left"], 15), self.title)
        area = QRectF(MARGIN["left"], MARGIN["top"], self.width() - MARGIN["left"] - MARGIN["right"],
                      self.height() - MARGIN["top"] - MARGIN["bottom"])
        points = [p for s in self.series.values() for p in s.points]
        if not points or area.width() < 20 or area.height() < 20:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "waiting for the first values…")
            painter.end()
            return
        from napari_acs.training.plots import (
            nice_ticks,  # imported by the run that sends the points
        )

        xs = nice_ticks(min(0.0, min(p[0] for p in points)), max(self.x_max, max(p[0] for p in points)))
        ys = nice_ticks(min(p[1] for p in points), max(p[1] for p in points), 4)
        decimals = max(0, -math.floor(math.log10(ys[1] - ys[0]))) if len(ys) > 1 else 3

        def at(x: float, y: float) -> QPointF:
            fx = (x - xs[0]) / (xs[-1] - xs[0])
            fy = (y - ys[0]) / (ys[-1] - ys[0])
            return QPointF(area.left() + fx * area.width(), area.bottom() - fy * area.height())

        grid = QColor(text)
        grid.setAlpha(50)
        for y in ys:
            painter.setPen(grid)
            painter.drawLine(at(xs[0], y), at(xs[-1], y))
            painter.setPen(text)
            painter.drawText(QRectF(0, at(xs[0], y).y() - 8, MARGIN["left"] - 4, 16),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{y:.{decimals}f}")
        for x in xs:
            painter.drawText(QRectF(at(x, ys[0]).x() - 20, area.bottom() + 2, 40, 16),
                             Qt.AlignmentFlag.AlignHCenter, f"{x:g}")
        painter.drawText(QRectF(area.right() - 60, area.bottom() + 2, 60, 22),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, "epoch")
        painter.drawRect(area)
        for row, (name, series) in enumerate(self.series.items()):
            colour = QColor(series.colour)
            painter.setPen(QPen(colour, 2 if series.markers else 1))
            path = QPainterPath(at(*series.points[0]))
            for x, y in series.points[1:]:
                path.lineTo(at(x, y))
            painter.drawPath(path)
            if series.markers:
                painter.setBrush(colour)
                for x, y in series.points:
                    painter.drawEllipse(at(x, y), 3, 3)
                painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawText(QPointF(area.right() - 150, area.top() + 14 + 14 * row), f"— {name}")
        painter.end()
