"""Window / level: the sequence shown, window presets, width and level fields, the right-drag.

Acts on the image being read (:func:`~napari_acs._napari._window.window_target`): the active
layer when it is a shown image, else the top-most shown image. Its fields follow the layer
whatever changes its window (a preset, the fields, the right-drag, napari's own contrast
slider); the orthogonal views mirror the layer's contrast limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QButtonGroup,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from napari_acs._napari._layers import MODALITY_NAMES, layer_case
from napari_acs._napari._qt import column, group_box
from napari_acs._napari._run_panel import connect_case_changes
from napari_acs._napari._window import (
    install_window_drag,
    layer_presets,
    layer_sequence,
    layer_window,
    set_layer_window,
    window_target,
)
from napari_acs.io.window import PRESET_NAMES, Window, preset_description

if TYPE_CHECKING:
    import napari

DRAG_HINT = ("Right-drag on the image, in any view: left / right narrows / widens the window "
             "(contrast), up / down brightens / darkens it (level).")
#: The fields accept any intensity scale (raw scanner units, z-scores).
FIELD_LIMIT = 1e9


class WindowLevelWidget(QWidget):
    """Dock widget: which sequence is shown, its window presets and its width / level."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.layer: Any | None = None  # the image the fields describe

        self.target_label = QLabel()
        self.target_label.setWordWrap(True)
        self.sequence_buttons: dict[str, QPushButton] = {}
        self._sequences = QButtonGroup(self)
        self._sequences.setExclusive(True)
        sequences = QHBoxLayout()
        for name in MODALITY_NAMES:
            button = QPushButton(name)
            button.setCheckable(True)
            button.setToolTip(f"Show the case's {name} only (the other sequences stay one click away)")
            button.clicked.connect(lambda _=False, name=name: self.show_sequence(name))
            self._sequences.addButton(button)
            self.sequence_buttons[name] = button
            sequences.addWidget(button)
        self.preset_buttons: dict[str, QPushButton] = {}
        presets = QHBoxLayout()
        for name in PRESET_NAMES:
            button = QPushButton(name)
            button.clicked.connect(lambda _=False, name=name: self.apply_preset(name))
            self.preset_buttons[name] = button
            presets.addWidget(button)
        self.width_field = QDoubleSpinBox()
        self.level_field = QDoubleSpinBox()
        for field, tip in ((self.width_field, "Window width: the intensity span from black to white"),
                           (self.level_field, "Window level: the intensity shown mid-grey")):
            field.setRange(-FIELD_LIMIT, FIELD_LIMIT)
            field.setDecimals(2)
            field.setKeyboardTracking(False)  # applied on Enter / focus out, not per keystroke
            field.setToolTip(tip)
            field.valueChanged.connect(self._fields_edited)
        self.width_field.setMinimum(0.01)
        form = QFormLayout()
        form.addRow("Width", self.width_field)
        form.addRow("Level", self.level_field)
        hint = QLabel(DRAG_HINT)
        hint.setWordWrap(True)

        rows = []
        for layout in (sequences, presets, form):
            layout.setContentsMargins(0, 0, 0, 0)
            rows.append(QWidget())
            rows[-1].setLayout(layout)
        column(self, self.target_label, group_box("Sequence", rows[0]), group_box("Window", rows[1], rows[2], hint),
               min_width=300)
        self._controls = [*self.preset_buttons.values(), self.width_field, self.level_field]

        install_window_drag(self.viewer)
        connect_case_changes(self.viewer, self._retarget)
        self.viewer.layers.events.inserted.connect(self._watch_visibility)
        for layer in self.viewer.layers:
            layer.events.visible.connect(self._retarget)
        self._retarget()

    # ------------------------------------------------------------------ target
    def _watch_visibility(self, event: Any) -> None:
        event.value.events.visible.connect(self._retarget)

    def _retarget(self, event: Any = None) -> None:
        """Describe the image being read now (a layer was shown, hidden, selected, added, removed)."""
        layer = window_target(self.viewer)
        if layer != self.layer:  # == : napari hands plugins a new proxy of a layer on each access
            if self.layer is not None:
                self.layer.events.contrast_limits.disconnect(self._show_window)
            self.layer = layer
            if layer is not None:
                layer.events.contrast_limits.connect(self._show_window)
        for control in self._controls:
            control.setEnabled(layer is not None)
        self._show_sequences()
        if layer is None:
            self.target_label.setText("<b>No image shown.</b> Open a case (Load BraTS case or File ▸ Open).")
            return
        sequence = layer_sequence(layer)
        self.target_label.setText(f"Window of <b>{layer.name}</b>")
        presets = layer_presets(layer)
        for name, button in self.preset_buttons.items():
            low, high = presets[name].limits
            button.setToolTip(f"{preset_description(name, sequence)}: {low:.4g} to {high:.4g}")
        step = max(presets[PRESET_NAMES[0]].width / 100.0, 0.01)
        self.width_field.setSingleStep(step)
        self.level_field.setSingleStep(step)
        self._show_window()

    def _show_window(self, event: Any = None) -> None:
        if self.layer is None:
            return
        window = layer_window(self.layer)
        for field, value in ((self.width_field, window.width), (self.level_field, window.level)):
            field.blockSignals(True)
            field.setValue(value)
            field.blockSignals(False)

    def _case_layers(self) -> dict[str, Any]:
        """The sequence layers of the case of the image being read: ``{"T1": layer, ...}``."""
        case = layer_case(self.layer) if self.layer is not None else None
        if case is None:
            return {}
        found = {}
        for layer in self.viewer.layers:
            if layer_case(layer) is case and (sequence := layer_sequence(layer)) in MODALITY_NAMES:
                found.setdefault(sequence, layer)
        return found

    def _show_sequences(self) -> None:
        layers = self._case_layers()
        current = layer_sequence(self.layer) if self.layer is not None else None
        self._sequences.setExclusive(False)  # an exclusive group cannot show "none checked"
        for name, button in self.sequence_buttons.items():
            button.setEnabled(name in layers)
            button.setChecked(name == current and name in layers)
        self._sequences.setExclusive(True)

    # ------------------------------------------------------------------ actions
    def show_sequence(self, name: str) -> None:
        """Show the case's ``name`` sequence (and select it), hide its other sequences."""
        layers = self._case_layers()
        if name not in layers:
            return
        chosen = layers[name]
        chosen.visible = True
        for other, layer in layers.items():
            if other != name:
                layer.visible = False
        self.viewer.layers.selection.active = chosen

    def apply_preset(self, name: str) -> None:
        """Show preset ``name`` ("Auto brain", "Tumour contrast", "Full range") on the image being read."""
        if self.layer is not None:
            set_layer_window(self.layer, layer_presets(self.layer)[name])

    def set_window(self, width: float, level: float) -> None:
        """Show the window ``width`` / ``level`` (intensity units) on the image being read."""
        if self.layer is not None:
            set_layer_window(self.layer, Window(max(float(width), self.width_field.minimum()), float(level)))

    def _fields_edited(self, value: float = 0.0) -> None:
        self.set_window(self.width_field.value(), self.level_field.value())
