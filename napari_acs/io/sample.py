"""Where the shipped sample data lives (``sample_data/``, also inside the wheel)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_CASE_ID = "BraTS2021_00000"
SPARE_CASE_ID = "BraTS2021_00001"


def sample_data_dir() -> Path:
    """The folder of the shipped sample data (cases, template, demo checkpoint)."""
    return Path(__file__).resolve().parents[1] / "sample_data"


def sample_case_path(case_id: str = SAMPLE_CASE_ID) -> Path:
    """Folder of a shipped synthetic case; a clear error if it is missing."""
    path = sample_data_dir() / case_id
    if not path.is_dir():
        raise FileNotFoundError(
            f"sample case {case_id!r} not found at {path}; regenerate it with the command in "
            f"{sample_data_dir() / 'README.md'}"
        )
    return path
