"""The one exception type for bad BraTS input and output paths."""

from __future__ import annotations

from pathlib import Path


class BratsInputError(ValueError):
    """A BraTS file, folder or label map cannot be used; names the path and the problem.

    ``str(error)`` is ``"<path>: <problem>"``; ``error.path`` and ``error.problem``
    hold the two parts for widgets and command lines that show them separately.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
