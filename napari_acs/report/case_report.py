"""The one-page case report: three slices through the tumour, volumes, metrics, model card.

Layout (A4 landscape; PNG at :data:`PNG_DPI`, or PDF): a header naming the case and grid; the
axial, coronal and sagittal slices through the tumour's centre of mass, in the radiological
orientation the viewer uses (axial: anterior up, patient's right on the left; coronal:
superior up, right on the left; sagittal: superior up, anterior on the left; see
:mod:`napari_acs._napari._layers`), one sequence with the label overlay in the Labels
layers' colours and a legend; volumes per region (mL), and with a reference the legacy
BraTS metrics and the BraTS 2023 lesion-wise ones; the uncertainty score when given; the
model card; "Research use only, not for diagnosis."

Arrays are canonical RAS+ ``(X, Y, Z)`` like ``BratsCase.image``; spacing is in mm.
"""

from __future__ import annotations

import datetime
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import napari_acs
from napari_acs.io.labels import REGIONS, SUB_REGION_COLOURS, SUB_REGION_NAMES, get_convention
from napari_acs.io.normalize import brain_bbox, brain_mask
from napari_acs.io.window import AUTO_BRAIN, sequence_name, window_presets
from napari_acs.metrics import CHALLENGES, brats_metrics, volumes_ml
from napari_acs.report.card import ModelCard
from napari_acs.report.figures import ReportError, agg_figure, check_destination, check_uncertainty, save_figure

#: Page size (inches): A4 landscape.
PAGE_IN = (11.69, 8.27)
#: Resolution of a PNG report (dots per inch): 1754 x 1240 pixels.
PNG_DPI = 150
#: Display names of the image channels (the viewer's layer names), in channel order.
SEQUENCES = ("T1", "T1ce", "T2", "FLAIR")
DEFAULT_SEQUENCE = "FLAIR"
#: Opacity of the label overlay (as the viewer's Labels layers).
OVERLAY_OPACITY = 0.6
#: Brain voxels kept around the brain's bounding box in the slices.
CROP_MARGIN = 4
RESEARCH_ONLY = "Research use only, not for diagnosis."
NO_TUMOUR = "No tumour predicted"
#: Per view: the canonical axis the slice is taken along, and the screen's left/right/top/bottom.
VIEWS: dict[str, tuple[int, tuple[str, str, str, str]]] = {
    "axial": (2, ("R", "L", "A", "P")),
    "coronal": (1, ("R", "L", "S", "I")),
    "sagittal": (0, ("A", "P", "S", "I")),
}


@dataclass(frozen=True)
class Slice:
    """One panel's data: the grey image and the RGBA overlay as shown (rows down, columns right),
    the pixel size in mm ``(row, column)``, and the slice's index along the canonical axis."""

    view: str
    image: np.ndarray
    overlay: np.ndarray
    pixel_mm: tuple[float, float]
    index: int


def sequence_channel(sequence: str) -> int:
    """Channel of ``sequence`` (``"FLAIR"``, ``"T1ce"``/``"T1c"``, ``"t2f"``...) in ``BratsCase.image``."""
    name = sequence_name(sequence) or sequence
    if name not in SEQUENCES:
        raise ReportError(f"unknown sequence {sequence!r}; choose one of {', '.join(SEQUENCES)}")
    return SEQUENCES.index(name)


def tumour_centre(labels: np.ndarray) -> tuple[int, int, int] | None:
    """Voxel ``(x, y, z)`` of the whole tumour's centre of mass, each coordinate moved to the
    nearest slice that holds tumour (so that every view shows some); ``None`` without tumour."""
    tumour = labels > 0
    if not tumour.any():
        return None
    points = np.argwhere(tumour)
    centre = points.mean(axis=0)
    out = []
    for axis in range(3):
        present = np.unique(points[:, axis])
        out.append(int(present[np.argmin(np.abs(present - centre[axis]))]))
    return tuple(out)


