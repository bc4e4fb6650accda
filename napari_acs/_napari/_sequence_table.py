"""Files with any names -> sequences: one row per file, the guessed sequence in a combo the user can change.

The guess and every check live in :mod:`napari_acs.io.sequences`; this is only the table.
"""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QGridLayout, QLabel, QVBoxLayout, QWidget

from napari_acs.io.sequences import SEG, SEQUENCE_LABELS, SEQUENCES, guess_role, missing_sequences, missing_warning

#: The combo's entries: (text shown, role); ``None`` leaves the file out.
CHOICES: tuple[tuple[str, str | None], ...] = (
    *((f"{SEQUENCE_LABELS[seq]} ({seq})", seq) for seq in SEQUENCES),
    ("segmentation (reference)", SEG),
    ("not used", None),
)


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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.grid)
        layout.addWidget(self.missing)

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

    def missing_text(self) -> str:
        """What the line under the table says about missing sequences."""
        given = {role: path for path, role in self.choices() if role not in (None, SEG)}
        missing = missing_sequences(given)
        if not missing:
            return "All four sequences assigned."
        if len(missing) == len(SEQUENCES):
            return "No sequence assigned yet: choose each file's sequence."
        text = missing_warning(missing)
        return f"{text[:1].upper()}{text[1:]}."

    def _update(self, *_: object) -> None:
        self.missing.setText(self.missing_text())
        self.changed.emit()
