"""Compare models: two models on the current case, and where they agree, region by region.

Model A and model B (the demo model, a preset with ACS or 3D convolutions, a checkpoint, with
or without test-time augmentation) segment the current case one after the other in a thread
worker, each in its own engine (kept while its choice stays the same). The result is one
Labels layer per case, ``"<id> A vs B: <region>"``: 1 = A only (orange), 2 = B only (sky
blue), 3 = both (bluish green), for the region chosen in the widget (WT, TC or ET); and a
table of both models' volumes (mL), the volumes only one of them labels and their Dice.
The numbers and maps come from :mod:`napari_acs.metrics.agreement`.

The comparison layer is not a segmentation: it carries no case (so no widget takes it for a
reference, and the writer does not save it as BraTS labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_acs._napari._layers import add_layer_in_steps, current_case, labels_layer_kwargs, to_display
from napari_acs._napari._model_choice import EngineCache, ModelChoice, ModelSpec
from napari_acs._napari._qt import column, group_box
from napari_acs._napari._results import REGION_NAMES, _fmt, _hex
from napari_acs._napari._run_panel import ModelRunWidget, RunPanel, connect_case_changes
from napari_acs.io.labels import REGIONS
from napari_acs.metrics.agreement import (
    A_ONLY,
    AGREEMENT_COLOURS,
    AGREEMENT_NAMES,
    B_ONLY,
    BOTH,
    RegionAgreement,
    disagreement,
    summarise,
)

if TYPE_CHECKING:
    import napari

#: ``layer.metadata`` key of a comparison layer: ``{"case_id", "region"}``.
COMPARE_KEY = "napari_acs_compare"
COLUMNS = ("A mL", "B mL", "Dice A-B", "A only mL", "B only mL")
HEADERS = ("A\nmL", "B\nmL", "Dice\nA–B", "A only\nmL", "B only\nmL")
COLUMN_TIPS = ("volume model A labels", "volume model B labels",
               "Dice overlap of the two models (1 = identical; 1 when neither labels the region)",
               "volume labelled by model A and not by model B", "volume labelled by model B and not by model A")
LEGEND_TIPS = {A_ONLY: "labelled by model A, not by model B", B_ONLY: "labelled by model B, not by model A",
               BOTH: "labelled by both models"}
SAME_MODEL = ("Model B is model A with the same options, so it was run once and the models agree "
              "everywhere: choose another model, checkpoint or TTA for B.")


@dataclass
class ComparisonResult:
    """One comparison: both label maps (canonical uint8 ``(X, Y, Z)``), a disagreement map per
    region (uint8 ``(X, Y, Z)``: 0 neither, 1 A only, 2 B only, 3 both) and its numbers."""

    case: Any
    labels_a: np.ndarray
    labels_b: np.ndarray
    maps: dict[str, np.ndarray]
    agreement: dict[str, RegionAgreement]
    models: tuple[str, str]
    trained: tuple[bool, bool]
    same_model: bool
    device: str
    seconds: float
    tta: tuple[bool, bool] = (False, False)
    layer: Any = None  # the comparison layer for the region chosen at the start, built in the worker


def comparison_name(case: Any, region: str) -> str:
    """Name of the comparison layer of ``case`` showing ``region``."""
    return f"{case.case_id} A vs B: {region}"


def comparison_layer_kwargs(case: Any, region: str) -> dict:
    """Keyword arguments of a comparison Labels layer: the geometry of the case's other layers,
    the agreement colours and names; no case in its metadata (it is not a segmentation)."""
    from napari.utils.colormaps import DirectLabelColormap

    transparent = (0.0, 0.0, 0.0, 0.0)
    return {
        **labels_layer_kwargs(case, comparison_name(case, region)),
        "colormap": DirectLabelColormap(color_dict={None: transparent, 0: transparent, **AGREEMENT_COLOURS}),
        "features": {"index": list(AGREEMENT_NAMES), "agreement": list(AGREEMENT_NAMES.values())},
        "opacity": 0.75,
        "metadata": {COMPARE_KEY: {"case_id": case.case_id, "region": region}},
    }


def engine_for(spec: ModelSpec, *, device: str, tta: bool, engines: EngineCache, progress: Any) -> tuple[Any, Any]:
    """One model's ``(selected model, Segmenter)``, built or reused from the model's own cache."""
    from napari_acs.inference import Segmenter

    def build() -> tuple[Any, Any]:
        progress(0.0, "building the model")
        selected = spec.select()
        return selected, Segmenter(selected.model, device=device, tta=tta)

    return engines.get((spec.cache_key(), device, tta), build)


def run_comparison(
    case: Any, specs: tuple[ModelSpec, ModelSpec], *, device: str, tta: tuple[bool, bool],
    engines: tuple[EngineCache, EngineCache], region: str, progress: Any, cancel: Any,
) -> ComparisonResult:
    """Worker job: segment ``case`` with model A and model B (once if B is A), compare them per region.

    Both engines are built before either segments, so a bad model B fails at once.
    """
    from napari_acs.progress import check_cancel

    start = time.perf_counter()
    same = (specs[0].cache_key(), tta[0]) == (specs[1].cache_key(), tta[1])
    names = "A" if same else "AB"
    built = [engine_for(specs[i], device=device, tta=tta[i], engines=engines[i],
                        progress=lambda f, m, n=name: progress(0.0, f"model {n}: {m}"))
             for i, name in enumerate(names)]
    share = 0.9 / len(names)
    labels = []
    for index, (name, (_, engine)) in enumerate(zip(names, built)):
        check_cancel(cancel, "comparison")

        def part(fraction: float, message: str, offset: float = index * share, name: str = name) -> None:
            progress(offset + share * fraction, f"model {name}: {message}")

        labels.append(engine.segment(case, progress=part, cancel=cancel))
    (sel_a, engine_a), (sel_b, _) = built[0], built[-1]
    labels_a, labels_b = labels[0], labels[-1]
    progress(0.95, "comparing")
    maps = {r: disagreement(labels_a, labels_b, r, case.convention) for r in REGIONS}
    agreement = {r: summarise(maps[r], case.spacing) for r in REGIONS}
    # built here, off the GUI thread (a layer object touches no Qt until it is added)
    layer = Labels(to_display(maps[region]), **comparison_layer_kwargs(case, region))
    return ComparisonResult(case, labels_a, labels_b, maps, agreement, (sel_a.description, sel_b.description),
                            (sel_a.trained, sel_b.trained), same, str(engine_a.device),
                            time.perf_counter() - start, tta, layer)


class AgreementLegend(QWidget):
    """Three coloured chips: A only, B only, both."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.chips: dict[int, QLabel] = {}
        for column_index, value in enumerate((A_ONLY, B_ONLY, BOTH)):
            chip = QLabel(f"<span style='color:{_hex(AGREEMENT_COLOURS[value])}; font-size:18px'>■</span> "
                          f"<b>{AGREEMENT_NAMES[value]}</b>")
            chip.setToolTip(f"{LEGEND_TIPS[value]} (label value {value} of the comparison layer)")
            layout.addWidget(chip, 0, column_index)
            self.chips[value] = chip


