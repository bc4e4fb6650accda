"""Line plots as PNG drawn with Pillow (no matplotlib dependency): learning curves for reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from napari_acs.io.files import atomic_path

#: Line colours, in series order (colour-blind-safe Okabe-Ito palette).
COLOURS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0))
LEGEND_FRAME = (140, 140, 170)  # not a grey: text anti-aliasing makes greys
_MARGIN = {"left": 70, "right": 20, "top": 36, "bottom": 48}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count, 1)
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 440),
) -> Path:
    """Draw ``{name: (x values, y values)}`` as lines with markers and a legend; write a PNG atomically.

    Non-finite points are skipped. Returns the path written (replaced if it exists).
    """
    points = {
        name: [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(x)) and math.isfinite(float(y))]
        for name, (xs, ys) in series.items()
    }
    every = [p for pts in points.values() for p in pts]
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top = _MARGIN["left"], _MARGIN["top"]
    right, bottom = width - _MARGIN["right"], height - _MARGIN["bottom"]
    draw.text((width / 2, 12), title, fill="black", font=font, anchor="mt")
    draw.text((width / 2, height - 14), xlabel, fill="black", font=font, anchor="mb")
    draw.text((8, top - 20), ylabel, fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline="black")
    lines: list[list[tuple[float, float]]] = []
    if every:
        xticks = nice_ticks(min(p[0] for p in every), max(p[0] for p in every))
        yticks = nice_ticks(min(p[1] for p in every), max(p[1] for p in every))
        x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]

        def to_pixel(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))

        for x in xticks:
            px, _ = to_pixel(x, y0)
            draw.line([px, bottom, px, bottom + 4], fill="black")
            draw.line([px, top, px, bottom], fill=(230, 230, 230))
            draw.text((px, bottom + 6), _label(x), fill="black", font=font, anchor="mt")
        for y in yticks:
            _, py = to_pixel(x0, y)
            draw.line([left - 4, py, left, py], fill="black")
            draw.line([left, py, right, py], fill=(230, 230, 230))
            draw.text((left - 6, py), _label(y), fill="black", font=font, anchor="rm")
        draw.rectangle([left, top, right, bottom], outline="black")
        for i, pts in enumerate(points.values()):
            colour = COLOURS[i % len(COLOURS)]
            pixels = [to_pixel(x, y) for x, y in pts]
            if len(pixels) > 1:
                draw.line(pixels, fill=colour, width=2)
            for px, py in pixels:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            lines.append(pixels)
    _legend(draw, font, list(points), (left, top, right, bottom), lines)
    with atomic_path(path, overwrite=True) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def _legend(draw, font, names: list[str], box: tuple[int, int, int, int], lines: list[list[tuple[float, float]]]) -> None:
    """A framed legend in the plot corner that the curves cross least."""
    if not names:
        return
    left, top, right, bottom = box
    w = 40 + max(font.getlength(name) for name in names)
    h = 16 * len(names) + 8
    corners = [(right - w - 8, top + 8), (right - w - 8, bottom - h - 8), (left + 8, top + 8), (left + 8, bottom - h - 8)]
    samples = [
        (ax + (bx - ax) * t / 20, ay + (by - ay) * t / 20)
        for pixels in lines for (ax, ay), (bx, by) in zip(pixels, pixels[1:] or pixels) for t in range(21)
    ]

    def crossings(corner: tuple[float, float]) -> int:
        x, y = corner
        return sum(x - 4 <= px <= x + w + 4 and y - 4 <= py <= y + h + 4 for px, py in samples)

    x, y = min(corners, key=crossings)
    draw.rectangle([x, y, x + w, y + h], fill="white", outline=LEGEND_FRAME)
    for i, name in enumerate(names):
        colour = COLOURS[i % len(COLOURS)]
        row = y + 4 + 16 * i
        draw.line([x + 6, row + 6, x + 26, row + 6], fill=colour, width=3)
        draw.text((x + 32, row), name, fill="black", font=font)
