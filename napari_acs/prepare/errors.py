"""The refusal of a preparation step: names the file, the step and the problem in one line."""

from __future__ import annotations

from pathlib import Path

from napari_acs.io.errors import BratsInputError


class PrepareError(BratsInputError):
    """A raw exam cannot be prepared: ``str()`` is ``"<file>: <step>: <problem>"``; ``step`` is
    one of ``"field of view"``, ``"registration to <reference>"``, ``"brain extraction"``,
    ``"write-back"``, ``"input"``."""

    def __init__(self, path: str | Path | None, step: str, problem: str) -> None:
        self.step = step
        super().__init__(path, f"{step}: {problem}")
