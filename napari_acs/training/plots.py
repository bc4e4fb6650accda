"""Learning curves as PNG files, drawn by matplotlib (``Figure`` + Agg: no ``pyplot``, no GUI)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from napari_acs.report.figures import agg_figure, save_figure

#: Line colours, in series order (colour-blind-safe Okabe-Ito palette), as 8-bit RGB.
COLOURS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0))
#: The legend's frame colour (not a grey: text anti-aliasing makes greys), 8-bit RGB.
LEGEND_FRAME = (140, 140, 170)
#: Pixels per inch of the PNG files (their size in pixels is ``size``).
DPI = 100


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255 for c in colour)


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 440),
    bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Path:
    """Draw ``{name: (x values, y values)}`` as lines with markers and a legend where the curves
    leave room, and ``bands`` ``{name: (lower values, upper values)}`` (at the same x) as shaded
    areas in the line's colour; write a PNG of ``size`` pixels atomically.

    Non-finite points are skipped. Returns the path written (replaced if it exists).
    """
    figure = agg_figure(size[0] / DPI, size[1] / DPI, dpi=DPI)
    ax = figure.add_subplot()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(x)) and math.isfinite(float(y))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=4, linewidth=2,
                color=_rgb(COLOURS[i % len(COLOURS)]), label=name)
        if bands and name in bands:
            lower, upper = (np.asarray(v, dtype=float) for v in bands[name])
            x = np.asarray(xs, dtype=float)
            keep = np.isfinite(x) & np.isfinite(lower) & np.isfinite(upper)
            ax.fill_between(x[keep], lower[keep], upper[keep], color=_rgb(COLOURS[i % len(COLOURS)]), alpha=0.2,
                            linewidth=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e6e6e6")
    ax.set_axisbelow(True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if series:
        legend = ax.legend(loc="best", edgecolor=_rgb(LEGEND_FRAME), framealpha=1.0, fancybox=False)
        legend.get_frame().set_antialiased(False)  # a frame of exactly LEGEND_FRAME (tests find it)
        legend.get_frame().set_linewidth(72 / DPI)  # one pixel
    figure.tight_layout()
    return save_figure(figure, path, overwrite=True)
