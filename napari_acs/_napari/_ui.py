"""Small Qt pieces shared by the dock widgets: a message line, a path picker, error text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
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