class AgreementTable(QTableWidget):
    """Rows WT, TC, ET; columns: model A's and model B's volumes (mL), their Dice, and the
    volumes (mL) only A or only B labels."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(len(REGIONS), len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.setVerticalHeaderLabels(list(REGIONS))
        for row, region in enumerate(REGIONS):
            self.verticalHeaderItem(row).setToolTip(REGION_NAMES[region])
        for column_index, tip in enumerate(COLUMN_TIPS):
            self.horizontalHeaderItem(column_index).setToolTip(tip)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.show_agreement({})

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(320, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(240, self.sizeHint().height())

    def show_agreement(self, agreement: dict[str, RegionAgreement]) -> None:
        """Fill the table ("–" for regions without numbers)."""
        for row, region in enumerate(REGIONS):
            a = agreement.get(region)
            values = ((a.volume_ml_a, 1), (a.volume_ml_b, 1), (a.dice, 3), (a.a_only_ml, 1), (a.b_only_ml, 1)) \
                if a is not None else ((None, 0),) * len(COLUMNS)
            for column_index, (value, digits) in enumerate(values):
                item = QTableWidgetItem(_fmt(value, digits))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(row, column_index, item)

    def value(self, region: str, column_name: str) -> str:
        """The text shown in one cell (tests, scripts)."""
        return self.item(REGIONS.index(region), COLUMNS.index(column_name)).text()


class CompareWidget(ModelRunWidget):
    """Dock widget: models A and B on the current case; disagreement layer, volumes and Dice per region."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: ComparisonResult | None = None
        self._engines = (EngineCache(), EngineCache())  # one engine per model, this widget's own

        self.case_label = QLabel()
        self.case_label.setWordWrap(True)
        self.choice_a = self.choice = ModelChoice("segmentation")
        self.choice_b = ModelChoice("segmentation")
        self.tta_a = QCheckBox("Test-time augmentation (8 flips, 8× slower)")
        self.tta_b = QCheckBox("Test-time augmentation (8 flips, 8× slower)")
        for choice in (self.choice_a, self.choice_b):
            choice.card.setMaximumHeight(80)
            choice.backend.succeeded.connect(self._backend_ready)
        self.panel = RunPanel("Compare", "Cancelled: no comparison was added.")
        self.device, self.run_button, self.cancel_button = self.panel.device, self.panel.run_button, self.panel.cancel_button
        self.message, self.runner = self.panel.message, self.panel.runner
        self.run_button.setEnabled(False)

        self.region = QComboBox()
        for region in REGIONS:
            self.region.addItem(f"{region} ({REGION_NAMES[region]})", region)
        self.legend = AgreementLegend()
        self.models_label = QLabel("Run a comparison to see where the models agree.")
        self.models_label.setWordWrap(True)
        self.table = AgreementTable()
        region_row = QWidget()
        form = QFormLayout(region_row)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Region", self.region)

        column(self, self.case_label, group_box("Model A", self.choice_a, self.tta_a),
               group_box("Model B", self.choice_b, self.tta_b), self.panel,
               group_box("Agreement", region_row, self.legend, self.models_label, self.table), min_width=400)

        self.run_button.clicked.connect(lambda: self.run())
        self.runner.succeeded.connect(self._show_result)
        self.runner.stopped.connect(self._update_case)
        self.region.currentIndexChanged.connect(lambda _: self._show_region())
        connect_case_changes(self.viewer, self._update_case)
        self._update_case()

    # ------------------------------------------------------------------ state
    def _backend_ready(self, info: Any) -> None:
        self.panel.set_cuda_available(info.cuda)
        self._update_case()

    def _ready(self) -> bool:
        return self.choice_a.ready() and self.choice_b.ready()

    def _update_case(self, event: Any = None) -> None:
        case = current_case(self.viewer)
        self.case_label.setText("<b>No case open.</b> Use <i>Load BraTS case</i> or File ▸ Open." if case is None
                                else f"<b>Case {case.case_id}</b> ({'×'.join(map(str, case.shape))} voxels)")
        self.run_button.setEnabled(case is not None and self._ready() and not self.runner.busy)

    def selected_region(self) -> str:
        return self.region.currentData()

    def select_region(self, region: str) -> None:
        """Show ``region`` ("WT", "TC" or "ET") in the comparison layer (what the Region list does)."""
        self.region.setCurrentIndex(self.region.findData(region))

    def comparison_layer(self, case_id: str | None = None) -> Any | None:
        """The comparison layer of ``case_id`` (default: the last result's case), if it is in the viewer."""
        if case_id is None:
            if self.result is None:
                return None
            case_id = self.result.case.case_id
        return next((layer for layer in self.viewer.layers
                     if (layer.metadata.get(COMPARE_KEY) or {}).get("case_id") == case_id), None)

    # ------------------------------------------------------------------ run
    def run(self, device: str | None = None) -> None:
        """Segment the current case with models A and B in a worker and compare (the Compare button)."""
        if device is not None:
            self.panel.select_device(device)
        if self.runner.busy:
            return
        self.choice_b.backend.wait()
        case = self.case_to_run()  # waits for model A's list
        if case is None:
            return
        specs = (self.choice_a.spec(), self.choice_b.spec())
        for name, spec in zip("AB", specs):
            if spec.kind == "checkpoint" and spec.checkpoint is None:
                self.message.show_message(f"Model {name}: choose a checkpoint file (.safetensors) first.", "warning")
                return
        tta, dev, engines, region = (self.tta_a.isChecked(), self.tta_b.isChecked()), self.device.currentData(), \
            self._engines, self.selected_region()
        self.panel.start(lambda progress, cancel: run_comparison(
            case, specs, device=dev, tta=tta, engines=engines, region=region, progress=progress, cancel=cancel),
            f"Comparing models A and B on {case.case_id}…")

    def _show_result(self, result: ComparisonResult) -> None:
        existing = self.comparison_layer(result.case.case_id)
        if existing is not None and existing.data.shape == result.layer.data.shape:
            existing.data = result.layer.data  # a re-run swaps the data: no new layer to set up
            existing.metadata[COMPARE_KEY]["region"] = result.layer.metadata[COMPARE_KEY]["region"]
        else:
            if existing is not None:
                self.viewer.layers.remove(existing)
            add_layer_in_steps(self.viewer, result.layer)
        self.result = result
        self.table.show_agreement(result.agreement)
        self._show_region()  # the region chosen meanwhile, if it changed during the run
        tta = [" + TTA" if on else "" for on in result.tta]
        self.models_label.setText(f"<b>A</b> = {result.models[0]}{tta[0]}<br><b>B</b> = {result.models[1]}{tta[1]}")
        text = f"Compared on {result.case.case_id} in {result.seconds:.1f} s on {result.device}."
        if result.same_model:
            self.message.show_message(f"{text} {SAME_MODEL}", "warning")
        elif not all(result.trained):
            untrained = " and ".join(n for n, t in zip("AB", result.trained) if not t)
            self.message.show_message(f"{text} Model {untrained} is UNTRAINED: its labels are meaningless.",
                                      "warning")
        else:
            self.message.show_message(text, "success")

    def _show_region(self) -> None:
        """Put the chosen region's map in the comparison layer; the table's row follows."""
        region = self.selected_region()
        self.table.selectRow(REGIONS.index(region))
        layer = self.comparison_layer()
        if self.result is None or layer is None:
            return
        if layer.metadata[COMPARE_KEY]["region"] != region:
            layer.data = to_display(self.result.maps[region])
            layer.metadata[COMPARE_KEY]["region"] = region
        layer.name = comparison_name(self.result.case, region)