def brain_centre(image: np.ndarray) -> tuple[int, int, int]:
    """Voxel ``(x, y, z)`` at the centre of the brain's bounding box (the middle of the volume
    if the image is empty)."""
    mask = brain_mask(image)
    if not mask.any():
        return tuple(s // 2 for s in image.shape[1:])
    return tuple((s.start + s.stop - 1) // 2 for s in brain_bbox(mask))


def display_window(volume: np.ndarray, sequence: str | None = None) -> tuple[float, float]:
    """Grey-level range (vmin, vmax): the viewer's default "Auto brain" window of ``volume``
    (``io.window``), with black no brighter than the background (0)."""
    low, high = window_presets(volume, sequence)[AUTO_BRAIN].limits
    return min(low, 0.0), high


def overlay_rgba(labels: np.ndarray, convention: str, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """Float RGBA ``(..., 4)`` of a label map: each sub-region in its colour at ``opacity``,
    background transparent."""
    lut = np.zeros((256, 4), dtype=np.float32)
    for sub, value in get_convention(convention).values.items():
        lut[value] = (*SUB_REGION_COLOURS[sub][:3], opacity)
    return lut[labels]


def _on_screen(plane: np.ndarray) -> np.ndarray:
    """A canonical plane ``(first axis, second axis, ...)`` as shown: the second axis up the screen,
    the first axis reversed from left to right (the viewer's radiological orientation)."""
    return np.swapaxes(plane, 0, 1)[::-1, ::-1]


def report_slices(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float], convention: str,
                  centre: tuple[int, int, int]) -> list[Slice]:
    """The axial, coronal and sagittal panels through ``centre`` of one sequence ``image``
    ``(X, Y, Z)`` and its ``labels``, cropped to the brain (and tumour) with a margin."""
    extent = brain_mask(image[None]) | (labels > 0)
    box = brain_bbox(extent, margin=CROP_MARGIN) if extent.any() else tuple(slice(0, s) for s in image.shape)
    slices = []
    for view, (axis, _) in VIEWS.items():
        index = [*box]
        index[axis] = centre[axis]
        index = tuple(index)
        kept = [a for a in range(3) if a != axis]
        slices.append(Slice(view, _on_screen(image[index]), _on_screen(overlay_rgba(labels[index], convention)),
                            (float(spacing[kept[1]]), float(spacing[kept[0]])), int(centre[axis])))
    return slices


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def results_table(volumes: dict[str, float], metrics: dict[str, dict[str, float]] | None
                  ) -> tuple[list[str], list[list[str]]]:
    """Header and rows (WT, TC, ET) of the report's table: volumes, and metrics with a reference."""
    if metrics is None:
        return ["Region", "Volume (mL)"], [[region, _fmt(volumes[region], 1)] for region in REGIONS]
    header = ["Region", "Volume\n(mL)", "Reference\n(mL)", "Dice", "HD95\n(mm)", "Sensitivity",
              "Lesion\nDice", "Lesion\nHD95 (mm)", "Lesions\nTP / FP / FN"]
    rows = []
    for region in REGIONS:
        m = metrics[region]
        counts = " / ".join(str(int(m[k])) for k in ("lesion_tp", "lesion_fp", "lesion_fn")) if "lesion_tp" in m else "–"
        rows.append([region, _fmt(volumes[region], 1), _fmt(m["volume_ml_ref"], 1), _fmt(m["dice"], 3),
                     _fmt(m["hd95"], 1), _fmt(m["sensitivity"], 3), _fmt(m.get("lesion_dice"), 3),
                     _fmt(m.get("lesion_hd95"), 1), counts])
    return header, rows


def build_report(
    case: Any,
    labels: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    model_card: ModelCard | None = None,
    uncertainty: float | None = None,
    sequence: str = DEFAULT_SEQUENCE,
    challenge: str = "GLI",
    dpi: float = PNG_DPI,
) -> Figure:
    """The report of ``labels`` (uint8 ``(X, Y, Z)`` on ``case.image``'s grid, ``case.convention``'s
    values) as a matplotlib figure (Agg canvas). ``reference`` (same grid and values) adds the
    metrics; ``uncertainty`` is a score in [0, 1] (1 = least certain)."""
    labels = np.asarray(labels)
    if labels.shape != tuple(case.shape):
        raise ReportError(f"segmentation shape {labels.shape} differs from case {case.case_id}'s grid {tuple(case.shape)}")
    if reference is not None and np.shape(reference) != tuple(case.shape):
        raise ReportError(f"reference shape {np.shape(reference)} differs from case {case.case_id}'s grid {tuple(case.shape)}")
    check_uncertainty(uncertainty)
    channel = sequence_channel(sequence)
    spacing = tuple(case.spacing)
    centre = tumour_centre(labels)
    volumes = volumes_ml(labels, spacing, case.convention)
    metrics = None if reference is None else brats_metrics(labels, reference, spacing, case.convention,
                                                           challenge=challenge)
    figure = agg_figure(*PAGE_IN, dpi=dpi)
    _header(figure, case, SEQUENCES[channel], spacing, centre)
    _panels(figure, case, labels, channel, spacing, centre)
    _results(figure, volumes, metrics, challenge)
    _model(figure, model_card, uncertainty)
    figure.text(0.5, 0.018, RESEARCH_ONLY, ha="center", va="bottom", fontsize=12, weight="bold", color="#a00000")
    return figure


def write_report(
    case: Any,
    labels: np.ndarray,
    out_path: str | os.PathLike,
    *,
    reference: np.ndarray | None = None,
    model_card: ModelCard | None = None,
    uncertainty: float | None = None,
    sequence: str = DEFAULT_SEQUENCE,
    challenge: str = "GLI",
    overwrite: bool = False,
) -> Path:
    """Write the one-page report (:func:`build_report`) as PNG or PDF, by the suffix of ``out_path``.

    The destination is checked before anything is drawn (suffix, existing file unless
    ``overwrite``, folder); the file appears whole or not at all. Returns the path written.
    Raises :class:`~napari_acs.report.figures.ReportError` naming the problem.
    """
    fmt = check_destination(out_path, overwrite=overwrite)
    figure = build_report(case, labels, reference=reference, model_card=model_card, uncertainty=uncertainty,
                          sequence=sequence, challenge=challenge)
    metadata = {"Title": f"napari-acs case report {case.case_id}"}
    metadata["Subject" if fmt == "pdf" else "Description"] = RESEARCH_ONLY
    return save_figure(figure, out_path, overwrite=overwrite, metadata=metadata)


# --------------------------------------------------------------------------- page parts


def _header(figure: Figure, case: Any, sequence: str, spacing: Sequence[float],
            centre: tuple[int, int, int] | None) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figure.text(0.02, 0.975, f"Case report: {case.case_id}", ha="left", va="top", fontsize=16, weight="bold")
    figure.text(0.98, 0.975, f"napari-acs {napari_acs.__version__} · {stamp}", ha="right", va="top", fontsize=9,
                color="#444444")
    grid = " × ".join(map(str, case.shape)) + " voxels of " + " × ".join(f"{s:.2f}" for s in spacing) + " mm"
    where = ("slices through the tumour's centre, voxel (x, y, z) = " + ", ".join(map(str, centre))
             if centre is not None else "no tumour: slices through the brain's centre")
    figure.text(0.02, 0.94, f"{grid} · {sequence} under the segmentation · {where}", ha="left", va="top", fontsize=9)
    source = next(iter(case.files.values()), None)
    if source is not None:
        figure.text(0.02, 0.918, f"Case folder: {Path(source).parent}", ha="left", va="top", fontsize=8,
                    color="#444444")


def _panels(figure: Figure, case: Any, labels: np.ndarray, channel: int, spacing: Sequence[float],
            centre: tuple[int, int, int] | None) -> None:
    volume = case.image[channel]
    vmin, vmax = display_window(volume, SEQUENCES[channel])
    slices = report_slices(volume, labels, spacing, case.convention, centre or brain_centre(case.image))
    width = 0.96 / len(slices)
    for i, item in enumerate(slices):
        ax = figure.add_axes((0.02 + i * width + 0.005, 0.40, width - 0.01, 0.46), label=item.view)
        rows, cols = item.image.shape
        extent = (0, cols * item.pixel_mm[1], rows * item.pixel_mm[0], 0)  # mm, rows down
        ax.imshow(item.image, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="bilinear")
        ax.imshow(item.overlay, extent=extent, interpolation="nearest")
        ax.set_facecolor("black")
        ax.set_anchor("N")  # the three titles on one line
        ax.set_xticks([])
        ax.set_yticks([])
        axis, (left, right, top, bottom) = VIEWS[item.view]
        ax.set_title(f"{item.view.capitalize()} ({'xyz'[axis]} = {item.index})", fontsize=11)
        style = {"color": "white", "fontsize": 11, "weight": "bold", "transform": ax.transAxes}
        ax.text(0.02, 0.5, left, ha="left", va="center", **style)
        ax.text(0.98, 0.5, right, ha="right", va="center", **style)
        ax.text(0.5, 0.98, top, ha="center", va="top", **style)
        ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
        if centre is None:
            ax.text(0.5, 0.5, NO_TUMOUR, ha="center", va="center", transform=ax.transAxes, fontsize=13,
                    color="white", bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"})
    handles = [Patch(facecolor=SUB_REGION_COLOURS[sub], edgecolor="black", label=SUB_REGION_NAMES[sub])
               for sub in SUB_REGION_COLOURS]
    figure.legend(handles=handles, loc="center", bbox_to_anchor=(0.5, 0.375), ncol=len(handles), fontsize=10,
                  frameon=False, title=None if centre is not None else f"{NO_TUMOUR} in this segmentation")


#: Widths of the metrics table's columns (fractions of the table's width).
COLUMN_WIDTHS = (0.085, 0.105, 0.115, 0.085, 0.09, 0.115, 0.1, 0.14, 0.165)


def _results(figure: Figure, volumes: dict[str, float], metrics: dict | None, challenge: str) -> None:
    ax = figure.add_axes((0.02, 0.06, 0.53, 0.28), label="results")
    ax.axis("off")
    ax.set_title("Volumes" + (" and metrics against the reference segmentation" if metrics is not None else ""),
                 loc="left", fontsize=11, weight="bold")
    header, rows = results_table(volumes, metrics)
    height = 0.62 if metrics is not None else 0.5
    table = ax.table(cellText=rows, colLabels=header, cellLoc="right", colLoc="center",
                     bbox=(0, 1 - height, 1 if metrics is not None else 0.3, height))
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    widths = COLUMN_WIDTHS if metrics is not None else (0.4, 0.6)
    for (row, column), cell in table.get_celld().items():
        cell.set_width(widths[column] * (1 if metrics is not None else 0.3))
        if row == 0:
            cell.set_facecolor("#e8e8e8")
        if column == 0:
            cell.set_text_props(weight="bold", ha="center")
    notes = "WT whole tumour (NCR + ED + ET), TC tumour core (NCR + ET), ET enhancing tumour. "
    if metrics is not None:
        params = CHALLENGES[challenge]
        notes += (f"Lesion-wise: BraTS 2023 {challenge} rule (dilation {params.dilation}, lesions over "
                  f"{params.threshold_mm3:g} mm³; a missed lesion or a false positive scores Dice 0 and HD95 "
                  "374 mm). A region empty in both scores Dice 1, empty in one Dice 0 and HD95 373.13 mm.")
    else:
        notes += "No reference segmentation: volumes only, no Dice or HD95."
    ax.text(0, 1 - height - 0.06, _wrap(notes, 100), ha="left", va="top", fontsize=8, color="#333333",
            transform=ax.transAxes, linespacing=1.4)


#: Model card block: font size (pt), line height (pt) and the width of the text column (characters).
CARD_FONT_PT, CARD_LINE_PT, CARD_WRAP = 8.5, 12.0, 56


def _model(figure: Figure, card: ModelCard | None, uncertainty: float | None) -> None:
    box = (0.57, 0.06, 0.41, 0.28)
    ax = figure.add_axes(box, label="model")
    ax.axis("off")
    ax.set_title("Model", loc="left", fontsize=11, weight="bold")
    lines = card.lines() if card is not None else [("Model", "not recorded (no model card given)")]
    unc = "not computed" if uncertainty is None else f"{float(uncertainty):.3f} (0 = certain, 1 = least certain)"
    lines.append(("Uncertainty", unc))
    step = CARD_LINE_PT / (box[3] * figure.get_figheight() * 72)  # one line, in axes height
    y = 1.0
    for name, text in lines:
        wrapped = _wrap(text, CARD_WRAP)
        style = {"ha": "left", "va": "top", "fontsize": CARD_FONT_PT, "transform": ax.transAxes,
                 "linespacing": CARD_LINE_PT / CARD_FONT_PT / 1.2}
        ax.text(0, y, f"{name}:", weight="bold", **style)
        warn = card is not None and not card.trained and name == "Weights"
        ax.text(0.25, y, wrapped, color="#a00000" if warn else "black", **style)
        y -= step * (wrapped.count("\n") + 1.3)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or "–"
