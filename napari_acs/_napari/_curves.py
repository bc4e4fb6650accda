"""A small live line plot drawn with QPainter (napari ships no plotting library)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

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
