"""Shared pytest configuration: markers and common fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Where tests save screenshots when set (``make screenshots`` sets docs/screenshots).
SCREENSHOTS_ENV = "NAPARI_ACS_SCREENSHOTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests when CUDA is absent (they are run on a CUDA machine when lent)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on a GPU machine)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the tests' screenshots: ``$NAPARI_ACS_SCREENSHOTS`` if set, else a temporary
    folder, so that a test run leaves the repository (docs/screenshots/) untouched."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def one_torch_thread():
    """One torch thread for a test (tiny training runs are faster so on a shared, loaded CPU)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
