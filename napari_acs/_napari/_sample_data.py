"""napari sample data: a synthetic BraTS-like glioma case shipped with the plugin."""

from __future__ import annotations

from napari_acs._napari._reader import read_case
from napari_acs.io.sample import sample_case_path


def sample_case() -> list[tuple]:
    """Layers of the shipped sample case (four modalities and its reference seg)."""
    return read_case(str(sample_case_path()))
