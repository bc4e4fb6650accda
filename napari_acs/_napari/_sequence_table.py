"""Files with any names -> sequences: one row per file, the guessed sequence in a combo the user can change.

Below the rows, the reference sequence a raw exam is prepared on (its grid and field of view;
:func:`napari_acs.prepare.prepare_exam`). The guess and every check live in
:mod:`napari_acs.io.sequences`; this is only the table.
"""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QGridLayout, QLabel, QVBoxLayout, QWidget

from napari_acs.io.sequences import (
    SEG,
    SEQUENCE_LABELS,
    SEQUENCES,
    guess_role,
    missing_sequences,
    missing_warning,
    sentence,
)

#: The combo's entries: (text shown, role); ``None`` leaves the file out.
CHOICES: tuple[tuple[str, str | None], ...] = (
    *((f"{SEQUENCE_LABELS[seq]} ({seq})", seq) for seq in SEQUENCES),
    ("segmentation (reference)", SEG),
    ("not used", None),
)
#: The reference sequence's default: the first of these assigned (T1c, as ``napari-acs prepare``).
REFERENCE_ORDER = ("t1c", "t1n", "t2w", "t2f")


class SequenceTable(QWidget):
    """A row per file: its name, a combo with the guessed sequence; below, what is missing."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paths: list[Path] = []
        self.combos: list[QComboBox] = []
        self.grid = QGridLayout()
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.missing = QLabel()
        self.missing.setWordWrap(True)
        self.reference = QComboBox()
        self.reference.setToolTip(
            "Files that are not yet one BraTS-like case (sequences on different grids, thick slices, a skull) "
            "are prepared when opened, as BraTS does: every sequence co-registered to this one, resampled to "
            "1 mm over its field of view, the brain extracted. A segmentation is saved on this file's grid.")
        reference = QFormLayout()
        reference.setContentsMargins(0, 0, 0, 0)
        reference.addRow("Reference sequence", self.reference)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.grid)
        layout.addWidget(self.missing)
        layout.addLayout(reference)

    def set_files(self, paths: list[str | os.PathLike]) -> None:
        """One row per file, its combo set to :func:`~napari_acs.io.sequences.guess_role`."""
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.paths = [Path(p) for p in paths]
        self.combos = []
        if self.paths:
            self.grid.addWidget(QLabel("<b>File</b>"), 0, 0)
            self.grid.addWidget(QLabel("<b>Sequence</b> (guessed)"), 0, 1)
        for row, path in enumerate(self.paths, start=1):
            name = QLabel(path.name)
            name.setToolTip(str(path))
            combo = QComboBox()
            for text, role in CHOICES:
                combo.addItem(text, role)
            combo.setCurrentIndex([role for _, role in CHOICES].index(guess_role(path)))
            combo.setToolTip("the sequence of this file (guessed from its name: check it)")
            combo.currentIndexChanged.connect(self._update)
            self.grid.addWidget(name, row, 0)
            self.grid.addWidget(combo, row, 1)
            self.combos.append(combo)
        self._update()

    def choices(self) -> list[tuple[Path, str | None]]:
        """``[(file, sequence or "seg" or None), ...]`` as shown, in the order given."""
        return [(path, combo.currentData()) for path, combo in zip(self.paths, self.combos)]

    def set_role(self, row: int, role: str | None) -> None:
        """Set a row's combo (what the user does by hand)."""
        self.combos[row].setCurrentIndex([r for _, r in CHOICES].index(role))

    def reference_sequence(self) -> str | None:
        """The reference sequence chosen (``"t1c"``...), ``None`` while no sequence is assigned."""
        return self.reference.currentData()

    def set_reference(self, sequence: str) -> None:
        """Choose the reference among the assigned sequences (what the user does by hand)."""
        self.reference.setCurrentIndex(self.reference.findData(sequence))

    def _update_reference(self) -> None:
        """The reference combo lists the assigned sequences; the choice stays while it is assigned."""
        assigned = {role for _, role in self.choices() if role not in (None, SEG)}
        chosen = self.reference_sequence()
        self.reference.blockSignals(True)
        self.reference.clear()
        for sequence in (s for s in REFERENCE_ORDER if s in assigned):
            self.reference.addItem(f"{SEQUENCE_LABELS[sequence]} ({sequence})", sequence)
        if chosen in assigned:
            self.set_reference(chosen)
        self.reference.blockSignals(False)

    def missing_text(self) -> str:
        """What the line under the table says about missing sequences."""
        given = {role: path for path, role in self.choices() if role not in (None, SEG)}
        missing = missing_sequences(given)
        if not missing:
            return "All four sequences assigned."
        if len(missing) == len(SEQUENCES):
            return "No sequence assigned yet: choose each file's sequence."
        return sentence(missing_warning(missing))

    def _update(self, *_: object) -> None:
        self.missing.setText(self.missing_text())
        self._update_reference()
        self.changed.emit()
