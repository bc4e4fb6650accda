"""``napari-acs demo``: the README's main job.

With a display: napari with the sample case and the Segment widget docked. Without one
(or ``--headless``): segment the sample case with the shipped demo model and print Dice,
volumes and time.
"""

from __future__ import annotations

import os
import sys
import time

from napari_acs.io.sample import sample_case_path


def has_display() -> bool:
    """True when a window can be opened (X11 or Wayland display set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(headless: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    return run_headless() if headless or not has_display() else run_viewer()


def run_viewer() -> int:
    """Open napari with the sample case and the Segment widget; blocks until the window closes."""
    import napari

    viewer = napari.Viewer(title="napari-acs demo")
    viewer.open(str(sample_case_path()), plugin="napari-acs")
    viewer.window.add_plugin_dock_widget("napari-acs", "Segment")
    napari.run()
    return 0


def run_headless() -> int:
    """Segment the shipped sample case with the default model; exit code 0 on success."""
    import torch

    from napari_acs.inference import segment
    from napari_acs.io import load_case
    from napari_acs.metrics import brats_metrics
    from napari_acs.models.select import select_model

    start = time.perf_counter()
    case = load_case(sample_case_path())
    loaded = time.perf_counter()
    selected = select_model()  # the demo checkpoint; a missing one is said plainly in the description
    print(f"case: {case.case_id} {case.shape} voxels, spacing {case.spacing} mm")
    print(f"model: {selected.description}")
    print(f"device: cpu, {torch.get_num_threads()} threads" if not torch.cuda.is_available() else "device: cuda")
    built = time.perf_counter()
    labels = segment(case, selected.model)
    done = time.perf_counter()
    metrics = brats_metrics(labels, case.label, case.spacing, convention=case.convention)
    print(f"{'region':<8}{'Dice':>8}{'HD95 mm':>10}{'pred mL':>10}{'ref mL':>10}")
    for region, m in metrics.items():
        print(f"{region:<8}{m['dice']:>8.3f}{m['hd95']:>10.2f}{m['volume_ml_pred']:>10.1f}{m['volume_ml_ref']:>10.1f}")
    print(f"time: load {loaded - start:.1f} s, model {built - loaded:.1f} s, segment {done - built:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
