"""``napari-acs demo``: the README's main job.

With a display: napari with the sample case and the plugin's widgets docked.
Without one (or ``--headless``): segment the sample case, print Dice, volumes
and time. Parts that have not shipped yet are named plainly, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys


def _missing_parts() -> list[str]:
    """Human-readable list of the demo's parts that are not available."""
    missing = []
    checks = {
        "napari_acs.io.load_case (BraTS case loading)": ("napari_acs.io", "load_case"),
        "napari_acs.models.create_model (ACS models)": ("napari_acs.models", "create_model"),
        "napari_acs.inference.segment (whole-case segmentation)": ("napari_acs.inference", "segment"),
        "napari_acs.metrics.brats_metrics (Dice, volumes)": ("napari_acs.metrics", "brats_metrics"),
    }
    for label, (module, attr) in checks.items():
        try:
            if not hasattr(importlib.import_module(module), attr):
                missing.append(label)
        except ImportError:
            missing.append(label)
    from napari_acs.io.sample import SAMPLE_CASE_ID, sample_data_dir

    if not (sample_data_dir() / SAMPLE_CASE_ID).is_dir():
        missing.append(f"the sample case sample_data/{SAMPLE_CASE_ID}")
    return missing


def has_display() -> bool:
    """True when a window can be opened (X11 or Wayland display set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(headless: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    missing = _missing_parts()
    if missing:
        print("napari-acs demo: this build does not have everything the demo needs yet.")
        print("Not there yet:")
        for part in missing:
            print(f"  - {part}")
        print("Everything that exists is installed and tested: run `make test`.")
        return 0
    if headless or not has_display():
        from napari_acs.demo_headless import run_headless

        return run_headless()
    from napari_acs._napari.demo_viewer import run_viewer

    return run_viewer()


if __name__ == "__main__":
    sys.exit(run_demo())
