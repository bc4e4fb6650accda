"""The sub-region colour legend and the table of region volumes (mL) and metrics."""

from __future__ import annotations

import math

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QGridLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_acs.io.labels import (
    REGIONS,
    SUB_REGION_COLOURS,
    SUB_REGION_NAMES,
    SUB_REGIONS,
)

REGION_NAMES = {"WT": "whole tumour: NCR + ED + ET", "TC": "tumour core: NCR + ET", "ET": "enhancing tumour"}
COLUMNS = ("mL", "Ref. mL", "Dice", "HD95 mm", "Lesion Dice", "Lesion HD95 mm")
#: Header text: two short lines, so that six columns fit a 400 px dock.
HEADERS = ("mL", "Ref.\nmL", "Dice", "HD95\nmm", "Lesion\nDice", "Lesion\nHD95")
COLUMN_TIPS = ("volume of the segmentation", "volume of the reference segmentation",
               "Dice overlap with the reference", "95th-percentile Hausdorff distance to the reference (mm)",
               "BraTS 2023 lesion-wise Dice (GLI rule: lesions merged and matched within 3 dilations, "
               "lesions <= 50 mm³ left out, each false positive scores 0)",
               "BraTS 2023 lesion-wise HD95 in mm (missed lesions and false positives count 374 mm)")


def _hex(rgba: tuple[float, ...]) -> str:
    return QColor.fromRgbF(*rgba[:3]).name()


class RegionLegend(QWidget):
    """Coloured chips naming the sub-regions as the Labels layers show them (acronym, then name)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.chips: dict[str, QLabel] = {}
        for column, sub in enumerate(SUB_REGIONS):
            name = SUB_REGION_NAMES[sub].replace(f" ({sub})", "")
            chip = QLabel(f"<span style='color:{_hex(SUB_REGION_COLOURS[sub])}; font-size:15px'>■</span> "
                          f"<b>{sub}</b><br><small>{name}</small>")
            chip.setToolTip(f"label colour of the {SUB_REGION_NAMES[sub]}")
            layout.addWidget(chip, 0, column)
            self.chips[sub] = chip


class ResultsTable(QTableWidget):
    """Rows WT, TC, ET; columns: predicted and reference volume (mL), Dice, HD95 (mm), and the
    BraTS 2023 lesion-wise Dice and HD95 (mm), with the lesion counts in the cells' tooltips."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(len(REGIONS), len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.setVerticalHeaderLabels(list(REGIONS))
        for row, region in enumerate(REGIONS):
            self.verticalHeaderItem(row).setToolTip(REGION_NAMES[region])
        for column, tip in enumerate(COLUMN_TIPS):
            self.horizontalHeaderItem(column).setToolTip(tip)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)  # exactly its three rows
        self.show_results({}, None)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        """As tall as its three rows; narrow enough for a dock (columns stretch to the width)."""
        return QSize(320, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(240, self.sizeHint().height())

    def show_results(self, volumes_ml: dict[str, float], metrics: dict[str, dict[str, float]] | None) -> None:
        """Fill the table; metrics ``None`` (no reference) leaves those columns as "–"."""
        for row, region in enumerate(REGIONS):
            m = (metrics or {}).get(region, {})
            values = (
                _fmt(volumes_ml.get(region), 1),
                _fmt(m.get("volume_ml_ref"), 1),
                _fmt(m.get("dice"), 3),
                _fmt(m.get("hd95"), 1),
                _fmt(m.get("lesion_dice"), 3),
                _fmt(m.get("lesion_hd95"), 1),
            )
            counts = _lesion_counts(m)
            for column, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if column >= COLUMNS.index("Lesion Dice") and counts:
                    item.setToolTip(counts)
                self.setItem(row, column, item)

    def value(self, region: str, column: str) -> str:
        """The text shown in one cell (tests, scripts)."""
        return self.item(REGIONS.index(region), COLUMNS.index(column)).text()


def _lesion_counts(metrics: dict[str, float]) -> str:
    """Tooltip of the lesion-wise cells from a region's lesion counts, e.g. "2 of 3 lesions
    found, 1 false positive" ("" without them)."""
    if "lesion_tp" not in metrics:
        return ""
    tp, fp, fn = (int(metrics[k]) for k in ("lesion_tp", "lesion_fp", "lesion_fn"))
    return (f"{tp} of {tp + fn} lesion{'s' if tp + fn != 1 else ''} found, "
            f"{fp} false positive{'s' if fp != 1 else ''}")


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"
